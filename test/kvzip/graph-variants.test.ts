// The KVzip graph's A/B variants of issue 17, each the same bits as the default graph:
// - 'host' bounds (FASTKVZIP_KVZIP_BOUNDS=host): the reconstruction passes' Slice/Pad/shape bounds
//   come from a carried per-pass table that ONNX Runtime's CUDA EP keeps on the CPU, so no bound is
//   copied from the device to the host;
// - 'gqa' room (FASTKVZIP_KVZIP_ROOM=gqa): no Concat of empty slots onto each layer's cache per
//   pass and prefill chunk; GroupQueryAttention builds past ⧺ new itself.
import { describe, it, expect } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import onnxProto from 'onnx-proto';
import { openModel } from '../../src/model/load.js';
import { ensureGraphs, kvzipBounds, KVZIP_BOUNDS_ENV, kvzipRoom, KVZIP_ROOM_ENV } from '../../src/onnx/index.js';
import { hostReads } from '../../src/onnx/host-reads.js';
import { KVZIP_SCORINGS, type KvzipBounds, type KvzipRoom, type KvzipScoring } from '../../src/onnx/kvzip-graph.js';
import { createSession } from '../../src/runtime/session.js';
import { kvzipFeeds, keepFeeds } from '../../src/kvzip/inputs.js';
import { keptPositions } from '../../src/features/keep.js';
import { scoreContext } from '../../src/kvzip/score-context.js';
import { UserError } from '../../src/util/errors.js';
import { seededRandom } from '../helpers/random-model.js';

const MODEL = path.resolve('data/default-model');
const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'fkz-host-bounds-'));

const VARIANTS: { bounds: KvzipBounds; room: KvzipRoom; file: string }[] = [
  { bounds: 'host', room: 'concat', file: 'hostbounds' },
  { bounds: 'device', room: 'gqa', file: 'gqaroom' },
  { bounds: 'host', room: 'gqa', file: 'hostbounds.gqaroom' },
];

