// The real compressed cache against today's masked simulation (eval --cache compressed vs
// --cache masked): the same scorer keeps the same (layer, head, position) sets, and every
// number eval reports — last logits, reconstruction, retrieval — agrees up to float noise
// (the compacted cache sums attention over fewer, re-ordered columns; masked columns add exact 0).
import { describe, it, expect, beforeAll } from 'vitest';
import * as path from 'node:path';
import { openEvalModel, randomGates, type EvalModel } from './helpers.js';
import { modelDir, maxAbsDiff } from '../helpers/golden.js';
import { ensureGraphs } from '../../src/onnx/index.js';
import { createSession, type ort } from '../../src/runtime/session.js';
import { CompressedCache } from '../../src/runtime/compressed-cache.js';
import { compressedPrefill } from '../../src/eval/compressed-prefill.js';
import { MaskedCache } from '../../src/eval/masked-runner.js';
import { gateScorer, kvzipScorer, randomScorer, snapkvScorer, windowScorer, type Scorer, type ScorerDims } from '../../src/eval/scorers.js';
import { gateSession } from '../../src/eval/gates.js';
import { kvzipFeeds, repeatPasses } from '../../src/kvzip/inputs.js';
import { scoreContext } from '../../src/kvzip/score-context.js';
import { reconstruction, retrieval } from '../../src/eval/measures.js';
import { PUBLIC_WINDOW, type EvictionLevel } from '../../src/eval/eviction.js';

const prompts = { prefixIds: [3, 4, 5, 6], postfixIds: [7, 8], repeatFirstIds: [9, 10, 11], repeatNextIds: [12, 13], prevPostfixTokens: 8 };
const WIN = { ...PUBLIC_WINDOW, windowRatio: 0.05 };

for (const name of ['qwen3', 'gemma3'] as const) {
  describe(`compressed cache vs masked simulation (${name} fixture)`, () => {
    let m: EvalModel;
    let comp: { step: ort.InferenceSession; full: ort.InferenceSession };
    let scorers: () => Scorer[];
    const ctx = Array.from({ length: 150 }, (_, i) => (i * 53 + 17) % 300);
    beforeAll(async () => {
      m = await openEvalModel(modelDir(name));
      const spec = m.model.spec;
      const g = ensureGraphs(m.model, { dtype: 'float32', kinds: ['step_compressed', 'step_compressed_full'], cacheDir: path.dirname(path.dirname(m.graphs.dir)) });
      comp = { step: await createSession(g.paths.step_compressed!, { device: 'cpu' }), full: await createSession(g.paths.step_compressed_full!, { device: 'cpu' }) };
      const dims: ScorerDims = { layers: spec.scoredLayers.length, heads: spec.numKvHeads, hidden: spec.hiddenSize };
      const oracle = await scoreContext(m.kvzip, kvzipFeeds(ctx, prompts, { prefillChunk: 64, scoreChunk: 50 }), dims.layers, dims.heads);
      const gates = await gateSession(randomGates(spec), { device: 'cpu' }, 'float32');
      scorers = () => [gateScorer(gates, dims, 'float32'), kvzipScorer(oracle.scores, ctx.length, dims), snapkvScorer(dims, 8), windowScorer(dims), randomScorer(dims, 1)];
    });

    for (const [ratio, level] of [[0.5, 'pair'], [0.3, 'pair'], [0.3, 'head'], [0.2, 'layer']] as [number, EvictionLevel][]) {
      it(`ratio ${ratio}, ${level} level: same kept sets, same reconstruction and retrieval`, async () => {
        const spec = m.model.spec;
        const P = prompts.prefixIds.length;
        const passes = repeatPasses(ctx, prompts, 50);
        const queries = [{ ids: [20, 21, 22, 7, 8, 30], value: 'x' }];
        const decode = (ids: number[]) => ids.join(',');
        const opts = { ratio, level, prefillChunk: 40, window: WIN };
        const bScorers = scorers();
        for (const [i, scorer] of scorers().entries()) {
          const a = await compressedPrefill({ step: m.masked, full: m.maskedFull }, spec, 'float32', prompts.prefixIds, ctx, scorer, opts);
          const real = new CompressedCache(comp, spec, 'float32');
          const b = await compressedPrefill(null, spec, 'float32', prompts.prefixIds, ctx, bScorers[i]!, { ...opts, cache: real });
          const masked = a.cache as MaskedCache;
          for (let s = 0; s < spec.scoredLayers.length; s++) {
            for (let h = 0; h < spec.numKvHeads; h++) {
              const held = new Set(real.heldPositions(s, h));
              for (let p = 0; p < P + ctx.length; p++) expect(held.has(p), `${scorer.name} s${s} h${h} p${p}`).toBe(masked.visible(s, h, p));
            }
          }
          expect(b.kept).toBe(a.kept);
          // every scorer's scores agree (SnapKV's window attention is computed over held entries only)
          b.scores.forEach((sc, s) => expect(maxAbsDiff(sc, a.scores[s]!), scorer.name).toBeLessThan(1e-5));
          expect(maxAbsDiff(b.lastLogits, a.lastLogits)).toBeLessThan(1e-4);
          const ra = await reconstruction(a.cache, passes, spec.vocabSize);
          const rb = await reconstruction(real, passes, spec.vocabSize);
          expect(rb.tokens).toBe(ra.tokens);
          expect(rb.correct).toBe(ra.correct);
          expect(Math.abs(rb.logLik - ra.logLik) / ra.tokens).toBeLessThan(1e-5);
          const qa = await retrieval(a.cache, queries, decode, { maxNewTokens: 6, stopIds: [], vocab: spec.vocabSize });
          const qb = await retrieval(real, queries, decode, { maxNewTokens: 6, stopIds: [], vocab: spec.vocabSize });
          expect(qb.answers).toEqual(qa.answers);
          // the buffers shrank: held entries of the evictable layers, plus padding, below the full cache
          const f = real.footprint();
          expect(f.bytes).toBeLessThan(f.fullBytes);
        }
      });
    }
  });
}
