// Entry point of the ONNX stage: build (or reuse) a model's graphs in the cache, keyed by a
// hash of everything they depend on.
import { existsSync, readFileSync, statSync, rmSync, mkdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import type { OpenedModel } from '../model/load.js';
import type { SafetensorsIndex } from '../model/safetensors/index.js';
import { writeModelGraphs, graphFileName, ALL_GRAPHS, WEIGHT_FILE, type GraphFiles, type GraphKind, type GraphVariants } from './write-graphs.js';
import { DEFAULT_KVZIP_SCORING, KVZIP_SCORINGS, BF16_BITS_ROUTES, DEFAULT_BF16_BITS_ROUTE, KVZIP_BOUNDS, DEFAULT_KVZIP_BOUNDS, KVZIP_ROOMS, DEFAULT_KVZIP_ROOM, KVZIP_PREFILLS, DEFAULT_KVZIP_PREFILL, KVZIP_PASS_ORDERS, DEFAULT_KVZIP_PASS_ORDER, type KvzipScoring, type Bf16BitsRoute, type KvzipBounds, type KvzipRoom, type KvzipPrefill, type KvzipPassOrder } from './kvzip-graph.js';
import type { ComputeDType, TensorSource } from './weights.js';
import { writeFileAtomicSync } from '../util/atomic.js';
import { UserError } from '../util/errors.js';
import { waitForLockSync } from '../util/wait-lock.js';
import { GQA_ROUTES, type GqaRoute } from './decoder.js';

/** Bump when graph code changes in a way that changes the files. */
export const BUILDER_VERSION = '12'; // 8: host bounds / gqa room variants; 9: per-head compressed cache; 10: both; 11: in-graph 8-bit quantisation; 12: layer-major prefill and layered passes by default

export { writeModelGraphs, type GraphFiles, type GraphKind, type KvzipScoring, type Bf16BitsRoute, type KvzipBounds, type KvzipRoom, type KvzipPrefill, type KvzipPassOrder, type GqaRoute };
export { headGatherModel, headDownloadModel } from './head-gather-graph.js';

/**
 * Environment variable choosing the KVzip graphs' scoring form (an A/B switch for benchmarks;
 * both forms give the same scores). Unset: DEFAULT_KVZIP_SCORING.
 */
export const KVZIP_SCORING_ENV = 'FASTKVZIP_KVZIP_SCORING';

export function kvzipScoring(env: NodeJS.ProcessEnv = process.env): KvzipScoring {
  return envChoice(env, KVZIP_SCORING_ENV, KVZIP_SCORINGS, DEFAULT_KVZIP_SCORING);
}

/** Environment variable choosing how the bf16 graphs make the attention inputs' bit patterns (A/B switch; same bits). */
export const BF16_BITS_ENV = 'FASTKVZIP_BF16_BITS';

export function bf16BitsRoute(env: NodeJS.ProcessEnv = process.env): Bf16BitsRoute {
  return envChoice(env, BF16_BITS_ENV, BF16_BITS_ROUTES, DEFAULT_BF16_BITS_ROUTE);
}

/**
 * Environment variable choosing where the KVzip graphs' reconstruction loop computes its Slice/Pad
 * bounds ('device' or 'host'; A/B switch, same values). Unset: DEFAULT_KVZIP_BOUNDS.
 */
export const KVZIP_BOUNDS_ENV = 'FASTKVZIP_KVZIP_BOUNDS';

export function kvzipBounds(env: NodeJS.ProcessEnv = process.env): KvzipBounds {
  return envChoice(env, KVZIP_BOUNDS_ENV, KVZIP_BOUNDS, DEFAULT_KVZIP_BOUNDS);
}

/**
 * Environment variable choosing how the KVzip graphs' prefill chunks and reconstruction passes make room for their keys
 * in each layer's cache ('concat' or 'gqa'; A/B switch, same values). Unset: DEFAULT_KVZIP_ROOM.
 */
export const KVZIP_ROOM_ENV = 'FASTKVZIP_KVZIP_ROOM';

export function kvzipRoom(env: NodeJS.ProcessEnv = process.env): KvzipRoom {
  return envChoice(env, KVZIP_ROOM_ENV, KVZIP_ROOMS, DEFAULT_KVZIP_ROOM);
}

/**
 * Environment variable choosing the KVzip graphs' prefill loop order ('chunks' or 'layers'; A/B switch,
 * same values; 'layers' holds about one cache where 'chunks' holds three at the prefill's end, see KvzipPrefill). Unset: DEFAULT_KVZIP_PREFILL.
 */
export const KVZIP_PREFILL_ENV = 'FASTKVZIP_KVZIP_PREFILL';

export function kvzipPrefill(env: NodeJS.ProcessEnv = process.env): KvzipPrefill {
  return envChoice(env, KVZIP_PREFILL_ENV, KVZIP_PREFILLS, DEFAULT_KVZIP_PREFILL);
}

/**
 * Environment variable choosing the order of the KVzip graphs' reconstruction passes ('free' or 'layers';
 * A/B switch, same values; 'layers' keeps about one layer's room alive, see KvzipPassOrder). Unset: DEFAULT_KVZIP_PASS_ORDER.
 */
export const KVZIP_PASS_ORDER_ENV = 'FASTKVZIP_KVZIP_PASS_ORDER';

export function kvzipPassOrder(env: NodeJS.ProcessEnv = process.env): KvzipPassOrder {
  return envChoice(env, KVZIP_PASS_ORDER_ENV, KVZIP_PASS_ORDERS, DEFAULT_KVZIP_PASS_ORDER);
}

function envChoice<T extends string>(env: NodeJS.ProcessEnv, name: string, choices: readonly T[], fallback: T): T {
  const v = env[name]?.trim();
  if (!v) return fallback;
  if (!(choices as readonly string[]).includes(v)) throw new UserError(`${name}=${v}: expected one of ${choices.join(', ')}`);
  return v as T;
}

/**
 * Environment variable choosing where 8-bit stores are quantised: 'graph' (default: in the KVzip
 * graph, on the device, kept rows only) or 'host' (the shard writers quantise 16-bit rows). Both
 * give the same bytes; an A/B switch for the GPU stages (issue 16).
 */
export const QUANT_ROUTE_ENV = 'FASTKVZIP_QUANT';
export type QuantRoute = 'graph' | 'host';
export const QUANT_ROUTES: readonly QuantRoute[] = ['graph', 'host'];

export function quantRoute(env: NodeJS.ProcessEnv = process.env): QuantRoute {
  return envChoice(env, QUANT_ROUTE_ENV, QUANT_ROUTES, 'graph');
}

/**
 * Environment variable choosing how the graphs call GroupQueryAttention: 'flash' (plain) or 'sink'
 * (smooth softmax with a −∞ head sink: the same softmax, which keeps ONNX Runtime's WebGPU EP off
 * its subgroup flash-attention kernel; see GqaRoute). Unset: 'sink' on WebGPU, 'flash' elsewhere.
 */
export const GQA_ENV = 'FASTKVZIP_GQA';

export function gqaRoute(device?: string, env: NodeJS.ProcessEnv = process.env): GqaRoute {
  return envChoice(env, GQA_ENV, GQA_ROUTES, device === 'webgpu' ? 'sink' : 'flash');
}

export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env.FASTKVZIP_CACHE ?? path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'fastkvzip');
}

