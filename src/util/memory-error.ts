// ONNX Runtime's out-of-memory failures (its BFC arena, CUDA, cuBLAS/cuDNN) are the machine's
// limit, not our bug: one line saying so, what the run asked for, and what lowers the need; exit 1.
// Seen on the H100 (session 7): the Qwen3-8B KVzip graph at 100k tokens with 16-bit attention
// inputs stopped in the prefill Loop asking for 195 MiB at 79,673 of 81,559 MiB used.
import { UserError } from './errors.js';

const OOM_PATTERNS: RegExp[] = [
  /Failed to allocate memory for requested buffer of size (\d+)/,
  /CUDA failure 2: out of memory/,
  /cudaErrorMemoryAllocation/,
  /CUBLAS_STATUS_ALLOC_FAILED/,
  /CUDNN_STATUS_ALLOC_FAILED/,
  /\bbad_alloc\b/,
];

export const MEMORY_ADVICE =
  'lower the memory a run needs: shorter contexts or a smaller --prefill-chunk / --score-chunk (extract), ' +
  'a compact store made in the graph (--hidden-dtype int8 --keep-fraction 0.45), fewer workers per GPU, or a device with more memory ' +
  '(README "Disk and memory" has measured peaks)';

/** A UserError for ONNX Runtime running out of (device or host) memory, or null when `e` is something else. */
export function memoryError(e: unknown): UserError | null {
  if (!(e instanceof Error)) return null;
  const hit = OOM_PATTERNS.map((p) => p.exec(e.message)).find((m) => m !== null);
  if (!hit) return null;
  const node = /running (\w+) node\. Name:'([^']*)'/.exec(e.message);
  const bytes = hit[1] ? Number(hit[1]) : null;
  const asked = bytes !== null ? ` (a request for ${(bytes / 2 ** 20).toFixed(1)} MiB failed)` : '';
  const where = node ? ` in its ${node[1]} node ${node[2]}` : '';
  return new UserError(`ONNX Runtime ran out of memory${where}${asked}; ${MEMORY_ADVICE}`, 1);
}
