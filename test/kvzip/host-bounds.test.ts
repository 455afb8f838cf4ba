// The KVzip graph's 'host' bounds (FASTKVZIP_KVZIP_BOUNDS=host, issue 17): the reconstruction
// passes' Slice/Pad/shape bounds come from a carried per-pass table that ONNX Runtime's CUDA EP keeps
// on the CPU, so no bound is copied from the device to the host; the scores and attention inputs
// are the same bits as with the 'device' bounds.
import { describe, it, expect } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import onnxProto from 'onnx-proto';
import { openModel } from '../../src/model/load.js';
import { ensureGraphs, kvzipBounds, KVZIP_BOUNDS_ENV } from '../../src/onnx/index.js';
import { hostReads } from '../../src/onnx/host-reads.js';
import { KVZIP_SCORINGS, type KvzipBounds, type KvzipScoring } from '../../src/onnx/kvzip-graph.js';
import { createSession } from '../../src/runtime/session.js';
import { kvzipFeeds } from '../../src/kvzip/inputs.js';
import { scoreContext } from '../../src/kvzip/score-context.js';
import { UserError } from '../../src/util/errors.js';
import { seededRandom } from '../helpers/random-model.js';

const MODEL = path.resolve('data/default-model');
const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'fkz-host-bounds-'));

describe('KVzip graph, host bounds', () => {
  it.each(KVZIP_SCORINGS)('%s scoring: same bits as the device bounds (default model, 3 passes, fp32, CPU)', async (scoring) => {
    const model = openModel(MODEL);
    const rand = seededRandom(11);
    const ids = (n: number) => Array.from({ length: n }, () => Math.floor(((rand() + 1) / 2) * (model.spec.vocabSize - 1)));
    const prompts = { prefixIds: ids(21), postfixIds: ids(5), repeatFirstIds: ids(9), repeatNextIds: ids(13), prevPostfixTokens: 8 };
    const feeds = kvzipFeeds(ids(1000), prompts, { prefillChunk: 512, scoreChunk: 400 }); // the last chunk is shorter: padded scores
    const run = async (bounds: KvzipBounds) => {
      const files = ensureGraphs(model, { dtype: 'float32', kinds: ['kvzip'], cacheDir, kvzipScoring: scoring, kvzipBounds: bounds });
      const session = await createSession(files.paths.kvzip!, { device: 'cpu' });
      const res = await scoreContext(session, feeds, model.spec.scoredLayers.length, model.spec.numKvHeads);
      await session.release();
      return { res, file: files.paths.kvzip! };
    };
    const device = await run('device');
    const host = await run('host');
    expect(path.basename(host.file)).toBe(scoring === 'classic' ? 'kvzip.hostbounds.onnx' : 'kvzip.fused.hostbounds.onnx');
    device.res.scores.forEach((d, s) => {
      expect(Buffer.from(host.res.scores[s]!.buffer).equals(Buffer.from(d.buffer))).toBe(true);
      expect(Buffer.from(host.res.attnInput[s]!.buffer).equals(Buffer.from(device.res.attnInput[s]!.buffer))).toBe(true);
    });
    expect(Math.max(...device.res.scores[0]!)).toBeGreaterThan(0.01);
  });

  it.each(KVZIP_SCORINGS)('%s scoring: no bound computed on the device is read on the host (bf16 graph)', (scoring: KvzipScoring) => {
    const model = openModel(MODEL);
    const copies = (bounds: KvzipBounds) => {
      const file = ensureGraphs(model, { dtype: 'bfloat16', kinds: ['kvzip_bf16'], cacheDir, kvzipScoring: scoring, kvzipBounds: bounds }).paths.kvzip_bf16!;
      const reports = hostReads(onnxProto.onnx.ModelProto.decode(readFileSync(file)).graph!);
      return Object.fromEntries(reports.map((r) => [r.graph, r]));
    };
    const device = copies('device');
    const host = copies('host');
    // what the variant removes: per pass, the bounds of the repeat input, the chunk, the scores' pads
    expect(device.repeat!.deviceToHost).toBeGreaterThan(5);
    expect(device.fastkvzip_kvzip!.deviceToHost).toBeGreaterThan(0);
    for (const r of Object.values(host)) expect(r.deviceToHost, r.graph).toBe(0);
    expect(host.repeat!.dynamicHostInputs).toBe(device.repeat!.dynamicHostInputs); // the same reads, from host memory
    expect(host.fastkvzip_kvzip!.dataToHost).toBe(model.spec.scoredLayers.length); // the attention inputs still leave through the pinned route
  });

  it(`${KVZIP_BOUNDS_ENV} picks the bounds; a bad value is a one-line user error`, () => {
    expect(kvzipBounds({})).toBe('device');
    expect(kvzipBounds({ [KVZIP_BOUNDS_ENV]: 'host' })).toBe('host');
    expect(() => kvzipBounds({ [KVZIP_BOUNDS_ENV]: 'cpu' })).toThrow(UserError);
    expect(() => kvzipBounds({ [KVZIP_BOUNDS_ENV]: 'cpu' })).toThrow(/FASTKVZIP_KVZIP_BOUNDS=cpu: expected one of device, host/);
  });
});
