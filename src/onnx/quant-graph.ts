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
