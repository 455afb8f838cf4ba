// Compressed prefill end to end on fixture models: at ratio 1.0 every scorer reproduces the
// uncompressed outputs exactly; below 1.0 it keeps exactly the requested fraction and the
// outputs change; on the embedded default model the KVzip oracle beats random eviction on
// reconstruction.
import { describe, it, expect, beforeAll } from 'vitest';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openEvalModel, randomGates, type EvalModel } from './helpers.js';
import { modelDir, maxAbsDiff } from '../helpers/golden.js';
import { StepRunner } from '../../src/runtime/step.js';
import { compressedPrefill } from '../../src/eval/compressed-prefill.js';
import { gateScorer, kvzipScorer, randomScorer, snapkvScorer, windowScorer, type Scorer, type ScorerDims, type ScorerName } from '../../src/eval/scorers.js';
import { gateSession } from '../../src/eval/gates.js';
import { kvzipFeeds, repeatPasses } from '../../src/kvzip/inputs.js';
import { scoreContext } from '../../src/kvzip/score-context.js';
import { reconstruction } from '../../src/eval/measures.js';
import { PUBLIC_WINDOW } from '../../src/eval/eviction.js';
import { templateFor, reconstructionPrompts, sotuCorpus } from '../../src/data/index.js';

const prompts = { prefixIds: [3, 4, 5, 6], postfixIds: [7, 8], repeatFirstIds: [9, 10, 11], repeatNextIds: [12, 13], prevPostfixTokens: 8 };
const WIN = { ...PUBLIC_WINDOW, windowRatio: 0.05 };

for (const name of ['qwen3', 'gemma3'] as const) {
  describe(`compressed prefill (${name} fixture)`, () => {
    let m: EvalModel;
    let scorers: Scorer[];
    const ctx = Array.from({ length: 150 }, (_, i) => (i * 53 + 17) % 300);
    beforeAll(async () => {
      m = await openEvalModel(modelDir(name));
      const spec = m.model.spec;
      const dims: ScorerDims = { layers: spec.scoredLayers.length, heads: spec.numKvHeads, hidden: spec.hiddenSize };
      const oracle = await scoreContext(m.kvzip, kvzipFeeds(ctx, prompts, { prefillChunk: 64, scoreChunk: 50 }), dims.layers, dims.heads);
      const gates = await gateSession(randomGates(spec), { device: 'cpu' }, 'float32');
      scorers = [gateScorer(gates, dims, 'float32'), kvzipScorer(oracle.scores, ctx.length, dims), snapkvScorer(dims, 8), windowScorer(dims), randomScorer(dims, 1)];
    });

    it('ratio 1.0 reproduces the uncompressed outputs exactly for every scorer', async () => {
      const spec = m.model.spec;
      const all = [...prompts.prefixIds, ...ctx];
      const plain = new StepRunner(m.stepFull, spec, 'float32');
      let last!: Float32Array;
      for (let a = 0; a < all.length; a += 40) last = (await plain.forward(all.slice(a, a + 40))).logits!;
      const V = spec.vocabSize;
      const refLast = last.subarray(last.length - V);
      const pass = repeatPasses(ctx, prompts, 50)[1]!;
      const refRepeat = (await plain.forward(pass.ids, { keepCache: false })).logits!;
      const names: ScorerName[] = [];
      for (const scorer of scorers) {
        const run = await compressedPrefill({ step: m.masked, full: m.maskedFull }, spec, 'float32', prompts.prefixIds, ctx, scorer, { ratio: 1, level: 'pair', prefillChunk: 40, window: WIN });
        expect(run.kept).toBe(1);
        expect(maxAbsDiff(run.lastLogits, refLast)).toBe(0);
        const rep = await run.cache.forward(pass.ids, { logits: 'all', keepCache: false });
        expect(maxAbsDiff(rep.logits, refRepeat)).toBe(0);
        for (const sc of run.scores) for (const v of sc) expect(Number.isFinite(v)).toBe(true);
        names.push(scorer.name);
      }
      expect(names).toEqual(['gates', 'kvzip', 'snapkv', 'window', 'random']);
    });

    it('below 1.0 keeps exactly the requested fraction and changes the outputs', async () => {
      const spec = m.model.spec;
      const units = spec.scoredLayers.length * spec.numKvHeads;
      for (const scorer of scorers) {
        for (const level of ['pair', 'layer', 'head'] as const) {
          const run = await compressedPrefill({ step: m.masked, full: m.maskedFull }, spec, 'float32', prompts.prefixIds, ctx, scorer, { ratio: 0.3, level, prefillChunk: 40, window: WIN });
          expect(run.kept * units * ctx.length).toBeCloseTo(Math.floor(0.3 * ctx.length) * units, 6);
          // the prefix is never evicted
          for (let s = 0; s < spec.scoredLayers.length; s++) for (let h = 0; h < spec.numKvHeads; h++) expect(run.cache.countVisible(s, h, 0, prompts.prefixIds.length)).toBe(prompts.prefixIds.length);
        }
      }
      const full = await compressedPrefill({ step: m.masked, full: m.maskedFull }, spec, 'float32', prompts.prefixIds, ctx, scorers[3]!, { ratio: 1, level: 'pair', prefillChunk: 40, window: WIN });
      const cut = await compressedPrefill({ step: m.masked, full: m.maskedFull }, spec, 'float32', prompts.prefixIds, ctx, scorers[3]!, { ratio: 0.3, level: 'pair', prefillChunk: 40, window: WIN });
      expect(maxAbsDiff(full.lastLogits, cut.lastLogits)).toBeGreaterThan(1e-5);
    });
  });
}

