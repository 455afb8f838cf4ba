// Issue 3 proof: the one-run KVzip graph (chunked prefill + reconstruction passes + reduced
// softmax) reproduces the Python reference's fp32 KVzip scores and captured attention inputs.
import { describe, it, expect } from 'vitest';
import { mkdtempSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { golden, kvzipPrompts, modelDir, maxAbsDiff, MODEL_NAMES } from '../helpers/golden.js';
import { openModel } from '../../src/model/load.js';
import { ensureGraphs } from '../../src/onnx/index.js';
import { KVZIP_SCORINGS } from '../../src/onnx/kvzip-graph.js';
import { createSession } from '../../src/runtime/session.js';
import { kvzipFeeds, repeatPasses } from '../../src/kvzip/inputs.js';
import { scoreContext } from '../../src/kvzip/score-context.js';

const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'fkz-golden-kv-'));

for (const name of MODEL_NAMES) {
  describe(`${name}: KVzip scores vs the Python reference`, () => {
    const g = golden(name);
    const k = g.meta.kvzip;
    const prompts = kvzipPrompts(g);
    const ctx = g.ids('kvzip.ctx_ids');

    it('builds the same reconstruction inputs', () => {
      const passes = repeatPasses(ctx, prompts, k.score_chunk);
      expect(passes.length).toBe(k.chunks.length);
      passes.forEach((p, i) => expect(p.ids).toEqual(g.ids(`kvzip.repeat_input.${i}`)));
    });

    it.each(KVZIP_SCORINGS)('%s scoring: scores and attention inputs match within 1e-4 (fp32, CPU)', async (scoring) => {
      const model = openModel(modelDir(name));
      expect(model.spec.scoredLayers).toEqual(k.scored_layers);
      const files = ensureGraphs(model, { dtype: 'float32', kinds: ['kvzip'], cacheDir, kvzipScoring: scoring });
      const session = await createSession(files.paths.kvzip!, { device: 'cpu' });
      const feeds = kvzipFeeds(ctx, prompts, { prefillChunk: k.prefill_chunk, scoreChunk: k.score_chunk });
      expect(feeds.prefillShape[0]).toBeGreaterThan(1); // several prefill chunks really happen
      const res = await scoreContext(session, feeds, k.scored_layers.length, model.spec.numKvHeads);
      const scores = g.f32('kvzip.scores');
      const hidden = g.f32('kvzip.hidden');
      const H = model.spec.numKvHeads;
      const D = model.spec.hiddenSize;
      const n = ctx.length;
      k.scored_layers.forEach((_l: number, s: number) => {
        expect(maxAbsDiff(res.scores[s]!, scores.subarray(s * H * n, (s + 1) * H * n)), `scores of scored layer ${s}`).toBeLessThan(1e-4);
        expect(maxAbsDiff(res.attnInput[s] as Float32Array, hidden.subarray(s * n * D, (s + 1) * n * D)), `hidden of scored layer ${s}`).toBeLessThan(1e-4);
      });
    });
  });
}
