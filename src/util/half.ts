// IEEE half (fp16) and bfloat16 conversions on raw 16-bit patterns.
// Node 20 has no Float16Array, so fp16/bf16 tensors travel as Uint16Array bits.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> bfloat16 bits, round to nearest even (NaN stays NaN). */
export function f32ToBf16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) | 0x40) & 0xffff; // quiet NaN
  const rounding = 0x7fff + ((bits >>> 16) & 1);
  return ((bits + rounding) >>> 16) & 0xffff;
}

/** float32 -> IEEE fp16 bits, round to nearest even, overflow to +-Inf. */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf / NaN
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow
  if (e <= 0) {
    if (e < -10) return sign; // underflow to zero
    mant |= 0x800000; // subnormal: add the implicit bit, then shift
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let m = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && (m & 1))) m += 1;
    return sign | m;
  }
  let m = mant >>> 13;
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (m & 1))) {
    m += 1;
    if (m === 0x400) {
      m = 0;
      e += 1;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | m;
}

const F16_TABLE = new Float32Array(65536);
for (let h = 0; h < 65536; h++) {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  let v: number;
  if (e === 0) v = m * 2 ** -24;
  else if (e === 0x1f) v = m ? NaN : Infinity;
  else v = (1 + m / 1024) * 2 ** (e - 15);
  F16_TABLE[h] = sign * v;
}

export function f16ArrayToF32(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  for (let i = 0; i < src.length; i++) dst[i] = F16_TABLE[src[i]!]!;
  return dst;
}

export function bf16ArrayToF32(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  const out = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i]! << 16;
  return dst;
}

export function f32ArrayToF16(src: Float32Array, dst = new Uint16Array(src.length)): Uint16Array {
  for (let i = 0; i < src.length; i++) dst[i] = f32ToF16Bits(src[i]!);
  return dst;
}

export function f32ArrayToBf16(src: Float32Array, dst = new Uint16Array(src.length)): Uint16Array {
  for (let i = 0; i < src.length; i++) dst[i] = f32ToBf16Bits(src[i]!);
  return dst;
}

let F16_TO_BF16: Uint16Array | undefined;
/** fp16 bits -> bf16 bits (exact for normal fp16 values; used to store bf16 features from fp16 graph outputs). */
export function f16ArrayToBf16(src: Uint16Array, dst = new Uint16Array(src.length)): Uint16Array {
  if (!F16_TO_BF16) {
    F16_TO_BF16 = new Uint16Array(65536);
    for (let h = 0; h < 65536; h++) F16_TO_BF16[h] = f32ToBf16Bits(F16_TABLE[h]!);
  }
  const t = F16_TO_BF16;
  for (let i = 0; i < src.length; i++) dst[i] = t[src[i]!]!;
  return dst;
}
