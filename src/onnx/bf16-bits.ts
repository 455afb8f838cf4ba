// bfloat16 bit patterns as uint16, computed inside the graph. ONNX Runtime cannot return bf16
// tensors and ONNX has no bit-cast, so without this the host would convert every stored
// attention input (hundreds of millions of values per context) in JavaScript. For a value v that
// is exactly representable in bf16 the bits follow from exact float arithmetic:
//   e = ⌊log2|v|⌋ (corrected by comparing with 2^e from a table), m = |v|/2^e − 1 (7 bits),
//   bits = sign·2^15 + (e + 127)·2^7 + m·2^7      — all exact integers below 2^24 in fp32.
// Zeros and bf16 subnormals (|v| < 2^-126) give 0 (the sign of zero is dropped); they do not
// occur in normalised attention inputs. Inf/NaN are not expected either.
import type { Graph } from './builder.js';

/** `x` (any float dtype): round to bf16, return its bit patterns as uint16, same shape. */
export function bf16Bits(g: Graph, x: string): string {
  return g.within('bf16_bits', () => {
    const f32 = (v: number) => g.constant(v, 'float32');
    const v = g.cast(g.cast(x, 'bfloat16'), 'float32'); // round to nearest even, as torch does
    const a = g.op('Abs', [v]);
    const normal = g.op('GreaterOrEqual', [a, f32(2 ** -126)]);
    const safe = g.op('Max', [a, f32(2 ** -126)]);
    // table[i] = 2^(i - 127) for biased exponents i = 0..255 (i = 0 unused)
    const table = g.constant(Array.from({ length: 256 }, (_, i) => (i === 0 ? 0 : 2 ** (i - 127))), 'float32', [256], 'pow2');
    const guess = g.op('Floor', [g.mul(g.op('Log', [safe]), f32(1 / Math.LN2))]);
    const biased0 = g.op('Clip', [g.add(guess, f32(127)), f32(1), f32(254)]);
    const lookup = (b: string) => g.gather(table, g.cast(b, 'int64'), 0);
    // log may land one off at exact powers of two: step down if 2^e > |v|, up if 2^(e+1) <= |v|
    const down = g.cast(g.op('Less', [safe, lookup(biased0)]), 'float32');
    const biased1 = g.sub(biased0, down);
    const up = g.cast(g.op('GreaterOrEqual', [safe, g.mul(lookup(biased1), f32(2))]), 'float32');
    const biased = g.add(biased1, up);
    const mantissa = g.mul(g.sub(g.div(safe, lookup(biased)), f32(1)), f32(128));
    const sign = g.mul(g.cast(g.op('Less', [v, f32(0)]), 'float32'), f32(32768));
    const bits = g.add(g.add(sign, g.mul(biased, f32(128))), mantissa);
    const zeroed = g.op('Where', [normal, bits, f32(0)]);
    return g.cast(g.cast(zeroed, 'int32'), 'uint16');
  });
}
