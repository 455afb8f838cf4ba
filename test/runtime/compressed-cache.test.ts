// The compressed cache (GraphKind step_compressed / step_compressed_full): with nothing evicted
// it reproduces the plain step graph; with per-head evictions (heads of a layer keeping different
// counts, each in a buffer of its own) it equals the masked simulation, across later chunks that
// attend to it, while its buffers really shrink, to exactly the entries held (no padding).
import { describe, it, expect, beforeAll } from 'vitest';
import { mkdtempSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomModel } from '../helpers/random-model.js';
import { writeModelGraphs } from '../../src/onnx/write-graphs.js';
import { createSession, ort } from '../../src/runtime/session.js';
import { StepRunner } from '../../src/runtime/step.js';
import { CompressedCache } from '../../src/runtime/compressed-cache.js';
import { MaskedCache } from '../../src/eval/masked-runner.js';
import { maxAbsDiff } from '../helpers/golden.js';
import { argmax } from '../../src/runtime/generate.js';

for (const name of ['qwen3', 'gemma3'] as const) {
  describe(`compressed cache (${name})`, () => {
    const { spec, source } = randomModel(name, 13);
    let step: ort.InferenceSession;
    let masked: ort.InferenceSession;
    let maskedFull: ort.InferenceSession;
    let comp: ort.InferenceSession;
    let compFull: ort.InferenceSession;
    let compDecode: ort.InferenceSession;
    let compBlock: ort.InferenceSession;
    beforeAll(async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'fkz-compressed-'));
      const kinds = ['step_full', 'step_masked', 'step_masked_full', 'step_compressed', 'step_compressed_full', 'step_compressed_decode', 'step_compressed_block'] as const;
      writeModelGraphs(dir, spec, source, 'float32', [...kinds]);
      const open = (k: string) => createSession(path.join(dir, `${k}.onnx`), { device: 'cpu' });
      [step, masked, maskedFull, comp, compFull, compDecode, compBlock] = await Promise.all(kinds.map(open));
    });
    const ids = Array.from({ length: 40 }, (_, i) => (i * 37 + 11) % spec.vocabSize);
    const V = () => spec.vocabSize;

    it('keeping everything reproduces the plain step graph', async () => {
      const plain = new StepRunner(step, spec, 'float32');
      const cache = new CompressedCache({ step: comp, full: compFull, decode: compDecode }, spec, 'float32');
      for (const [a, b] of [[0, 12], [12, 20], [20, 21], [21, 29]] as const) {
        const ref = await plain.forward(ids.slice(a, b));
        const got = await cache.forward(ids.slice(a, b), { logits: 'all' });
        expect(maxAbsDiff(got.logits, ref.logits!)).toBeLessThan(1e-5);
      }
      const ref = await plain.forward([5]);
      const last = await cache.forward([5]);
      expect(maxAbsDiff(last.logits, ref.logits!.subarray(ref.logits!.length - V()))).toBeLessThan(1e-5);
      spec.scoredLayers.forEach((l, s) => expect(maxAbsDiff(last.attnInputs[s]!, ref.attnInputs.get(l)!)).toBeLessThan(1e-5));
      expect(cache.footprint().paddingEntries).toBe(0);
    });

    it('per-head evictions equal the masked simulation, across later chunks, and free memory', async () => {
      const H = spec.numKvHeads;
      const L = spec.scoredLayers.length;
      const m = new MaskedCache({ step: masked, full: maskedFull }, spec, 'float32');
      const c = new CompressedCache({ step: comp, full: compFull, decode: compDecode }, spec, 'float32');
      // a different set per (layer, head): heads of one layer keep different counts
      const doomed = (s: number, h: number, lo: number, hi: number) => {
        const out: number[] = [];
        for (let p = lo; p < hi; p++) if ((p * 7 + s * 3 + h * 5) % (2 + 2 * h) === 0) out.push(p);
        return out;
      };
      await m.forward(ids.slice(0, 16));
      await c.forward(ids.slice(0, 16));
      const before = c.footprint();
      for (let s = 0; s < L; s++) for (let h = 0; h < H; h++) for (const p of doomed(s, h, 1, 14)) (m.evict(s, h, p), c.evict(s, h, p));
      for (let s = 0; s < L; s++) for (let h = 0; h < H; h++) expect(c.countVisible(s, h, 0, 16)).toBe(m.countVisible(s, h, 0, 16));
      const a1 = await m.forward(ids.slice(16, 27));
      const b1 = await c.forward(ids.slice(16, 27));
      expect(maxAbsDiff(b1.logits, a1.logits)).toBeLessThan(1e-4);
      spec.scoredLayers.forEach((_, s) => expect(maxAbsDiff(b1.attnInputs[s]!, a1.attnInputs[s]!)).toBeLessThan(1e-4));
      const after = c.footprint();
      // heads of a layer keep different counts, and nothing is padded
      expect(new Set(Array.from({ length: H }, (_, h) => c.countVisible(0, h, 0, 27))).size).toBeGreaterThan(1);
      expect(after.paddingEntries).toBe(0);
      const removed = spec.scoredLayers.reduce((n, _, s) => n + Array.from({ length: H }, (_, h) => doomed(s, h, 1, 14).length).reduce((x, y) => x + y, 0), 0);
      expect(after.entries).toBe(spec.numLayers * H * 27 - removed);
      expect(after.bytes).toBe(after.entries * 2 * spec.headDim * 4);
      expect(after.bytes).toBeLessThan(after.fullBytes);
      expect(before.bytes).toBe(before.fullBytes);
      // a second round over later positions, then teacher forcing without keeping the KV
      for (let s = 0; s < L; s++) for (let h = 0; h < H; h++) for (const p of doomed(s, h + 1, 16, 25)) (m.evict(s, h, p), c.evict(s, h, p));
      const a2 = await m.forward(ids.slice(27, 40), { logits: 'all', keepCache: false });
      const b2 = await c.forward(ids.slice(27, 40), { logits: 'all', keepCache: false });
      expect(maxAbsDiff(b2.logits, a2.logits)).toBeLessThan(1e-4);
      expect(c.length).toBe(27);
      // decoding one token at a time (the single-token graph, without SnapKV outputs), the same
      // steps through the multi-token graph, and a compaction between them
      const slow = new CompressedCache({ step: comp, full: compFull }, spec, 'float32');
      await slow.forward(ids.slice(0, 16));
      for (let s = 0; s < L; s++) for (let h = 0; h < H; h++) for (const p of doomed(s, h, 1, 14)) slow.evict(s, h, p);
      await slow.forward(ids.slice(16, 27));
      for (let s = 0; s < L; s++) for (let h = 0; h < H; h++) for (const p of doomed(s, h + 1, 16, 25)) slow.evict(s, h, p);
      for (const [i, t] of [3, 9, 27, 4].entries()) {
        if (i === 2) for (let h = 0; h < H; h++) (m.evict(0, h, 20 + h), c.evict(0, h, 20 + h), slow.evict(0, h, 20 + h));
        const a = await m.forward([t]);
        const b = await c.forward([t]);
        const b2 = await slow.forward([t]);
        expect(maxAbsDiff(b.logits, a.logits)).toBeLessThan(1e-4);
        expect(maxAbsDiff(b2.logits, a.logits)).toBeLessThan(1e-4);
        spec.scoredLayers.forEach((_, s) => expect(maxAbsDiff(b.attnInputs[s]!, a.attnInputs[s]!)).toBeLessThan(1e-4));
      }
      for (let s = 0; s < L; s++) for (let h = 0; h < H; h++) {
        const held = c.heldPositions(s, h);
        for (let p = 0; p < c.length; p++) expect(held.includes(p)).toBe(m.visible(s, h, p));
      }
    });

    it('evicting every past entry of a head leaves it only the new tokens', async () => {
      const m = new MaskedCache({ step: masked, full: maskedFull }, spec, 'float32');
      const c = new CompressedCache({ step: comp, full: compFull, decode: compDecode }, spec, 'float32');
      await m.forward(ids.slice(0, 10));
      await c.forward(ids.slice(0, 10));
      for (let p = 0; p < 10; p++) (m.evict(0, 0, p), c.evict(0, 0, p));
      const a = await m.forward(ids.slice(10, 14), { logits: 'all' });
      const b = await c.forward(ids.slice(10, 14), { logits: 'all' });
      expect(maxAbsDiff(b.logits, a.logits)).toBeLessThan(1e-4);
    });

    it('a decode block (greedy steps in one ONNX Loop) gives the step-by-step tokens, attention inputs and cache', async () => {
      const H = spec.numKvHeads;
      const L = spec.scoredLayers.length;
      const sessions = { step: comp, full: compFull, decode: compDecode, block: compBlock };
      const a = new CompressedCache(sessions, spec, 'float32');
      const b = new CompressedCache(sessions, spec, 'float32');
      const pa = await a.forward(ids.slice(0, 20));
      await b.forward(ids.slice(0, 20));
      // heads of a layer keep different counts going into the block
      for (let s = 0; s < L; s++) for (let h = 0; h < H; h++) for (let p = 1; p < 18; p++) if ((p + s + 2 * h) % (3 + h) === 0) (a.evict(s, h, p), b.evict(s, h, p));
      // two rounds before the block: b settles the first (keep lists, no copy) and composes the second
      b.settle();
      for (let s = 0; s < L; s++) for (let h = 0; h < H; h++) for (const p of [2, 9, 16]) (a.evict(s, h, p + h), b.evict(s, h, p + h));
      const first = argmax(pa.logits, pa.logits.length - V(), V());
      const steps = 7;
      const ref: number[] = [];
      const refInputs: Float32Array[][] = [];
      let tok = first;
      for (let t = 0; t < steps; t++) {
        const r = await a.forward([tok]);
        refInputs.push(r.attnInputs as Float32Array[]);
        tok = argmax(r.logits, 0, V());
        ref.push(tok);
      }
      const blk = await b.decodeBlock(first, steps, []);
      expect(blk.tokens).toEqual(ref);
      expect(b.length).toBe(a.length);
      spec.scoredLayers.forEach((_, s) => {
        for (let t = 0; t < steps; t++) expect(maxAbsDiff(blk.attnInputs[s]!.subarray(t * spec.hiddenSize, (t + 1) * spec.hiddenSize), refInputs[t]![s]!)).toBeLessThan(1e-5);
      });
      expect(b.footprint()).toEqual(a.footprint());
      for (let l = 0; l < spec.numLayers; l++) for (let h = 0; h < H; h++) expect(maxAbsDiff(b.buffers(l, h).key, a.buffers(l, h).key)).toBeLessThan(1e-5);
      // the caches continue alike, and a stop id ends the block right after it is emitted
      const c1 = await a.forward([3]);
      const c2 = await b.forward([3]);
      expect(maxAbsDiff(c2.logits, c1.logits)).toBeLessThan(1e-5);
      const first2 = argmax(c1.logits, 0, V());
      const ref2: number[] = [];
      tok = first2;
      for (let t = 0; t < 5; t++) ref2.push((tok = argmax((await a.forward([tok])).logits, 0, V())));
      const expected = ref2.slice(0, ref2.indexOf(ref2[2]!) + 1);
      const before = b.length;
      const stop = await b.decodeBlock(first2, 5, [ref2[2]!]);
      expect(stop.tokens).toEqual(expected);
      expect(b.length).toBe(before + expected.length);
    });
  });
}
