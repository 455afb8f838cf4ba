// Scale-out: scheduler parts (--shard auto), worker processes per GPU or CPU share of one host
// (extract/train --gpus, --workers), and the join of their outputs.
export { resolveAutoShard, SHARD_COUNT_ENV, type AutoShard, type ShardSource, type ShardScheduler } from './shard-env.js';
export { countGpus, parseGpus, workerSlots, describeSlot, type WorkerSlot, type GpuCount } from './gpus.js';
export { runWorkers, FASTKVZIP_BIN, type WorkerJob, type WorkerResult } from './workers.js';
export { extractWithWorkers, partDirs, threadsPerWorker, plannedTokens, type ExtractWorkersOptions, type ExtractWorkersSummary } from './extract-workers.js';
export { trainWithWorkers, joinSlices, type TrainWorkersOptions, type TrainWorkersSummary } from './train-workers.js';
