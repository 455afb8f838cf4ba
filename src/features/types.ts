// Types of the on-disk feature store written by `fastkvzip extract` and read by `fastkvzip train`.
//
// Layout of a store directory:
//   manifest.json            FeatureManifest (rewritten atomically after every shard)
//   shards/<contextId>.arrow Arrow IPC *file*: one record batch per scored layer, rows = context tokens
//   .lock                    present while an extractor writes into the store
//
// Columns of every record batch:
//   hidden  FixedSizeList<Float16>[D]  (hiddenDtype float16)
//           FixedSizeList<Uint16>[D]   holding bfloat16 bits (hiddenDtype bfloat16; field metadata dtype=bfloat16)
//           FixedSizeList<Int8>[D]     int8 codes (hiddenDtype int8)
//           FixedSizeList<Uint8>[D]    fp8 e4m3fn bit patterns (hiddenDtype float8e4m3)
//   score   FixedSizeList<Float32>[H]  KVzip score of each KV head for that token
// and, in the compact forms of issue 16 (see src/features/quant.ts, src/features/keep.ts):
//   scale     FixedSizeList<Float32>[D/B]  8-bit forms: one scale per block of B channels;
//                                          value = decode(code) * scale[channel / B]
//   position  Int32                        stores with a kept fraction < 1: the row's token
//                                          position in its context (rows ascending)

export type AttnInputDtype = Extract<Dtype, 'float16' | 'bfloat16' | 'int8' | 'float8e4m3'>;
export const ATTN_INPUT_DTYPES: readonly AttnInputDtype[] = ['float16', 'bfloat16', 'int8', 'float8e4m3'];

import type { Dtype } from '../util/dtype.js';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export const MANIFEST_FORMAT = 'fastkvzip-features';
export const MANIFEST_VERSION = 1;
export const MANIFEST_NAME = 'manifest.json';
export const SHARDS_DIR = 'shards';
export const LOCK_NAME = '.lock';

/** Keys of the Arrow schema / record-batch / field metadata every shard carries. */
export const META = {
  format: 'fastkvzip.format',
  version: 'fastkvzip.version',
  contextId: 'fastkvzip.context_id',
  modelId: 'fastkvzip.model_id',
  layers: 'fastkvzip.layers', // JSON array: record batch i holds layers[i]
  hiddenSize: 'fastkvzip.D',
  kvHeads: 'fastkvzip.H',
  hiddenDtype: 'fastkvzip.hidden_dtype',
  scoreDtype: 'fastkvzip.score_dtype',
  quantBlock: 'fastkvzip.quant_block', // 8-bit forms: channels per scale
  keepFraction: 'fastkvzip.keep_fraction', // subsampled stores
  keepSeed: 'fastkvzip.keep_seed',
  batchLayer: 'fastkvzip.layer', // record-batch metadata: the layer of this batch
  batchPad: 'fastkvzip.pad', // record-batch metadata: filler that page-aligns the batch body
  fieldDtype: 'dtype', // field metadata of `hidden` and `score`
} as const;

export interface ModelInfo {
  /** hub id or local path as given by the user */
  id: string;
  /** revision asked for (branch, tag or sha); not part of the identity, `commit` is */
  revision: string | null;
  /** resolved commit sha (null for a local folder) */
  commit: string | null;
  /** sha256 of the model's config.json */
  configHash: string;
  family: string;
  /** hidden size */
  D: number;
  /** KV heads */
  H: number;
  /** query heads per KV head */
  G: number;
  /** layers that are scored and stored, in record-batch order */
  scoredLayers: number[];
  numLayers: number;
}

/** Everything that decides which tokens are extracted: corpus, windows, counts, prompts. */
export type RecipeInfo = { [key: string]: JsonValue };

export interface ExtractInfo {
  prefillChunk: number;
  scoreChunk: number;
  device: string;
  /** dtype the model ran in */
  modelDtype: string;
  hiddenDtype: AttnInputDtype;
  /** dtype of the softmax behind the scores (docs/method.md §1: we use float32) */
  scoreDtype: 'float32';
  /** 8-bit forms only: channels per scale, and the 16-bit dtype the codes were made from */
  quantBlock?: number;
  quantSource?: 'float16' | 'bfloat16';
  /** subsampled stores only (kept fraction < 1): the fraction of non-held-out positions kept, and its seed */
  keepFraction?: number;
  keepSeed?: number;
  [key: string]: JsonValue | undefined;
}

