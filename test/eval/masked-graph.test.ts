// The masked step graphs (GraphKind step_masked / step_masked_full): keeping everything
// reproduces the plain step graph; hiding positions equals physically removing them from the
// cache; per-head masks only touch their own head; SnapKV window attention matches plain JS.
import { describe, it, expect, beforeAll } from 'vitest';
import { mkdtempSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomModel } from '../helpers/random-model.js';
import { writeModelGraphs } from '../../src/onnx/write-graphs.js';
import { createSession, ort } from '../../src/runtime/session.js';
import { StepRunner } from '../../src/runtime/step.js';
import { MaskedCache } from '../../src/eval/masked-runner.js';
import { maxAbsDiff } from '../helpers/golden.js';

for (const name of ['qwen3', 'gemma3'] as const) {
  describe(`masked step graph (${name})`, () => {
    const { spec, source } = randomModel(name, 11);
    let dir: string;
    let step: ort.InferenceSession;
    let masked: ort.InferenceSession;
    let maskedFull: ort.InferenceSession;
    beforeAll(async () => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'fkz-masked-'));
      writeModelGraphs(dir, spec, source, 'float32', ['step_full', 'step_masked', 'step_masked_full']);
      step = await createSession(path.join(dir, 'step_full.onnx'), { device: 'cpu' });
      masked = await createSession(path.join(dir, 'step_masked.onnx'), { device: 'cpu' });
      maskedFull = await createSession(path.join(dir, 'step_masked_full.onnx'), { device: 'cpu' });
    });
    const ids = Array.from({ length: 29 }, (_, i) => (i * 37 + 11) % spec.vocabSize);

    it('keeping every position reproduces the unmasked step graph exactly', async () => {
      const plain = new StepRunner(step, spec, 'float32');
      const cache = new MaskedCache({ step: masked, full: maskedFull }, spec, 'float32');
      for (const [a, b] of [[0, 12], [12, 20], [20, 29]] as const) {
        const ref = await plain.forward(ids.slice(a, b));
        const got = await cache.forward(ids.slice(a, b), { logits: 'all' });
        expect(maxAbsDiff(got.logits, ref.logits!)).toBe(0);
      }
      const ref = await plain.forward([5]);
      const last = await cache.forward([5], { snapWindow: 4 });
      const V = spec.vocabSize;
      expect(maxAbsDiff(last.logits, ref.logits!.subarray(ref.logits!.length - V))).toBe(0);
      spec.scoredLayers.forEach((l, s) => expect(maxAbsDiff(last.attnInputs[s]!, ref.attnInputs.get(l)!)).toBe(0));
    });

    it('hiding positions in every head equals removing them from the cache', async () => {
      const hidden = new Set([0, 3, 4, 9, 10, 11, 15]);
      const kept = ids.slice(0, 18).map((_, i) => i).filter((i) => !hidden.has(i));
      const cache = new MaskedCache({ step: masked, full: maskedFull }, spec, 'float32');
      await cache.forward(ids.slice(0, 18));
      for (let s = 0; s < spec.scoredLayers.length; s++) for (let h = 0; h < spec.numKvHeads; h++) for (const p of hidden) cache.evict(s, h, p);
      const got = await cache.forward(ids.slice(18), { logits: 'all', keepCache: false });

      // Reference: a plain cache holding only the kept positions (RoPE is applied before caching,
      // so dropping keys leaves the others untouched), new tokens at their true positions.
      if (spec.scoredLayers.length !== spec.numLayers) return; // Gemma: sliding layers are never masked, so no plain equivalent
      const full = new StepRunner(step, spec, 'float32');
      const pre = await full.forward(ids.slice(0, 18));
      const pick = (t: ort.Tensor) => {
        const [, H, N, d] = t.dims as number[];
        const src = t.data as Float32Array;
        const out = new Float32Array(H! * kept.length * d!);
        for (let h = 0; h < H!; h++) kept.forEach((p, j) => out.set(src.subarray((h * N! + p) * d!, (h * N! + p + 1) * d!), (h * kept.length + j) * d!));
        return new ort.Tensor('float32', out, [1, H!, kept.length, d!]);
      };
      const feeds: Record<string, ort.Tensor> = {
        input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.slice(18).map(BigInt)), [1, 11]),
        position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: 11 }, (_, i) => BigInt(18 + i)), [1, 11]),
      };
      for (let l = 0; l < spec.numLayers; l++) {
        feeds[`past_key.${l}`] = pick(pre.raw[`present_key.${l}`]!);
        feeds[`past_value.${l}`] = pick(pre.raw[`present_value.${l}`]!);
      }
      const ref = await step.run(feeds);
      expect(maxAbsDiff(got.logits, ref.logits!.data as Float32Array)).toBeLessThan(1e-4);
    });

    it('a mask on one head changes results, and only through that head', async () => {
      const run = async (evictHead: number | null) => {
        const cache = new MaskedCache({ step: masked, full: maskedFull }, spec, 'float32');
        await cache.forward(ids.slice(0, 18));
        if (evictHead !== null) for (let p = 2; p < 14; p++) cache.evict(spec.scoredLayers.length - 1, evictHead, p);
        return (await cache.forward(ids.slice(18), { logits: 'all' })).logits;
      };
      const base = await run(null);
      const h0 = await run(0);
      const h1 = await run(1);
      expect(maxAbsDiff(base, h0)).toBeGreaterThan(1e-4);
      expect(maxAbsDiff(base, h1)).toBeGreaterThan(1e-4);
      expect(maxAbsDiff(h0, h1)).toBeGreaterThan(1e-4);
    });

    it('SnapKV window attention equals a plain-JS softmax over visible keys', async () => {
      // Masks only on the last scored layer, so its queries and keys equal the plain graph's
      // (earlier layers see everything) and can serve as the reference's inputs.
      const cache = new MaskedCache({ step: masked, full: maskedFull }, spec, 'float32');
      await cache.forward(ids.slice(0, 12));
      const s = spec.scoredLayers.length - 1;
      const layer = spec.scoredLayers[s]!;
      for (const p of [1, 2, 7]) cache.evict(s, 0, p);
      cache.evict(s, 1, 5);
      const w = 4;
      const T = 9;
      const got = await cache.forward(ids.slice(12, 12 + T), { snapWindow: w, keepCache: false });
      const plain = new StepRunner(step, spec, 'float32');
      await plain.forward(ids.slice(0, 12));
      const ref = await plain.forward(ids.slice(12, 12 + T));
      const q = ref.raw[`query.${layer}`]!.data as Float32Array; // [1, T, Hq, d]
      const k = ref.raw[`present_key.${layer}`]!.data as Float32Array; // [1, H, 21, d]
      const H = spec.numKvHeads;
      const G = spec.numHeads / H;
      const d = spec.headDim;
      const total = 12 + T;
      const hiddenOf = (h: number, j: number) => (h === 0 ? [1, 2, 7].includes(j) : j === 5);
      const expected = new Float32Array(H * T);
      for (let h = 0; h < H; h++) {
        for (let g = 0; g < G; g++) {
          for (let r = T - w; r < T; r++) {
            const pos = 12 + r;
            const logits: number[] = [];
            for (let j = 0; j < total; j++) {
              if (j > pos || hiddenOf(h, j)) {
                logits.push(-Infinity);
                continue;
              }
              let dot = 0;
              for (let t = 0; t < d; t++) dot += q[(r * spec.numHeads + h * G + g) * d + t]! * k[(h * total + j) * d + t]!;
              logits.push(dot * spec.attnScale);
            }
            const m = Math.max(...logits);
            const z = logits.reduce((a, x) => a + Math.exp(x - m), 0);
            for (let j = 12; j < total; j++) expected[h * T + (j - 12)]! += Math.exp(logits[j]! - m) / z / (G * w);
          }
        }
      }
      expect(maxAbsDiff(got.snap[s]!, expected)).toBeLessThan(1e-5);
    });
  });
}
