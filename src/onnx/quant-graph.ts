// The int8 form of the stored attention inputs (issue 16), made inside the extraction graph: the
// codes and fp32 scales of src/features/quant.ts, per prefill chunk on the device, so the prefill
// Loop holds (and the host receives) int8 codes instead of 16-bit rows, and the shard writers only
// frame and write bytes. The same fp32 operations as the host quantiser, so the same bits:
//   v = the 16-bit stored value (Cast to the store's 16-bit dtype, round to nearest even, then fp32)
//   amax = ReduceMax |v| over the block; scale = amax / 127 (one IEEE fp32 Div, as fround(amax / 127))
//   q = Clip(Round(v / scale), -127, 127): ONNX Round is round-half-to-even, like roundHalfEven
//   a block of zeros: scale 0, divided by 1 instead, so its codes are 0 as on the host.
import type { DType, Graph } from './builder.js';

/** int8's largest code, QMAX.int8 of src/features/quant.ts (a test checks they agree). */
export const INT8_QMAX = 127;

export interface GraphQuant {
  /** channels per scale (divides D) */
  block: number;
  /** the store's 16-bit dtype the codes are made from */
  source: 'bfloat16' | 'float16';
}

/** x [rows, D] in the compute dtype -> int8 codes [rows, D] and fp32 scales [rows, D / block]. */
export function quantizeInt8(g: Graph, x: string, computeDtype: DType, q: GraphQuant, D: number): { codes: string; scales: string } {
  return g.within('quant_int8', () => {
    const f32 = (v: number) => g.constant(v, 'float32');
    const nb = D / q.block;
    const v = computeDtype === q.source ? g.cast(x, 'float32') : g.cast(g.cast(x, q.source), 'float32');
    const blocks = g.reshape(v, [-1, nb, q.block]);
    const scale = g.div(g.reduce('ReduceMax', g.op('Abs', [blocks]), [2], true), f32(INT8_QMAX)); // [rows, nb, 1]
    const divisor = g.op('Where', [g.op('Equal', [scale, f32(0)]), f32(1), scale]);
    const rounded = g.op('Round', [g.div(blocks, divisor)]);
    const codes = g.cast(g.op('Clip', [rounded, f32(-INT8_QMAX), f32(INT8_QMAX)]), 'int8');
    // ReduceMax skips NaN on ONNX Runtime: a NaN input would pass as a code. The sum of the rounded
    // quotients (at most 127·block, no overflow) times 0 is ±0, or NaN when the block holds a NaN
    // (an infinity already made the scale infinite), so the scale carries it and the shard writer
    // refuses the context as the host quantiser does. scale ± 0 is the scale, bit for bit.
    const poison = g.mul(g.reduce('ReduceSum', rounded, [2], true), f32(0));
    return { codes: g.reshape(codes, [-1, D]), scales: g.reshape(g.add(scale, poison), [-1, nb]) };
  });
}

/** e4m3fn's largest finite value, QMAX.float8e4m3 of src/features/quant.ts. */
export const FP8_QMAX = 448;

/**
 * x [rows, D] in the compute dtype -> e4m3fn codes [rows, D] (uint8 bit patterns) and fp32 scales
 * [rows, D / block], as fp8E4m3Code(fround(v / scale)) with scale = fround(amax / 448). No ONNX
 * float8 Cast (onnxruntime-node has no fp8 tensors, and its rounding is not specified here): the
 * code follows from exact fp32 arithmetic on y = v / scale, |y| <= 448:
 *   e = max(⌊log2|y|⌋, -6) (corrected by comparing with 2^e from a table, as in bf16-bits.ts),
 *   m = Round(|y| / 2^(e-3)) (an exact power-of-two division; Round ties to even, and the parity of
 *   m is that of the code, so ties go to the even code), code = (e + 6)·8 + m: normal values carry
 *   the implicit 8 in m, subnormals (e = -6) are m·2^-9; m = 16 rolls into the next binade by itself.
 *   Saturated at 126 (±448); the sign bit for y < 0 and for -0 (as the host's Object.is(v, -0)).
 */
export function quantizeFp8(g: Graph, x: string, computeDtype: DType, q: GraphQuant, D: number): { codes: string; scales: string } {
  return g.within('quant_fp8', () => {
    const f32 = (v: number) => g.constant(v, 'float32');
    const nb = D / q.block;
    const v = computeDtype === q.source ? g.cast(x, 'float32') : g.cast(g.cast(x, q.source), 'float32');
    const blocks = g.reshape(v, [-1, nb, q.block]);
    const scale = g.div(g.reduce('ReduceMax', g.op('Abs', [blocks]), [2], true), f32(FP8_QMAX));
    const divisor = g.op('Where', [g.op('Equal', [scale, f32(0)]), f32(1), scale]);
    const y = g.div(blocks, divisor);
    const a = g.op('Abs', [y]);
    const minNormal = 2 ** -6;
    // NaN (from a NaN or infinite input) would index the table out of bounds: take 2^-6 there; m stays NaN
    const safe = g.op('Where', [g.op('IsNaN', [a]), f32(minNormal), g.op('Max', [a, f32(minNormal)])]);
    // table[i] = 2^(i - 6) for exponents e = i - 6, i = 0..15 (e = -6..9)
    const table = g.constant(Array.from({ length: 16 }, (_, i) => 2 ** (i - 6)), 'float32', [16], 'pow2_fp8');
    const lookup = (i: string) => g.gather(table, g.cast(i, 'int64'), 0);
    const guess = g.op('Clip', [g.add(g.op('Floor', [g.mul(g.op('Log', [safe]), f32(1 / Math.LN2))]), f32(6)), f32(0), f32(15)]);
    const down = g.cast(g.op('Less', [safe, lookup(guess)]), 'float32');
    const i1 = g.sub(guess, down);
    const up = g.cast(g.op('GreaterOrEqual', [safe, g.mul(lookup(i1), f32(2))]), 'float32');
    const idx = g.op('Min', [g.add(i1, up), f32(15)]); // e + 6
    const quantum = g.mul(lookup(idx), f32(1 / 8)); // 2^(e - 3)
    const m = g.op('Round', [g.div(a, quantum)]);
    const magnitude = g.op('Min', [g.add(g.mul(idx, f32(8)), m), f32(126)]);
    // -0 has 1 / y = -inf; NaN (ReduceMax skips it) compares false everywhere and is caught by the scale below
    const negative = g.op('Or', [g.op('Less', [y, f32(0)]), g.op('Less', [g.div(f32(1), y), f32(0)])]);
    const codes = g.cast(g.add(magnitude, g.mul(g.cast(negative, 'float32'), f32(128))), 'uint8');
    // a NaN input reaches the scale, as in quantizeInt8 (Max and Min drop NaN; m does not, and sums to at most 16·block)
    const poison = g.mul(g.reduce('ReduceSum', m, [2], true), f32(0));
    return { codes: g.reshape(codes, [-1, D]), scales: g.reshape(g.add(scale, poison), [-1, nb]) };
  });
}
