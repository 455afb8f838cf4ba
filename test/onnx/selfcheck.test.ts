// Internal consistency of the graphs on random tiny models (independent of the Python goldens):
// chunked == one-shot, KVzip graph hidden == step graph attention inputs, KVzip scores == a
// plain-JS implementation of docs/method.md §1 on the step graph's queries and keys.
import { describe, it, expect, beforeAll } from 'vitest';
import { mkdtempSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomModel } from '../helpers/random-model.js';
import { writeModelGraphs } from '../../src/onnx/write-graphs.js';
import { createSession } from '../../src/runtime/session.js';
import { StepRunner } from '../../src/runtime/step.js';
import { kvzipFeeds } from '../../src/kvzip/inputs.js';
import { scoreContext } from '../../src/kvzip/score-context.js';
import { maxAbsDiff } from '../helpers/golden.js';

for (const name of ['qwen3', 'gemma3'] as const) {
  describe(`graph self-consistency (${name})`, () => {
    const { spec, source } = randomModel(name, 7);
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'fkz-graph-'));
      writeModelGraphs(dir, spec, source, 'float32');
    });
    const ids = Array.from({ length: 23 }, (_, i) => (i * 37 + 11) % spec.vocabSize);

    it('chunked forward equals one-shot forward', async () => {
      const session = await createSession(path.join(dir, 'step_full.onnx'), { device: 'cpu' });
      const one = new StepRunner(session, spec, 'float32');
      const a = await one.forward(ids);
      const two = new StepRunner(session, spec, 'float32');
      const b1 = await two.forward(ids.slice(0, 9));
      const b2 = await two.forward(ids.slice(9));
      const logitsB = new Float32Array([...b1.logits!, ...b2.logits!]);
      expect(maxAbsDiff(a.logits!, logitsB)).toBeLessThan(1e-4);
      for (let l = 0; l < spec.numLayers; l++) {
        const cat = new Float32Array([...(b1.attnInputs.get(l) as Float32Array), ...(b2.attnInputs.get(l) as Float32Array)]);
        expect(maxAbsDiff(a.attnInputs.get(l)!, cat)).toBeLessThan(1e-5);
      }
    });

    it('KVzip graph: hidden matches the step graph', async () => {
      const step = await createSession(path.join(dir, 'step_full.onnx'), { device: 'cpu' });
      const kv = await createSession(path.join(dir, 'kvzip.onnx'), { device: 'cpu' });
      const prompts = { prefixIds: [1, 2, 3], postfixIds: [4, 5], repeatFirstIds: [6, 7], repeatNextIds: [8, 9, 10], prevPostfixTokens: 8 };
      const feeds = kvzipFeeds(ids, prompts, { prefillChunk: 7, scoreChunk: 6 });
      const res = await scoreContext(kv, feeds, spec.scoredLayers.length, spec.numKvHeads);
      const runner = new StepRunner(step, spec, 'float32');
      const full = await runner.forward([...prompts.prefixIds, ...ids]);
      spec.scoredLayers.forEach((l, s) => {
        const ref = (full.attnInputs.get(l) as Float32Array).subarray(prompts.prefixIds.length * spec.hiddenSize);
        expect(maxAbsDiff(res.attnInput[s]!, ref)).toBeLessThan(1e-5);
      });
      for (const sc of res.scores) for (const v of sc) expect(v >= 0 && v <= 1).toBe(true);
    });
  });
}

/** docs/method.md §1 score in plain JS from queries [R, Hq, d] and keys [H, N+R, d] (the cache after the repeat). */
function jsScores(q: Float32Array, k: Float32Array, o: { R: number; Hq: number; H: number; d: number; NR: number; P: number; cStart: number; cLen: number; N: number }): Float32Array {
  const G = o.Hq / o.H;
  const out = new Float32Array(o.H * o.cLen);
  for (let h = 0; h < o.H; h++) {
    const keyIdx = [...Array(o.P).keys(), ...Array.from({ length: o.cLen }, (_, j) => o.cStart + j), ...Array.from({ length: o.R }, (_, j) => o.N + j)];
    for (let g = 0; g < G; g++) {
      const hq = h * G + g;
      for (let r = 0; r < o.R; r++) {
        const visible = keyIdx.filter((_, c) => c < o.P + o.cLen || c - o.P - o.cLen <= r);
        const logits = visible.map((kj) => {
          let s = 0;
          for (let t = 0; t < o.d; t++) s += q[(r * o.Hq + hq) * o.d + t]! * k[(h * o.NR + kj) * o.d + t]!;
          return s / Math.sqrt(o.d);
        });
        const m = Math.max(...logits);
        const z = logits.reduce((a, x) => a + Math.exp(x - m), 0);
        for (let j = 0; j < o.cLen; j++) {
          const p = Math.exp(logits[o.P + j]! - m) / z;
          out[h * o.cLen + j] = Math.max(out[h * o.cLen + j]!, p);
        }
      }
    }
  }
  return out;
}

describe('KVzip graph scores equal a plain-JS docs/method.md §1 implementation', () => {
  for (const name of ['qwen3', 'gemma3'] as const) {
    it(name, async () => {
      const { spec, source } = randomModel(name, 3);
      const dir = mkdtempSync(path.join(os.tmpdir(), 'fkz-graph-'));
      writeModelGraphs(dir, spec, source, 'float32', ['step_full', 'kvzip']);
      const step = await createSession(path.join(dir, 'step_full.onnx'), { device: 'cpu' });
      const kv = await createSession(path.join(dir, 'kvzip.onnx'), { device: 'cpu' });
      const ctxIds = Array.from({ length: 19 }, (_, i) => (i * 13 + 5) % spec.vocabSize);
      const prompts = { prefixIds: [1, 2, 3, 4], postfixIds: [5, 6], repeatFirstIds: [7, 8, 9], repeatNextIds: [10, 11], prevPostfixTokens: 8 };
      const feeds = kvzipFeeds(ctxIds, prompts, { prefillChunk: 8, scoreChunk: 7 });
      const res = await scoreContext(kv, feeds, spec.scoredLayers.length, spec.numKvHeads);
      const runner = new StepRunner(step, spec, 'float32');
      await runner.forward([...prompts.prefixIds, ...ctxIds]);
      const N = runner.length;
      for (const pass of feeds.passes) {
        const out = await runner.forward(pass.ids, { keepCache: false });
        spec.scoredLayers.forEach((l, s) => {
          const q = out.raw[`query.${l}`]!.data as Float32Array;
          const k = out.raw[`present_key.${l}`]!.data as Float32Array;
          const ref = jsScores(q, k, { R: pass.ids.length, Hq: spec.numHeads, H: spec.numKvHeads, d: spec.headDim, NR: N + pass.ids.length, P: 4, cStart: 4 + pass.start, cLen: pass.length, N });
          const got = new Float32Array(spec.numKvHeads * pass.length);
          for (let h = 0; h < spec.numKvHeads; h++) got.set(res.scores[s]!.subarray(h * res.ctxLen + pass.start, h * res.ctxLen + pass.start + pass.length), h * pass.length);
          expect(maxAbsDiff(got, ref)).toBeLessThan(1e-5);
        });
      }
    });
  }
});
