// The KVzip graph's memory forms (issues 16/17), each the same bits as the default graph:
// - layer-major prefill (FASTKVZIP_KVZIP_PREFILL=layers): one Loop over the chunks per layer, carrying only that
//   layer's cache, instead of one Loop carrying every layer's cache;
// - layered passes (FASTKVZIP_KVZIP_PASS_ORDER=layers): each reconstruction pass makes a layer's room and runs its
//   attention only after the previous scored layer's scores, so ONNX Runtime cannot hold every layer's room at once.
// What they save is measured by bench/kvzip_peak_memory.ts (BENCHMARKS.md); here: same values, and the order
// ONNX Runtime really executes.
import { describe, it, expect } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import onnxProto from 'onnx-proto';
import { openModel } from '../../src/model/load.js';
import { ensureGraphs, kvzipPrefill, KVZIP_PREFILL_ENV, kvzipPassOrder, KVZIP_PASS_ORDER_ENV } from '../../src/onnx/index.js';
import { writeModelGraphs } from '../../src/onnx/write-graphs.js';
import { hostReads } from '../../src/onnx/host-reads.js';
import type { KvzipPassOrder, KvzipPrefill, KvzipRoom, KvzipScoring, KvzipBounds } from '../../src/onnx/kvzip-graph.js';
import { createSession } from '../../src/runtime/session.js';
import { kvzipFeeds, keepFeeds } from '../../src/kvzip/inputs.js';
import { keptPositions } from '../../src/features/keep.js';
import { scoreContext, feedsToTensors } from '../../src/kvzip/score-context.js';
import { UserError } from '../../src/util/errors.js';
import { randomModel, seededRandom } from '../helpers/random-model.js';

const MODEL = path.resolve('data/default-model');
const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'fkz-memory-forms-'));

interface Form { prefill: KvzipPrefill; passOrder: KvzipPassOrder; room?: KvzipRoom; bounds?: KvzipBounds; file: string }
const FORMS: Form[] = [
  // file: the graph's name parts beside the defaults (layer-major prefill and layered passes since session 10)
  { prefill: 'layers', passOrder: 'free', file: 'freepasses' },
  { prefill: 'chunks', passOrder: 'layers', file: 'chunksprefill' },
  { prefill: 'layers', passOrder: 'layers', file: '' },
  { prefill: 'layers', passOrder: 'layers', room: 'gqa', bounds: 'host', file: 'hostbounds.gqaroom' },
];

