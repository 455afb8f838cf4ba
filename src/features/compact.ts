// The compact store forms of issue 16, applied to one context's layer: keep the chosen token
// positions, then quantise the 16-bit attention inputs to 8-bit codes with per-block scales.
// Used by the extraction's shard writers and by `compactStore` (a compact copy of a 16-bit
// store), so both give the same bytes.
import { quantize16, type QuantDtype } from './quant.js';
import { keptPositions } from './keep.js';
import type { CompactColumns, StoredHidden } from './shard-writer.js';

export interface CompactSpec {
  /** 8-bit form, made from the 16-bit values `source` */
  quant?: { dtype: QuantDtype; block: number; source: 'bfloat16' | 'float16' };
  /** subsampling: fraction and seed, and where the context starts in the stream of all contexts */
  keep?: { fraction: number; seed: number; offset: number };
}

/** The rows a context keeps (null: all of them). */
export function contextRows(spec: CompactSpec, contextId: string, tokens: number): Int32Array | null {
  return spec.keep ? keptPositions(tokens, spec.keep.offset, spec.keep.fraction, spec.keep.seed, contextId) : null;
}

/**
 * One layer in the compact form: `bits` [T, D] 16-bit values, `scores` [H, T] head-major.
 * Returns the stored hidden values, the head-major scores of the kept rows and the extra columns.
 */
export function compactLayer(spec: CompactSpec, rows: Int32Array | null, bits: Uint16Array, scores: Float32Array, D: number, H: number): { hidden: StoredHidden; scores: Float32Array; extra: CompactColumns } {
  let h = bits;
  if (rows) {
    h = new Uint16Array(rows.length * D);
    for (let i = 0; i < rows.length; i++) h.set(bits.subarray(rows[i]! * D, (rows[i]! + 1) * D), i * D);
  }
  const s = keptScores(rows, scores, H);
  const extra: CompactColumns = rows ? { positions: rows } : {};
  if (!spec.quant) return { hidden: h, scores: s, extra };
  const q = quantize16(spec.quant.dtype, h, spec.quant.source, D, spec.quant.block);
  return { hidden: q.codes, scores: s, extra: { ...extra, scales: q.scales } };
}

/** The head-major scores [H, T] of the kept rows [H, rows] (all of them when rows is null). */
export function keptScores(rows: Int32Array | null, scores: Float32Array, H: number): Float32Array {
  if (!rows) return scores;
  const T = scores.length / H;
  const s = new Float32Array(H * rows.length);
  for (let k = 0; k < H; k++) for (let i = 0; i < rows.length; i++) s[k * rows.length + i] = scores[k * T + rows[i]!]!;
  return s;
}

/**
 * One layer whose 8-bit codes and scales the KVzip graph already made from the kept rows
 * (src/onnx/quant-graph.ts): only the scores are subsampled here.
 */
export function precompactedLayer(rows: Int32Array | null, codes: Int8Array | Uint8Array, scales: Float32Array, scores: Float32Array, D: number, H: number): { hidden: StoredHidden; scores: Float32Array; extra: CompactColumns } {
  const T = scores.length / H;
  const want = rows ? rows.length : T;
  if (codes.length !== want * D) throw new Error(`graph-quantised attention input has ${codes.length / D} rows, expected ${want}`);
  // the host quantiser refuses non-finite values; the graph passes them on as non-finite scales
  for (let i = 0; i < scales.length; i++) if (!Number.isFinite(scales[i])) throw new Error(`attention input row ${Math.floor(i / (scales.length / want))} holds a non-finite value (scale ${scales[i]}): cannot quantise it`);
  return { hidden: codes, scores: keptScores(rows, scores, H), extra: { ...(rows ? { positions: rows } : {}), scales } };
}