describe('oracle vs random on the embedded default model', () => {
  it('KVzip scores reconstruct better than random eviction at 20 % kept', async () => {
    const dir = fileURLToPath(new URL('../../data/default-model', import.meta.url));
    const m = await openEvalModel(path.resolve(dir));
    const tok = m.model.tokenizer!;
    const enc = (t: string) => tok.encode(t, { addSpecialTokens: false });
    const template = templateFor({ template: 'fastkvzip-tiny' });
    const rec = reconstructionPrompts();
    const p = { prefixIds: enc(template.prefix), postfixIds: enc(template.postfix), repeatFirstIds: enc(rec.repeatFirst), repeatNextIds: enc(rec.repeatNext), prevPostfixTokens: rec.prevPostfixTokens };
    let text = '';
    for await (const doc of sotuCorpus().documents()) if (doc.id === '1799_john_adams_f') text = doc.text;
    const ctx = enc(text.trim()).slice(0, 400);
    const spec = m.model.spec;
    const dims: ScorerDims = { layers: spec.scoredLayers.length, heads: spec.numKvHeads, hidden: spec.hiddenSize };
    const oracle = await scoreContext(m.kvzip, kvzipFeeds(ctx, p, { prefillChunk: 4096, scoreChunk: 200 }), dims.layers, dims.heads);
    const passes = repeatPasses(ctx, p, 200);
    const quality = async (scorer: Scorer) => {
      const run = await compressedPrefill({ step: m.masked, full: m.maskedFull }, spec, m.graphs.dtype === 'float32' ? 'float32' : 'float16', p.prefixIds, ctx, scorer, { ratio: 0.2, level: 'pair', prefillChunk: 128, window: PUBLIC_WINDOW });
      return reconstruction(run.cache, passes, spec.vocabSize);
    };
    const kv = await quality(kvzipScorer(oracle.scores, ctx.length, dims));
    const rnd = await quality(randomScorer(dims, 7));
    expect(kv.tokens).toBe(400);
    expect(kv.logLik).toBeGreaterThan(rnd.logLik);
    expect(kv.correct).toBeGreaterThan(rnd.correct);
  });
});
