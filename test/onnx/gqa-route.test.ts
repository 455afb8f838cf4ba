// The 'sink' GroupQueryAttention route (smooth softmax + a −∞ head sink, what WebGPU graphs use to
// stay off ONNX Runtime's subgroup flash-attention kernel) must be the same softmax: on the CPU its
// graphs give the plain graphs' numbers, with and without a past, for shared and per-head caches,
// and for Gemma-3's sliding-window and soft-capped attention.
import { describe, it, expect, beforeAll } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomModel } from '../helpers/random-model.js';
import { writeModelGraphs, graphFileName } from '../../src/onnx/write-graphs.js';
import { gqaRoute, GQA_ENV } from '../../src/onnx/index.js';
import { onnx } from '../../src/onnx/builder.js';
import { createSession } from '../../src/runtime/session.js';
import { StepRunner } from '../../src/runtime/step.js';
import { CompressedCache } from '../../src/runtime/compressed-cache.js';
import { UserError } from '../../src/util/errors.js';
import { maxAbsDiff } from '../helpers/golden.js';

describe('gqaRoute', () => {
  it("is 'sink' on WebGPU and 'flash' elsewhere; FASTKVZIP_GQA overrides; a bad value is a UserError", () => {
    expect(gqaRoute('webgpu', {})).toBe('sink');
    expect(gqaRoute('cpu', {})).toBe('flash');
    expect(gqaRoute('cuda', {})).toBe('flash');
    expect(gqaRoute('webgpu', { [GQA_ENV]: 'flash' })).toBe('flash');
    expect(gqaRoute('cpu', { [GQA_ENV]: 'sink' })).toBe('sink');
    expect(() => gqaRoute('cpu', { [GQA_ENV]: 'fast' })).toThrow(UserError);
  });
  it('names the sink graphs apart', () => {
    expect(graphFileName('step_compressed', { gqa: 'sink' })).toBe('step_compressed.sink.onnx');
    expect(graphFileName('step_compressed', { gqa: 'flash' })).toBe('step_compressed.onnx');
  });
});

for (const name of ['qwen3', 'gemma3'] as const) {
  describe(`GroupQueryAttention sink route equals the plain one (${name})`, () => {
    const { spec, source } = randomModel(name, 11);
    const dirs: Record<'flash' | 'sink', string> = { flash: '', sink: '' };
    const kinds = ['step_full', 'step_compressed'] as const;
    beforeAll(() => {
      for (const gqa of ['flash', 'sink'] as const) {
        dirs[gqa] = mkdtempSync(path.join(os.tmpdir(), `fkz-gqa-${gqa}-`));
        writeModelGraphs(dirs[gqa], spec, source, 'float32', [...kinds], { gqa });
      }
    });
    const ids = Array.from({ length: 29 }, (_, i) => (i * 31 + 5) % spec.vocabSize);

    it('every GroupQueryAttention of the sink graphs has smooth_softmax = 1 and a −∞ head sink', () => {
      const model = onnx.ModelProto.decode(readFileSync(path.join(dirs.sink, graphFileName('step_compressed', { gqa: 'sink' }))));
      const inits = new Map(model.graph!.initializer!.map((t) => [t.name!, t]));
      const gqa = model.graph!.node!.filter((n) => n.opType === 'GroupQueryAttention');
      expect(gqa.length).toBe(spec.numLayers * spec.numKvHeads);
      for (const n of gqa) {
        expect(Number(n.attribute!.find((a) => a.name === 'smooth_softmax')?.i)).toBe(1);
        const sink = inits.get(n.input![11]!)!;
        expect(sink.dims!.map(Number)).toEqual([spec.numHeads / spec.numKvHeads]);
        expect([...new Float32Array(new Uint8Array(sink.rawData!).slice().buffer)].every((v) => v === -Infinity)).toBe(true);
      }
    });

    it('step_full: the same logits and attention inputs, chunk after chunk', async () => {
      const run = async (gqa: 'flash' | 'sink') => {
        const r = new StepRunner(await createSession(path.join(dirs[gqa], graphFileName('step_full', { gqa })), { device: 'cpu' }), spec, 'float32');
        return [await r.forward(ids.slice(0, 17)), await r.forward(ids.slice(17, 28)), await r.forward(ids.slice(28))];
      };
      const [a, b] = [await run('flash'), await run('sink')];
      a.forEach((x, i) => {
        expect(maxAbsDiff(x.logits!, b[i]!.logits!)).toBeLessThan(1e-5);
        for (const l of x.attnInputs.keys()) expect(maxAbsDiff(x.attnInputs.get(l)!, b[i]!.attnInputs.get(l)!)).toBeLessThan(1e-5);
      });
    });

    it('step_compressed: the same logits over per-head buffers of different lengths', async () => {
      const run = async (gqa: 'flash' | 'sink') => {
        const c = new CompressedCache({ step: await createSession(path.join(dirs[gqa], graphFileName('step_compressed', { gqa })), { device: 'cpu' }) }, spec, 'float32');
        const out = [await c.forward(ids.slice(0, 13))];
        // heads keep different counts: head h of scored layer s loses every (h + s + 2)-th position
        spec.scoredLayers.forEach((_, s) => {
          for (let h = 0; h < spec.numKvHeads; h++) for (let p = 1; p < 13; p++) if (p % (h + s + 2) === 0) c.evict(s, h, p);
        });
        out.push(await c.forward(ids.slice(13, 27)), await c.forward(ids.slice(27, 28)));
        return out;
      };
      const [a, b] = [await run('flash'), await run('sink')];
      a.forEach((x, i) => expect(maxAbsDiff(x.logits, b[i]!.logits)).toBeLessThan(1e-5));
    });
  });
}
