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
  const T = bits.length / D;
  let h = bits;
  let s = scores;
  if (rows) {
    h = new Uint16Array(rows.length * D);
    for (let i = 0; i < rows.length; i++) h.set(bits.subarray(rows[i]! * D, (rows[i]! + 1) * D), i * D);
    s = new Float32Array(H * rows.length);
    for (let k = 0; k < H; k++) for (let i = 0; i < rows.length; i++) s[k * rows.length + i] = scores[k * T + rows[i]!]!;
  }
  const extra: CompactColumns = rows ? { positions: rows } : {};
  if (!spec.quant) return { hidden: h, scores: s, extra };
  const q = quantize16(spec.quant.dtype, h, spec.quant.source, D, spec.quant.block);
  return { hidden: q.codes, scores: s, extra: { ...extra, scales: q.scales } };
}
