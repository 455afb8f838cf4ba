// The KVzip graph's two scoring forms (src/onnx/kvzip-graph.ts: classic Softmax over the reduced
// key set, fused log-sum-exp folded into a second GEMM) compute the same scores. The goldens
// check both on tiny models; here a trained model (data/default-model: real attention sinks and
// peaked rows) on a context long enough for several reconstruction passes and key padding.
import { describe, it, expect } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import onnxProto from 'onnx-proto';
import { openModel } from '../../src/model/load.js';
import { ensureGraphs, kvzipScoring, KVZIP_SCORING_ENV } from '../../src/onnx/index.js';
import { createSession, ort } from '../../src/runtime/session.js';
import { buildKvzipScoreGraph } from '../../src/onnx/kvzip-graph.js';
import { encodeModel } from '../../src/onnx/builder.js';
import { kvzipFeeds } from '../../src/kvzip/inputs.js';
import { scoreContext } from '../../src/kvzip/score-context.js';
import { UserError } from '../../src/util/errors.js';
import { seededRandom } from '../helpers/random-model.js';

const MODEL = path.resolve('data/default-model');

describe('KVzip scoring forms', () => {
  it('fused and classic scores agree within 1e-6 on the default model (3 passes, fp32, CPU)', async () => {
    const model = openModel(MODEL);
    const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'fkz-forms-'));
    const rand = seededRandom(7);
    const ids = (n: number) => Array.from({ length: n }, () => Math.floor(((rand() + 1) / 2) * (model.spec.vocabSize - 1)));
    const prompts = { prefixIds: ids(21), postfixIds: ids(5), repeatFirstIds: ids(9), repeatNextIds: ids(13), prevPostfixTokens: 8 };
    const feeds = kvzipFeeds(ids(1100), prompts, { prefillChunk: 512, scoreChunk: 400 });
    const run = async (scoring: 'classic' | 'fused') => {
      const files = ensureGraphs(model, { dtype: 'float32', kinds: ['kvzip'], cacheDir, kvzipScoring: scoring });
      const session = await createSession(files.paths.kvzip!, { device: 'cpu' });
      const res = await scoreContext(session, feeds, model.spec.scoredLayers.length, model.spec.numKvHeads);
      await session.release();
      return { res, file: files.paths.kvzip! };
    };
    const classic = await run('classic');
    const fused = await run('fused');
    expect(path.basename(classic.file)).toBe('kvzip.onnx');
    expect(path.basename(fused.file)).toBe('kvzip.fused.onnx');
    expect(path.dirname(classic.file)).toBe(path.dirname(fused.file)); // one weight file for both
    let maxAbs = 0;
    let maxScore = 0;
    classic.res.scores.forEach((c, s) => {
      const f = fused.res.scores[s]!;
      for (let i = 0; i < c.length; i++) {
        maxAbs = Math.max(maxAbs, Math.abs(c[i]! - f[i]!));
        maxScore = Math.max(maxScore, c[i]!);
        expect(f[i]).toBeGreaterThanOrEqual(0);
        expect(f[i]).toBeLessThanOrEqual(1);
      }
    });
    expect(maxScore).toBeGreaterThan(0.01); // real scores, not an all-zero agreement
    expect(maxAbs).toBeLessThan(1e-6);
    // the fused reconstruction loop has no Softmax: the pass it saves
    const loopBody = (file: string) =>
      onnxProto.onnx.ModelProto.decode(readFileSync(file)).graph!.node!.filter((n) => n.opType === 'Loop')
        .map((n) => n.attribute!.find((a) => a.name === 'body')!.g!).find((g) => g.name === 'repeat')!;
    const ops = (file: string) => loopBody(file).node!.map((n) => n.opType);
    expect(ops(fused.file)).not.toContain('Softmax');
    expect(ops(classic.file)).toContain('Softmax');
  });

  it(`${KVZIP_SCORING_ENV} picks the form; a bad value is a one-line user error`, () => {
    expect(kvzipScoring({})).toBe('classic');
    expect(kvzipScoring({ [KVZIP_SCORING_ENV]: 'fused' })).toBe('fused');
    expect(() => kvzipScoring({ [KVZIP_SCORING_ENV]: 'fast' })).toThrow(UserError);
    expect(() => kvzipScoring({ [KVZIP_SCORING_ENV]: 'fast' })).toThrow(/FASTKVZIP_KVZIP_SCORING=fast: expected one of fused, classic/);
    expect(existsSync(MODEL)).toBe(true);
  });
});

describe('buildKvzipScoreGraph (the scoring benchmark graph)', () => {
  it('scores two layers of one pass alike in both forms', async () => {
    const spec = { numKvHeads: 2, numHeads: 4, headDim: 16 };
    const [L, P, C, R, N] = [2, 5, 70, 80, 5 + 150];
    const rand = seededRandom(3);
    const i64 = (v: number) => new ort.Tensor('int64', BigInt64Array.of(BigInt(v)), []);
    const feeds = {
      query: new ort.Tensor('float32', new Float32Array(L * R * 4 * 16).map(() => 2 * rand()), [L, 1, R, 4, 16]),
      present_key: new ort.Tensor('float32', new Float32Array(L * 2 * (N + R) * 16).map(() => 2 * rand()), [L, 1, 2, N + R, 16]),
      prefix_len: i64(P),
      chunk_start: i64(P + 80),
      chunk_len: i64(C),
      max_chunk: i64(80),
    };
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fkz-score-graph-'));
    const out: Record<string, ort.Tensor> = {};
    for (const scoring of ['classic', 'fused'] as const) {
      const file = path.join(dir, `${scoring}.onnx`);
      writeFileSync(file, encodeModel(buildKvzipScoreGraph(spec, 'float32', scoring, L)));
      const session = await createSession(file, { device: 'cpu' });
      out[scoring] = (await session.run(feeds)).scores!;
      await session.release();
    }
    expect(out.fused!.dims).toEqual([L, 2, 80]);
    const [c, f] = [out.classic!.data as Float32Array, out.fused!.data as Float32Array];
    let maxAbs = 0;
    for (let i = 0; i < c.length; i++) maxAbs = Math.max(maxAbs, Math.abs(c[i]! - f[i]!));
    expect(maxAbs).toBeLessThan(1e-6);
    expect(Math.max(...c)).toBeGreaterThan(0.01);
    expect(c[79]).toBe(0); // padding past the chunk
  });
});
