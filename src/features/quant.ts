// 8-bit forms of the stored attention inputs (issue 16): int8 or fp8 e4m3fn codes with one fp32
// scale per token and block of channels. Pure math; the shard writer stores the codes and scales,
// the trainer's graph multiplies them back (q · scale) in fp32.
//
// The quantiser is defined in fp32 arithmetic so that any implementation (this one, an ONNX
// graph with Div/Round/Cast) gives the same codes bit for bit:
//   amax  = max |x| over the block (x: the 16-bit stored value, exact in fp32)
//   scale = fp32(amax / QMAX)           QMAX = 127 (int8) or 448 (e4m3fn's largest finite value)
//   int8: q = clamp(roundHalfEven(fp32(x / scale)), -127, 127)
//   fp8:  q = e4m3fn(fp32(x / scale)), round to nearest, ties to the even code, saturating at ±448
//   a block of zeros has scale 0 and codes 0; dequantised value = fp32(decode(q) · scale).

export type QuantDtype = 'int8' | 'float8e4m3';

export const QMAX: Record<QuantDtype, number> = { int8: 127, float8e4m3: 448 };

export function isQuantDtype(d: string): d is QuantDtype {
  return d === 'int8' || d === 'float8e4m3';
}

const fround = Math.fround;

export function roundHalfEven(v: number): number {
  const r = Math.round(v); // rounds .5 up
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** e4m3fn code (0..255) -> value; 0x7f and 0xff are NaN (no infinities). */
export const FP8_E4M3_VALUES: Float32Array = (() => {
  const t = new Float32Array(256);
  for (let c = 0; c < 256; c++) {
    const sign = c & 0x80 ? -1 : 1;
    const e = (c >>> 3) & 0xf;
    const m = c & 7;
    if (e === 0xf && m === 7) t[c] = NaN;
    else if (e === 0) t[c] = sign * (m / 8) * 2 ** -6;
    else t[c] = sign * (1 + m / 8) * 2 ** (e - 7);
  }
  return t;
})();

/** Nearest e4m3fn code of a finite fp32 value (ties to the even code), saturating at ±448. */
export function fp8E4m3Code(v: number): number {
  const sign = v < 0 || Object.is(v, -0) ? 0x80 : 0;
  const a = Math.abs(v);
  if (a >= 448) return sign | 0x7e;
  // codes 0..126 hold the non-negative finite values in increasing order: binary search
  let lo = 0;
  let hi = 126;
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (FP8_E4M3_VALUES[mid]! <= a) lo = mid;
    else hi = mid;
  }
  const dl = a - FP8_E4M3_VALUES[lo]!;
  const dh = FP8_E4M3_VALUES[hi]! - a;
  const code = dl < dh ? lo : dh < dl ? hi : lo % 2 === 0 ? lo : hi;
  return sign | code;
}

export interface Quantized {
  /** [rows, D] codes: Int8Array (int8) or Uint8Array (e4m3fn bit patterns) */
  codes: Int8Array | Uint8Array;
  /** [rows, D / block] fp32 scales */
  scales: Float32Array;
}

/**
 * Quantises `rows` rows of D values; `row(r, out)` writes row r's fp32-exact values (e.g. decoded
 * bf16 bits) into `out` [D]. One scale per `block` consecutive channels of a row.
 */
export function quantizeRows(dtype: QuantDtype, rows: number, D: number, block: number, row: (r: number, out: Float32Array) => void): Quantized {
  checkBlock(D, block);
  const nb = D / block;
  const codes = dtype === 'int8' ? new Int8Array(rows * D) : new Uint8Array(rows * D);
  const scales = new Float32Array(rows * nb);
  const qmax = QMAX[dtype];
  const x = new Float32Array(D);
  for (let r = 0; r < rows; r++) {
    row(r, x);
    for (let b = 0; b < nb; b++) {
      const c0 = b * block;
      let amax = 0;
      for (let j = c0; j < c0 + block; j++) {
        const a = Math.abs(x[j]!);
        if (a > amax) amax = a;
        else if (!(a <= amax)) throw new Error(`attention input row ${r}, channel ${j} is ${x[j]}: cannot quantise a non-finite value`);
      }
      if (amax === Infinity) throw new Error(`attention input row ${r} holds an infinite value: cannot quantise it`);
      const scale = fround(amax / qmax);
      scales[r * nb + b] = scale;
      if (scale === 0) continue; // codes stay 0
      const base = r * D;
      if (dtype === 'int8') {
        for (let j = c0; j < c0 + block; j++) {
          // roundHalfEven(fp32(x / scale)), inlined (the hot loop of 8-bit extraction)
          const v = fround(x[j]! / scale);
          let q = Math.round(v);
          if (q - v === 0.5 && (q & 1) !== 0) q -= 1;
          codes[base + j] = q > 127 ? 127 : q < -127 ? -127 : q;
        }
      } else {
        for (let j = c0; j < c0 + block; j++) codes[base + j] = fp8E4m3Code(fround(x[j]! / scale));
      }
    }
  }
  return { codes, scales };
}

/** Rows of 16-bit stored values (bf16 or fp16 bits, [rows, D]) -> codes and scales. */
export function quantize16(dtype: QuantDtype, bits: Uint16Array, source: 'bfloat16' | 'float16', D: number, block: number): Quantized {
  const rows = bits.length / D;
  if (source === 'bfloat16') {
    let u: Uint32Array | null = null;
    return quantizeRows(dtype, rows, D, block, (r, out) => {
      u ??= new Uint32Array(out.buffer, out.byteOffset, D);
      for (let c = 0; c < D; c++) u[c] = bits[r * D + c]! << 16;
    });
  }
  return quantizeRows(dtype, rows, D, block, (r, out) => {
    for (let c = 0; c < D; c++) out[c] = F16_VALUES[bits[r * D + c]!]!;
  });
}

/** fp16 bit pattern -> value, for all 65,536 patterns. */
const F16_VALUES: Float32Array = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >>> 10) & 0x1f;
    const m = h & 0x3ff;
    t[h] = e === 0 ? s * m * 2 ** -24 : e === 0x1f ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return t;
})();

/** Codes and scales back to fp32 values [rows, D]: fp32(decode(q) · scale). */
export function dequantizeRows(dtype: QuantDtype, codes: Int8Array | Uint8Array, scales: Float32Array, D: number, block: number): Float32Array {
  checkBlock(D, block);
  const nb = D / block;
  const rows = codes.length / D;
  const out = new Float32Array(codes.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < D; c++) {
      const q = dtype === 'int8' ? codes[r * D + c]! : FP8_E4M3_VALUES[codes[r * D + c]!]!;
      out[r * D + c] = fround(q * scales[r * nb + Math.floor(c / block)]!);
    }
  }
  return out;
}

export function checkBlock(D: number, block: number): void {
  if (!Number.isInteger(block) || block <= 0 || D % block !== 0) throw new Error(`quantisation block ${block} must divide the hidden size ${D}`);
}
