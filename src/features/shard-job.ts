// One context's shard, written from raw graph outputs: the conversion to the store's 16-bit
// dtype, the Arrow writing and the checksum, then (with `record`) its entry in manifest.json.
// Runs in a worker thread during extraction (so it overlaps the next context's ONNX Runtime run,
// which blocks the main thread) or in-process.
import { openShardWriter, type ShardWriterOptions } from './shard-writer.js';
import type { AttnInputDtype, ShardInfo, ShardMeta } from './types.js';
import { recordShard } from './manifest.js';
import { f16ArrayToBf16, f32ArrayToBf16, f32ArrayToF16 } from '../util/half.js';
import { compactLayer, contextRows, precompactedLayer, type CompactSpec } from './compact.js';

export interface ShardJob {
  storeDir: string;
  contextId: string;
  options: ShardWriterOptions;
  /** per scored layer: [T, D] as the graph returned it; int8: the codes of the kept rows [rows, D] */
  attnInput: (Uint16Array | Float32Array | Int8Array | Uint8Array)[];
  /** what the attnInput arrays hold: fp16 or bf16 bit patterns (or fp32), or 8-bit codes made by the graph (with attnScales) */
  attnInputDtype: AttnInputDtype;
  /** 8-bit codes made by the graph: per scored layer the fp32 scales [rows, D / block] */
  attnScales?: Float32Array[];
  /** per scored layer: [H, T] head-major */
  scores: Float32Array[];
  /** worker: send the attnInput buffers back once written (they are recycled by the sender) */
  returnAttnInput?: boolean;
  /** compact forms (issue 16): options.hiddenDtype is then the 8-bit dtype, or the 16-bit one when only subsampled */
  compact?: CompactSpec;
  /**
   * Record the shard in storeDir's manifest as soon as it is on disk, under the store's
   * manifest lock (FeatureStore.manifestLock), not when the busy main thread gets to it.
   */
  record?: { meta: ShardMeta; lock: SharedArrayBuffer };
}

/** Graph output (fp32, or fp16/bf16 bits) -> the store's 16-bit dtype; a no-op when they agree. */
export function toStoreBits(h: Uint16Array | Float32Array, bits: 'float16' | 'bfloat16', dtype: 'float16' | 'bfloat16'): Uint16Array {
  if (h instanceof Float32Array) return dtype === 'bfloat16' ? f32ArrayToBf16(h) : f32ArrayToF16(h);
  if (bits === dtype) return h;
  if (bits === 'float16' && dtype === 'bfloat16') return f16ArrayToBf16(h);
  throw new Error(`cannot store ${bits} attention inputs as ${dtype}`);
}

export async function runShardJob(job: ShardJob): Promise<ShardInfo> {
  const spec = job.compact ?? {};
  const D = job.options.D;
  const tokens = job.scores[0]!.length / job.options.H; // the context's length (attnInput may hold the kept rows only)
  const rows = contextRows(spec, job.contextId, tokens);
  const writer = await openShardWriter(job.storeDir, job.contextId, { ...job.options, contextTokens: tokens });
  // the 16-bit form the store holds, or the 8-bit codes are made from
  const base = spec.quant?.source ?? (job.options.hiddenDtype as 'float16' | 'bfloat16');
  let info: ShardInfo;
  try {
    for (let s = 0; s < job.attnInput.length; s++) {
      if (job.attnInputDtype === 'int8' || job.attnInputDtype === 'float8e4m3') {
        if (job.options.hiddenDtype !== job.attnInputDtype || !job.attnScales) throw new Error(`shard ${job.contextId}: ${job.attnInputDtype} codes from the graph need a ${job.attnInputDtype} store and their scales`);
        const c = precompactedLayer(rows, job.attnInput[s] as Int8Array | Uint8Array, job.attnScales[s]!, job.scores[s]!, D, job.options.H);
        await writer.writeLayer(job.options.layers[s]!, c.hidden, c.scores, c.extra);
        continue;
      }
      const bits = toStoreBits(job.attnInput[s] as Uint16Array | Float32Array, job.attnInputDtype as 'float16' | 'bfloat16', base);
      if (!job.compact) {
        await writer.writeLayer(job.options.layers[s]!, bits, job.scores[s]!);
        continue;
      }
      const c = compactLayer(spec, rows, bits, job.scores[s]!, D, job.options.H);
      await writer.writeLayer(job.options.layers[s]!, c.hidden, c.scores, c.extra);
    }
    info = await writer.close();
  } catch (e) {
    await writer.abort();
    throw e;
  }
  if (job.record) await recordShard(job.storeDir, info, job.record.meta, job.record.lock);
  return info;
}
