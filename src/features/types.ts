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
//   score   FixedSizeList<Float32>[H]  KVzip score of each KV head for that token

export type HiddenDtype = 'float16' | 'bfloat16';

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
  hiddenDtype: HiddenDtype;
  /** dtype of the softmax behind the scores (docs/method.md §1: we use float32) */
  scoreDtype: 'float32';
  [key: string]: JsonValue;
}

/** The fields that must match for two runs to share a store. */
export interface StoreIdentity {
  model: ModelInfo;
  recipe: RecipeInfo;
  extract: ExtractInfo;
  hiddenDtype: HiddenDtype;
}

/** `--shard i/n`: this store holds part `index` (0-based) of `count`. */
export interface PartInfo {
  index: number;
  count: number;
}

export interface ShardEntry {
  contextId: string;
  /** position of the context in the recipe's canonical order */
  index: number;
  /** recipe set name, e.g. "10k" or "10k-cat" */
  set: string;
  docIds: string[];
  tokens: number;
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
export interface ShardInfo {
  /** relative to the store directory */
  file: string;
  contextId: string;
  tokens: number;
  bytes: number;
  sha256: string;
}