export function tensorSource(weights: SafetensorsIndex): TensorSource {
  const map = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' } as const;
  return {
    has: (n) => weights.has(n),
    shape: (n) => weights.info(n).shape,
    readF32: (n) => weights.readF32(n),
    readRaw: (n) => {
      const info = weights.info(n);
      const dtype = map[info.dtype as keyof typeof map];
      if (!dtype) throw new UserError(`${info.file}: tensor ${n} has unsupported dtype ${info.dtype}`);
      return { dtype, data: weights.readRawSync(n) };
    },
  };
}

/** Hash of config.json, the weights' layout and identity (names, dtypes, shapes, file sizes and times), dtype and builder. */
export function graphKey(model: OpenedModel, dtype: ComputeDType): string {
  const h = createHash('sha256');
  h.update(`builder ${BUILDER_VERSION}\n${dtype}\n`);
  h.update(readFileSync(path.join(model.dir, 'config.json')));
  // the graphs bake the RoPE tables in: an override is part of their identity
  if (model.ropeOverride) h.update(`rope ${JSON.stringify(model.spec.rope)} ${JSON.stringify(model.spec.ropeLocal)}\n`);
  for (const f of model.weights.files) {
    const st = statSync(f);
    h.update(`${path.basename(f)} ${st.size} ${st.mtimeMs}\n`);
  }
  for (const n of model.weights.names().sort()) {
    const i = model.weights.info(n);
    h.update(`${n} ${i.dtype} ${i.shape.join('x')}\n`);
  }
  return h.digest('hex').slice(0, 20);
}