describe('KVzip graph variants', () => {
  it.each(KVZIP_SCORINGS)('%s scoring: host bounds, gqa room and both give the default graph\'s bits (default model, 3 passes, fp32, CPU)', async (scoring) => {
    const model = openModel(MODEL);
    const rand = seededRandom(11);
    const ids = (n: number) => Array.from({ length: n }, () => Math.floor(((rand() + 1) / 2) * (model.spec.vocabSize - 1)));
    const prompts = { prefixIds: ids(21), postfixIds: ids(5), repeatFirstIds: ids(9), repeatNextIds: ids(13), prevPostfixTokens: 8 };
    const feeds = kvzipFeeds(ids(1000), prompts, { prefillChunk: 512, scoreChunk: 400 }); // the last chunk is shorter: padded scores
    const run = async (bounds: KvzipBounds, room: KvzipRoom) => {
      const files = ensureGraphs(model, { dtype: 'float32', kinds: ['kvzip'], cacheDir, kvzipScoring: scoring, kvzipBounds: bounds, kvzipRoom: room });
      const session = await createSession(files.paths.kvzip!, { device: 'cpu' });
      const res = await scoreContext(session, feeds, model.spec.scoredLayers.length, model.spec.numKvHeads);
      await session.release();
      return { res, file: files.paths.kvzip! };
    };
    const base = await run('device', 'concat');
    for (const v of VARIANTS) {
      const other = await run(v.bounds, v.room);
      expect(path.basename(other.file)).toBe(`kvzip.${scoring === 'classic' ? '' : 'fused.'}${v.file}.onnx`);
      base.res.scores.forEach((d, s) => {
        expect(Buffer.from(other.res.scores[s]!.buffer).equals(Buffer.from(d.buffer)), `${v.file} scores ${s}`).toBe(true);
        expect(Buffer.from(other.res.attnInput[s]!.buffer).equals(Buffer.from(base.res.attnInput[s]!.buffer)), `${v.file} attention inputs ${s}`).toBe(true);
      });
    }
    expect(Math.max(...base.res.scores[0]!)).toBeGreaterThan(0.01);
  });

  it.each(['kvzip_int8', 'kvzip_int8_keep'] as const)('%s (in-graph 8-bit codes): host bounds, gqa room and both give the default graph\'s codes, scales and scores (default model, fp32, CPU)', async (kind) => {
    const model = openModel(MODEL);
    const rand = seededRandom(12);
    const ids = (n: number) => Array.from({ length: n }, () => Math.floor(((rand() + 1) / 2) * (model.spec.vocabSize - 1)));
    const prompts = { prefixIds: ids(21), postfixIds: ids(5), repeatFirstIds: ids(9), repeatNextIds: ids(13), prevPostfixTokens: 8 };
    const feeds = kvzipFeeds(ids(900), prompts, { prefillChunk: 512, scoreChunk: 400 });
    if (kind === 'kvzip_int8_keep') feeds.keep = keepFeeds(keptPositions(900, 0, 0.45, 3, 'ctx-a'), feeds.prefixLen, feeds.prefillShape);
    const run = async (bounds: KvzipBounds, room: KvzipRoom) => {
      const files = ensureGraphs(model, { dtype: 'float32', kinds: [kind], cacheDir, kvzipBounds: bounds, kvzipRoom: room });
      const session = await createSession(files.paths[kind]!, { device: 'cpu' });
      const res = await scoreContext(session, feeds, model.spec.scoredLayers.length, model.spec.numKvHeads);
      await session.release();
      return res;
    };
    const base = await run('device', 'concat');
    expect(base.attnScales).toBeDefined();
    if (kind === 'kvzip_int8_keep') expect(base.attnInput[0]!.length).toBe(feeds.keep!.index.length * model.spec.hiddenSize);
    for (const v of VARIANTS) {
      const other = await run(v.bounds, v.room);
      base.scores.forEach((d, s) => {
        expect(Buffer.from(other.scores[s]!.buffer).equals(Buffer.from(d.buffer)), `${v.file} scores ${s}`).toBe(true);
        expect(Buffer.from(other.attnInput[s]!.buffer).equals(Buffer.from(base.attnInput[s]!.buffer)), `${v.file} codes ${s}`).toBe(true);
        expect(Buffer.from(other.attnScales![s]!.buffer).equals(Buffer.from(base.attnScales![s]!.buffer)), `${v.file} scales ${s}`).toBe(true);
      });
    }
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

  it(`${KVZIP_ROOM_ENV} picks the room; the gqa room has no Concat onto the cache in the prefill and reconstruction loops`, () => {
    expect(kvzipRoom({})).toBe('concat');
    expect(kvzipRoom({ [KVZIP_ROOM_ENV]: 'gqa' })).toBe('gqa');
    expect(() => kvzipRoom({ [KVZIP_ROOM_ENV]: 'none' })).toThrow(/FASTKVZIP_KVZIP_ROOM=none: expected one of concat, gqa/);
    const model = openModel(MODEL);
    const concats = (room: KvzipRoom, loop: 'prefill' | 'repeat') => {
      // the chunk-major prefill: one 'prefill' Loop to look into (the layer-major default has one per layer)
      const file = ensureGraphs(model, { dtype: 'bfloat16', kinds: ['kvzip_bf16'], cacheDir, kvzipRoom: room, kvzipPrefill: 'chunks' }).paths.kvzip_bf16!;
      const body = onnxProto.onnx.ModelProto.decode(readFileSync(file)).graph!.node!.filter((n) => n.opType === 'Loop')
        .map((n) => n.attribute!.find((a) => a.name === 'body')!.g!).find((g) => g.name === loop)!;
      const gqaPast = new Set(body.node!.filter((n) => n.opType === 'GroupQueryAttention').flatMap((n) => [n.input![3]!, n.input![4]!]));
      return body.node!.filter((n) => n.opType === 'Concat' && gqaPast.has(n.output![0]!)).length;
    };
    for (const loop of ['prefill', 'repeat'] as const) {
      expect(concats('concat', loop)).toBe(2 * (Math.max(...model.spec.scoredLayers) + 1)); // K and V of every layer up to the last scored one
      expect(concats('gqa', loop)).toBe(0);
    }
  });
});
