// Feature store: what `fastkvzip extract` writes and `fastkvzip train` reads (see types.ts for the layout).
export * from './types.js';
export { canonicalJson, identityHash, identityDiff, readManifest, readManifestIfAny, shardRelPath } from './manifest.js';
export { openShardWriter, type ShardWriter, type ShardWriterOptions } from './shard-writer.js';
export { openStore, acquireLock, type FeatureStore, type OpenStoreOptions, type ShardMeta, type StoreInit } from './store.js';
export { readLayer, type LayerChunk, type ReadLayerOptions } from './reader.js';
export { layerBlocks, type ByteRange, type LayerBlock } from './blocks.js';
export { keptPositions } from './keep.js';
export { verifyStore, sha256File, type VerifyOptions, type VerifyReport } from './verify.js';
export { mergeStores, type MergeOptions } from './merge.js';
export {
  storeSummary,
  estimateStoreBytes,
  checkDiskSpace,
  fmtBytes,
  type StoreSummary,
  type StoreSizeInput,
  type DiskCheck,
  type DiskCheckOptions,
} from './summary.js';