export interface EnsureGraphsOptions {
  dtype: ComputeDType;
  kinds?: GraphKind[];
  cacheDir?: string;
  /** rebuild even when cached */
  force?: boolean;
  /** the KVzip graphs' scoring form (default: kvzipScoring(), i.e. FASTKVZIP_KVZIP_SCORING or the default) */
  kvzipScoring?: KvzipScoring;
  /** the bf16 graphs' bit route (default: bf16BitsRoute(), i.e. FASTKVZIP_BF16_BITS or the default) */
  bf16Bits?: Bf16BitsRoute;
  /** where the KVzip graphs compute their bounds (default: kvzipBounds(), i.e. FASTKVZIP_KVZIP_BOUNDS or the default) */
  kvzipBounds?: KvzipBounds;
  /** how the KVzip graphs make room for the passes' keys (default: kvzipRoom(), i.e. FASTKVZIP_KVZIP_ROOM or the default) */
  kvzipRoom?: KvzipRoom;
  /** the KVzip graphs' prefill loop order (default: kvzipPrefill(), i.e. FASTKVZIP_KVZIP_PREFILL or the default) */
  kvzipPrefill?: KvzipPrefill;
  /** the order of the KVzip graphs' reconstruction passes (default: kvzipPassOrder(), i.e. FASTKVZIP_KVZIP_PASS_ORDER or the default) */
  kvzipPassOrder?: KvzipPassOrder;
  /** the 8-bit kinds' channels per scale (default: the hidden size) */
  quantBlock?: number;
  /** how the graphs call GroupQueryAttention (default: gqaRoute(), i.e. FASTKVZIP_GQA or 'flash') */
  gqa?: GqaRoute;
  log?: (line: string) => void;
}

/**
 * The model's graphs in `<cache>/graphs/<name>-<key>/`: missing kinds are built there, sharing
 * (and appending to) one weight file, so asking for another kind later costs no weight copy.
 */
export function ensureGraphs(model: OpenedModel, o: EnsureGraphsOptions): GraphFiles {
  const kinds = o.kinds ?? ALL_GRAPHS;
  // a block of the whole row is the default form: no file-name suffix for it
  const quantBlock = o.quantBlock === undefined || o.quantBlock === model.spec.hiddenSize ? undefined : o.quantBlock;
  const variants = { scoring: o.kvzipScoring ?? kvzipScoring(), bf16Bits: o.bf16Bits ?? bf16BitsRoute(), bounds: o.kvzipBounds ?? kvzipBounds(), room: o.kvzipRoom ?? kvzipRoom(), prefill: o.kvzipPrefill ?? kvzipPrefill(), passOrder: o.kvzipPassOrder ?? kvzipPassOrder(), quantBlock, gqa: o.gqa ?? gqaRoute() };
  const key = graphKey(model, o.dtype);
  const name = path.basename(model.dir).replace(/[^A-Za-z0-9._-]/g, '_');
  const dir = path.join(o.cacheDir ?? cacheRoot(), 'graphs', `${name}-${key}`);
  const paths = Object.fromEntries(kinds.map((k) => [k, path.join(dir, graphFileName(k, variants))])) as GraphFiles['paths'];
  const files = (): GraphFiles => ({ dir, dtype: o.dtype, paths, weightBytes: statSync(path.join(dir, WEIGHT_FILE)).size });
  if (!o.force && existsSync(path.join(dir, 'build.json')) && kinds.every((k) => existsSync(paths[k]!))) return files();
  // Processes started together (extract --gpus, Slurm array tasks, pods) share this cache: one
  // builds, the others wait for it and then find the graphs built.
  mkdirSync(path.dirname(dir), { recursive: true });
  const release = waitForLockSync(`${dir}.lock`, `building the graphs in ${dir}`, o.log);
  try {
    buildMissing(model, o, dir, key, kinds, variants);
  } finally {
    release();
  }
  return files();
}

/** Builds the kinds not in `dir` yet (all of them, afresh, when it holds no finished build). Call with the lock held. */
function buildMissing(model: OpenedModel, o: EnsureGraphsOptions, dir: string, key: string, kinds: GraphKind[], variants: GraphVariants): void {
  const stamp = path.join(dir, 'build.json');
  if (o.force || !existsSync(stamp)) rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const missing = kinds.filter((k) => !existsSync(path.join(dir, graphFileName(k, variants))));
  if (missing.length === 0) return;
  const t0 = Date.now();
  const variantNote = missing.map((k) => graphFileName(k, variants)).filter((f) => f.split('.').length > 2);
  o.log?.(`building ONNX graphs (${missing.join(', ')}, ${o.dtype}${variantNote.length ? `; variants: ${variantNote.join(', ')}` : ''}) for ${model.dir} -> ${dir}`);
  const files = writeModelGraphs(dir, model.spec, tensorSource(model.weights), o.dtype, missing, variants);
  writeFileAtomicSync(stamp, JSON.stringify({ key, builder: BUILDER_VERSION, dtype: o.dtype, model: model.dir, weightBytes: files.weightBytes }, null, 2));
  o.log?.(`built in ${((Date.now() - t0) / 1000).toFixed(1)} s (${(files.weightBytes / 2 ** 20).toFixed(1)} MiB of weights)`);
}
