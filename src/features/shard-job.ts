// One context's shard, written from raw graph outputs: the conversion to the store's 16-bit
// dtype, the Arrow writing and the checksum. Runs in a worker thread during extraction (so it
// overlaps the next context's ONNX Runtime run, which blocks the main thread) or in-process.
import { openShardWriter, type ShardWriterOptions } from './shard-writer.js';
import type { ShardInfo } from './types.js';
import { f16ArrayToBf16, f32ArrayToBf16, f32ArrayToF16 } from '../util/half.js';

export interface ShardJob {
  storeDir: string;
  contextId: string;
  options: ShardWriterOptions;
  /** per scored layer: [T, D] as the graph returned it: fp16 bits (Uint16Array) or fp32 */
  hidden: (Uint16Array | Float32Array)[];
  /** per scored layer: [H, T] head-major */
  scores: Float32Array[];
}

/** Graph output (fp16 bits or fp32) -> the store's 16-bit dtype. */
export function toStoreBits(h: Uint16Array | Float32Array, dtype: ShardWriterOptions['hiddenDtype']): Uint16Array {
  if (h instanceof Float32Array) return dtype === 'bfloat16' ? f32ArrayToBf16(h) : f32ArrayToF16(h);
  return dtype === 'bfloat16' ? f16ArrayToBf16(h) : h;
}

export async function runShardJob(job: ShardJob): Promise<ShardInfo> {
  const writer = await openShardWriter(job.storeDir, job.contextId, job.options);
  try {
    for (let s = 0; s < job.hidden.length; s++) await writer.writeLayer(s, toStoreBits(job.hidden[s]!, job.options.hiddenDtype), job.scores[s]!);
    return await writer.close();
  } catch (e) {
    await writer.abort();
    throw e;
  }
}