/** The fields that must match for two runs to share a store. */
export interface StoreIdentity {
  model: ModelInfo;
  recipe: RecipeInfo;
  extract: ExtractInfo;
  hiddenDtype: AttnInputDtype;
}

/** `--shard i/n`: this store holds part `index` (0-based) of `count`. */
export interface PartInfo {
  index: number;
  count: number;
  /** where index and count came from (the latest run into this store): the flag, or the scheduler's environment under `--shard auto` */
  source?: PartSource;
  /**
   * how the contexts were split over the parts: 'balanced' by counted tokens (src/data/balance-parts.ts);
   * absent in parts written before it, which took the contexts with index % count === index
   */
  split?: PartSplit;
}

export type PartSplit = 'balanced';

/** The split of a part ('index-modulo': a part written before the balanced split). */
export function partSplitOf(part: PartInfo): PartSplit | 'index-modulo' {
  return part.split ?? 'index-modulo';
}

/** e.g. { scheduler: 'slurm-array', vars: { SLURM_ARRAY_TASK_ID: '3', SLURM_ARRAY_TASK_COUNT: '8' } } */
export interface PartSource {
  scheduler: string;
  vars: Record<string, string>;
}

export interface ShardEntry {
  contextId: string;
  /** position of the context in the recipe's canonical order */
  index: number;
  /** recipe set name, e.g. "10k" or "10k-cat" */
  set: string;
  docIds: string[];
  /** rows stored: the context's tokens, or the kept ones in a subsampled store */
  tokens: number;
  /** subsampled stores only: the context's length (the rows' positions are below it) */
  contextTokens?: number;
  /** path relative to the store directory, always "shards/<contextId>.arrow" */
  file: string;
  bytes: number;
  sha256: string;
}

export interface FeatureManifest extends StoreIdentity {
  format: typeof MANIFEST_FORMAT;
  version: typeof MANIFEST_VERSION;
  tool: { name: string; version: string };
  /** sha256 of the canonical JSON of the identity fields (see identityOf) */
  identityHash: string;
  part: PartInfo | null;
  /** contexts this store is meant to hold when complete (null: unknown) */
  plannedContexts: number | null;
  /** sorted by `index` */
  shards: ShardEntry[];
  totals: { contexts: number; tokens: number; bytes: number };
  createdAt: string;
  updatedAt: string;
  complete: boolean;
}

/** What a finished shard writer reports. */
/** What the recipe says about a context, recorded beside its shard. */
export interface ShardMeta {
  /** position in the recipe's canonical context order */
  index: number;
  set: string;
  docIds: string[];
}

export interface ShardInfo {
  /** relative to the store directory */
  file: string;
  contextId: string;
  tokens: number;
  /** subsampled stores only */
  contextTokens?: number;
  bytes: number;
  sha256: string;
}

/** What a store holds, beyond model and recipe: the hidden form and the kept fraction. */
export interface StoreForm {
  hiddenDtype: AttnInputDtype;
  /** channels per scale (8-bit forms), else null */
  quantBlock: number | null;
  /** kept fraction and seed (subsampled stores), else null */
  keep: { fraction: number; seed: number } | null;
}

export function storeFormOf(id: { hiddenDtype: AttnInputDtype; extract: ExtractInfo }): StoreForm {
  const quant = id.hiddenDtype === 'int8' || id.hiddenDtype === 'float8e4m3';
  return {
    hiddenDtype: id.hiddenDtype,
    quantBlock: quant ? (id.extract.quantBlock ?? null) : null,
    keep: id.extract.keepFraction !== undefined && id.extract.keepFraction < 1 ? { fraction: id.extract.keepFraction, seed: id.extract.keepSeed ?? 0 } : null,
  };
}

export function describeForm(f: StoreForm): string {
  const dtype = f.quantBlock ? `${f.hiddenDtype} (scale per ${f.quantBlock} channels)` : f.hiddenDtype;
  return f.keep ? `${dtype}, keep ${f.keep.fraction} (seed ${f.keep.seed})` : dtype;
}