const equalBits = (a: ArrayBufferView, b: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

function contextFeeds(vocab: number, seed: number, length: number) {
  const rand = seededRandom(seed);
  const ids = (n: number) => Array.from({ length: n }, () => Math.floor(((rand() + 1) / 2) * (vocab - 1)));
  const prompts = { prefixIds: ids(21), postfixIds: ids(5), repeatFirstIds: ids(9), repeatNextIds: ids(13), prevPostfixTokens: 8 };
  return kvzipFeeds(ids(length), prompts, { prefillChunk: 256, scoreChunk: 300 }); // 4 prefill chunks (the last padded), 3 passes (the last shorter)
}

describe('KVzip graph memory forms', () => {
  it.each(['classic', 'fused'] as KvzipScoring[])('%s scoring: layer-major prefill, layered passes and both (also with gqa room + host bounds) give the default graph\'s bits (default model, fp32, CPU)', async (scoring) => {
    const model = openModel(MODEL);
    const feeds = contextFeeds(model.spec.vocabSize, 21, 900);
    const run = async (f: Partial<Form>) => {
      const files = ensureGraphs(model, { dtype: 'float32', kinds: ['kvzip'], cacheDir, kvzipScoring: scoring, kvzipPrefill: f.prefill ?? 'chunks', kvzipPassOrder: f.passOrder ?? 'free', kvzipRoom: f.room ?? 'concat', kvzipBounds: f.bounds ?? 'device' });
      const session = await createSession(files.paths.kvzip!, { device: 'cpu' });
      const res = await scoreContext(session, feeds, model.spec.scoredLayers.length, model.spec.numKvHeads);
      await session.release();
      return { res, file: files.paths.kvzip! };
    };
    const base = await run({});
    expect(Math.max(...base.res.scores[0]!)).toBeGreaterThan(0.01);
    for (const f of FORMS) {
      const other = await run(f);
      expect(path.basename(other.file)).toBe(`${['kvzip', scoring === 'classic' ? '' : 'fused', f.file].filter(Boolean).join('.')}.onnx`);
      base.res.scores.forEach((d, s) => {
        expect(equalBits(other.res.scores[s]!, d), `${f.file} scores ${s}`).toBe(true);
        expect(equalBits(other.res.attnInput[s]!, base.res.attnInput[s]!), `${f.file} attention inputs ${s}`).toBe(true);
      });
    }
  });

  it('kvzip_int8_keep (in-graph 8-bit codes of the kept rows): the memory forms give the default graph\'s codes, scales and scores', async () => {
    const model = openModel(MODEL);
    const feeds = contextFeeds(model.spec.vocabSize, 22, 800);
    feeds.keep = keepFeeds(keptPositions(800, 0, 0.45, 3, 'ctx-m'), feeds.prefixLen, feeds.prefillShape);
    const run = async (f: Partial<Form>) => {
      const files = ensureGraphs(model, { dtype: 'float32', kinds: ['kvzip_int8_keep'], cacheDir, kvzipPrefill: f.prefill ?? 'chunks', kvzipPassOrder: f.passOrder ?? 'free', kvzipRoom: f.room ?? 'concat', kvzipBounds: f.bounds ?? 'device' });
      const session = await createSession(files.paths.kvzip_int8_keep!, { device: 'cpu' });
      const res = await scoreContext(session, feeds, model.spec.scoredLayers.length, model.spec.numKvHeads);
      await session.release();
      return res;
    };
    const base = await run({});
    expect(base.attnInput[0]!.length).toBe(feeds.keep.index.length * model.spec.hiddenSize);
    for (const f of FORMS) {
      const other = await run(f);
      base.scores.forEach((d, s) => {
        expect(equalBits(other.scores[s]!, d), `${f.file} scores ${s}`).toBe(true);
        expect(equalBits(other.attnInput[s]!, base.attnInput[s]!), `${f.file} codes ${s}`).toBe(true);
        expect(equalBits(other.attnScales![s]!, base.attnScales![s]!), `${f.file} scales ${s}`).toBe(true);
      });
    }
  });

  it('a Gemma-3 layout (sliding layers, scored layers a subset) and the prefill kind: the same bits in every form', async () => {
    const { spec, source } = randomModel('gemma3', 5);
    const chunked = kvzipFeeds(Array.from({ length: 40 }, (_, i) => 1 + ((i * 7) % 90)), { prefixIds: [3, 4, 5], postfixIds: [6], repeatFirstIds: [7, 8], repeatNextIds: [9], prevPostfixTokens: 2 }, { prefillChunk: 16, scoreChunk: 12 });
    const outputs = async (f: Partial<Form>, kind: 'kvzip' | 'prefill') => {
      const dir = mkdtempSync(path.join(cacheDir, 'gemma-'));
      const built = writeModelGraphs(dir, spec, source, 'float32', [kind], { prefill: f.prefill, passOrder: f.passOrder, room: f.room, bounds: f.bounds });
      const session = await createSession(built.paths[kind]!, { device: 'cpu' });
      const all = feedsToTensors(chunked);
      const out = await session.run(kind === 'prefill' ? { prefill_ids: all.prefill_ids!, num_tokens: all.num_tokens!, prefix_len: all.prefix_len! } : all);
      await session.release();
      rmSync(dir, { recursive: true, force: true });
      return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as ArrayBufferView]));
    };
    expect(chunked.prefillShape[0]).toBe(3);
    for (const kind of ['kvzip', 'prefill'] as const) {
      const base = await outputs({}, kind);
      for (const f of FORMS) {
        if (kind === 'prefill' && f.passOrder === 'layers') continue; // the prefill kind has no passes
        const other = await outputs(f, kind);
        expect(Object.keys(other).sort()).toEqual(Object.keys(base).sort());
        for (const name of Object.keys(base)) expect(equalBits(other[name]!, base[name]!), `${kind} ${f.file} ${name}`).toBe(true);
      }
    }
  });

  it('the layer-major prefill has one Loop per layer, each carrying that layer\'s K and V only', () => {
    const model = openModel(MODEL);
    const file = ensureGraphs(model, { dtype: 'bfloat16', kinds: ['kvzip_bf16'], cacheDir, kvzipPrefill: 'layers' }).paths.kvzip_bf16!;
    const loops = onnxProto.onnx.ModelProto.decode(readFileSync(file)).graph!.node!.filter((n) => n.opType === 'Loop');
    const layers = Math.max(...model.spec.scoredLayers) + 1;
    expect(loops.length).toBe(layers + 1); // + the reconstruction loop
    for (const loop of loops.slice(0, layers)) expect(loop.input!.length).toBe(2 + 2); // trip count, cond, K, V
  });

  it.each(['concat', 'gqa'] as KvzipRoom[])('layered passes, %s room: ONNX Runtime runs each layer\'s room Concat and attention after the previous layer\'s scores (CPU profile of the repeat loop)', async (room) => {
    const model = openModel(MODEL);
    const feeds = contextFeeds(model.spec.vocabSize, 24, 500);
    const order = async (passOrder: KvzipPassOrder) => {
      const file = ensureGraphs(model, { dtype: 'float32', kinds: ['kvzip'], cacheDir, kvzipPassOrder: passOrder, kvzipRoom: room }).paths.kvzip!;
      const prefix = path.join(mkdtempSync(path.join(cacheDir, 'prof-')), 'p');
      const session = await createSession(file, { device: 'cpu' }, { enableProfiling: true, profileFilePrefix: prefix });
      await session.run(feedsToTensors(feeds));
      (session as unknown as { endProfiling(): void }).endProfiling();
      await session.release();
      const dir = path.dirname(prefix);
      const events = JSON.parse(readFileSync(path.join(dir, readdirSync(dir)[0]!), 'utf8')) as { cat: string; name: string; ts: number }[];
      // the nodes of the first reconstruction pass, in execution order
      const names = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && e.name.startsWith('repeat/')).sort((a, b) => a.ts - b.ts).map((e) => e.name.replace(/_kernel_time$/, ''));
      const pass = names.slice(0, names.indexOf(names[0]!, 1) > 0 ? names.indexOf(names[0]!, 1) : names.length);
      const body = onnxProto.onnx.ModelProto.decode(readFileSync(file)).graph!.node!.find((n) => n.opType === 'Loop' && n.attribute![0]!.g!.name === 'repeat')!.attribute![0]!.g!;
      const gqa = body.node!.filter((n) => n.opType === 'GroupQueryAttention');
      const rooms = new Set(gqa.flatMap((n) => [n.input![3]!, n.input![4]!]));
      const roomConcats = body.node!.filter((n) => n.opType === 'Concat' && rooms.has(n.output![0]!)).map((n) => n.name!);
      const at = (name: string) => pass.indexOf(name);
      const layerOf = (name: string) => Number(/layers\.(\d+)\//.exec(name)![1]);
      const lastScoreNode = (l: number) => Math.max(...pass.map((n, i) => (n.startsWith(`repeat/score.${l}/`) ? i : -1)));
      return { roomConcats, gqa: gqa.map((n) => n.name!), at, layerOf, lastScoreNode };
    };
    const layers = Math.max(...model.spec.scoredLayers) + 1;
    const later = (o: Awaited<ReturnType<typeof order>>) =>
      [...o.roomConcats, ...o.gqa].filter((n) => o.layerOf(n) > 0).every((n) => o.at(n) > o.lastScoreNode(o.layerOf(n) - 1));
    const layered = await order('layers');
    expect(layered.roomConcats.length).toBe(room === 'concat' ? 2 * layers : 0);
    expect(layered.gqa.length).toBe(layers);
    expect(layered.roomConcats.every((n) => layered.at(n) >= 0)).toBe(true);
    expect(later(layered)).toBe(true);
    // the default order is what the form fixes: rooms made early and scores taken at the end
    expect(later(await order('free'))).toBe(false);
  });

  it('the memory forms add no device-computed bound read on the host (bf16 int8 keep graph; host bounds stay at 0)', () => {
    const model = openModel(MODEL);
    const reads = (bounds: KvzipBounds, room: KvzipRoom, prefill: KvzipPrefill, passOrder: KvzipPassOrder) => {
      const file = ensureGraphs(model, { dtype: 'bfloat16', kinds: ['kvzip_int8_keep'], cacheDir, kvzipBounds: bounds, kvzipRoom: room, kvzipPrefill: prefill, kvzipPassOrder: passOrder }).paths.kvzip_int8_keep!;
      const graphs = hostReads(onnxProto.onnx.ModelProto.decode(readFileSync(file)).graph!);
      const of = (name: string) => graphs.filter((g) => g.graph === name || g.graph.startsWith(`${name}.`)).reduce((n, g) => n + g.deviceToHost, 0);
      return { main: of('fastkvzip_kvzip'), prefill: of('prefill'), repeat: of('repeat') };
    };
    for (const room of ['concat', 'gqa'] as KvzipRoom[]) {
      const base = reads('device', room, 'chunks', 'free');
      expect(base.repeat).toBeGreaterThan(0);
      expect(reads('device', room, 'layers', 'layers')).toEqual(base);
      expect(reads('host', room, 'layers', 'layers')).toEqual({ main: 0, prefill: 0, repeat: 0 });
    }
  });

  it(`${KVZIP_PREFILL_ENV} and ${KVZIP_PASS_ORDER_ENV} pick the forms; a bad value is a one-line user error`, () => {
    expect(kvzipPrefill({})).toBe('layers');
    expect(kvzipPrefill({ [KVZIP_PREFILL_ENV]: 'chunks' })).toBe('chunks');
    expect(kvzipPrefill({ [KVZIP_PREFILL_ENV]: 'layers' })).toBe('layers');
    expect(() => kvzipPrefill({ [KVZIP_PREFILL_ENV]: 'rows' })).toThrow(UserError);
    expect(() => kvzipPrefill({ [KVZIP_PREFILL_ENV]: 'rows' })).toThrow(/FASTKVZIP_KVZIP_PREFILL=rows: expected one of chunks, layers/);
    expect(kvzipPassOrder({})).toBe('layers');
    expect(kvzipPassOrder({ [KVZIP_PASS_ORDER_ENV]: 'free' })).toBe('free');
    expect(kvzipPassOrder({ [KVZIP_PASS_ORDER_ENV]: 'layers' })).toBe('layers');
    expect(() => kvzipPassOrder({ [KVZIP_PASS_ORDER_ENV]: 'x' })).toThrow(/FASTKVZIP_KVZIP_PASS_ORDER=x: expected one of free, layers/);
  });
});
