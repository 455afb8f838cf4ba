// The in-graph int8 quantiser (issue 16) gives the host quantiser's codes and scales bit for bit:
// ties to even, zero blocks, blocks of channels, bf16 and fp16 sources from fp32 compute; the
// kept-row feeds put every kept position where the graph's flat scan has it.
import { describe, it, expect } from 'vitest';
import * as ort from 'onnxruntime-node';
import { Graph, encodeModel, type DType } from '../../src/onnx/builder.js';
import { quantizeInt8, quantizeFp8, INT8_QMAX, FP8_QMAX } from '../../src/onnx/quant-graph.js';
import { viaPinnedHost } from '../../src/onnx/kvzip-graph.js';
import { QMAX, quantize16 } from '../../src/features/quant.js';
import { f32ArrayToBf16, f32ArrayToF16 } from '../../src/util/half.js';
import { Rng } from '../../src/util/random.js';
import { keepFeeds } from '../../src/kvzip/inputs.js';
import { keptPositions } from '../../src/features/keep.js';

async function graphQuant(x: Float32Array, D: number, block: number, source: 'bfloat16' | 'float16', compute: DType = 'float32', fp8 = false) {
  const g = new Graph('q');
  const input = g.input('x', 'float32', ['rows', D]);
  const q = (fp8 ? quantizeFp8 : quantizeInt8)(g, compute === 'float32' ? input : g.cast(input, compute), compute, { block, source }, D);
  g.output(q.codes, 'codes', fp8 ? 'uint8' : 'int8', ['rows', D]);
  g.output(q.scales, 'scales', 'float32', ['rows', D / block]);
  const s = await ort.InferenceSession.create(encodeModel(g));
  const out = await s.run({ x: new ort.Tensor('float32', x, [x.length / D, D]) });
  return { codes: out.codes!.data as Int8Array | Uint8Array, scales: out.scales!.data as Float32Array };
}

function rows(D: number): Float32Array {
  const rng = new Rng(7);
  const out: number[] = [];
  // ties: amax 127 makes the scale 1, so k + 0.5 divides to an exact tie (bf16 and fp16 hold them)
  out.push(127, 0.5, 1.5, 2.5, -2.5, -0.5, 126.5, -126.5, ...Array.from({ length: D - 8 }, (_, j) => (j % 9) - 4.5));
  out.push(...new Array(D).fill(0)); // a zero row: scale 0, codes 0
  out.push(...Array.from({ length: D }, (_, j) => (j < D / 2 ? 0 : (j - D / 2 + 1) * 0.37))); // a zero block at block < D / 2
  out.push(...Array.from({ length: D }, (_, j) => (j === 3 ? -3e4 : rng.uniform(-1, 1)))); // one large value
  for (let r = 0; r < 200; r++) {
    const mag = 10 ** rng.uniform(-6, 3);
    out.push(...Array.from({ length: D }, () => (rng.next() + rng.next() - 1) * mag));
  }
  return Float32Array.from(out);
}

describe('quantizeInt8 (in-graph int8)', () => {
  it('agrees with QMAX.int8 of the host quantiser', () => expect(INT8_QMAX).toBe(QMAX.int8));

  for (const source of ['bfloat16', 'float16'] as const) {
    for (const block of [64, 16]) {
      it(`gives the host quantiser's codes and scales bit for bit (${source} from fp32, block ${block} of 64)`, async () => {
        const D = 64;
        const x = rows(D);
        const bits = source === 'bfloat16' ? f32ArrayToBf16(x) : f32ArrayToF16(x);
        const want = quantize16('int8', bits, source, D, block);
        const got = await graphQuant(x, D, block, source);
        expect(Buffer.from(got.codes.buffer, got.codes.byteOffset, got.codes.byteLength).equals(Buffer.from(want.codes.buffer))).toBe(true);
        expect(Buffer.from(got.scales.buffer, got.scales.byteOffset, got.scales.byteLength).equals(Buffer.from(want.scales.buffer))).toBe(true);
        // the ties really are ties: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -2.5 -> -2, 126.5 -> 126
        expect(Array.from(got.codes.subarray(0, 8))).toEqual(block === 64 ? [127, 0, 2, 2, -2, 0, 126, -126] : Array.from(want.codes.subarray(0, 8)));
      });
    }
  }

  it('also from bf16 compute (the GPU graphs): the values are cast, not rounded again', async () => {
    const D = 32;
    const x = rows(D);
    const bits = f32ArrayToBf16(x);
    const want = quantize16('int8', bits, 'bfloat16', D, 8);
    const got = await graphQuant(x, D, 8, 'bfloat16', 'bfloat16');
    expect(Array.from(got.codes)).toEqual(Array.from(want.codes));
    expect(Array.from(got.scales)).toEqual(Array.from(want.scales));
  });

  it('a non-finite input shows as a non-finite scale (the shard writer refuses it, as the host quantiser does)', async () => {
    const D = 8;
    const x = Float32Array.from([1, 2, Infinity, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, NaN, 3, 0, 0, 0, 0, NaN, 1, 1, 1, 1, 1, 1, 1]);
    const got = await graphQuant(x, D, D, 'bfloat16');
    expect(Number.isFinite(got.scales[0])).toBe(false);
    expect(got.scales[1]).toBe(Math.fround(8 / 127));
    expect(Number.isFinite(got.scales[2])).toBe(false);
    expect(Number.isFinite(got.scales[3])).toBe(false);
  });
});

describe('quantizeFp8 (in-graph e4m3fn)', () => {
  it('agrees with QMAX.float8e4m3 of the host quantiser', () => expect(FP8_QMAX).toBe(QMAX.float8e4m3));

  // every e4m3 tie: with amax 448 the scale is 448 / 448 = 1, so y = v; midpoints between codes are bf16/fp16 values
  function fp8Rows(D: number): Float32Array {
    const out: number[] = [];
    const vals: number[] = [];
    for (let c = 0; c < 126; c++) {
      const lo = c < 8 ? c * 2 ** -9 : (1 + (c % 8) / 8) * 2 ** ((c >> 3) - 7);
      const c1 = c + 1;
      const hi = c1 < 8 ? c1 * 2 ** -9 : (1 + (c1 % 8) / 8) * 2 ** ((c1 >> 3) - 7);
      vals.push(lo, (lo + hi) / 2, -(lo + hi) / 2, lo * 1.01);
    }
    vals.push(-0, 0, 2 ** -12, -(2 ** -12), 2 ** -10, 3 * 2 ** -11);
    for (let i = 0; i < vals.length; i += D - 1) {
      const row = [448, ...vals.slice(i, i + D - 1)];
      while (row.length < D) row.push(0);
      out.push(...row);
    }
    return Float32Array.from([...out, ...rows(D)]);
  }

  for (const source of ['bfloat16', 'float16'] as const) {
    for (const block of [64, 16]) {
      it(`gives the host quantiser's codes and scales bit for bit (${source} from fp32, block ${block} of 64)`, async () => {
        const D = 64;
        const x = fp8Rows(D);
        const bits = source === 'bfloat16' ? f32ArrayToBf16(x) : f32ArrayToF16(x);
        const want = quantize16('float8e4m3', bits, source, D, block);
        const got = await graphQuant(x, D, block, source, 'float32', true);
        let differ = 0;
        for (let i = 0; i < want.codes.length; i++) if (got.codes[i] !== want.codes[i]) differ++;
        expect(differ).toBe(0);
        expect(Array.from(got.scales)).toEqual(Array.from(want.scales));
      });
    }
  }

  it('a NaN or infinite input shows as a non-finite scale', async () => {
    const x = Float32Array.from([1, 2, Infinity, 0, 1, NaN, 3, 0, 1, 2, 3, 4]);
    const got = await graphQuant(x, 4, 4, 'bfloat16', 'float32', true);
    expect([0, 1].map((i) => Number.isFinite(got.scales[i]))).toEqual([false, false]);
    expect(got.scales[2]).toBe(Math.fround(4 / 448));
  });
});

describe('viaPinnedHost (int8)', () => {
  it('is the identity on every int8 value', async () => {
    const g = new Graph('pinned');
    g.output(viaPinnedHost(g, g.input('x', 'int8', ['n']), undefined, 'int8'), 'y', 'int8', ['n']);
    const s = await ort.InferenceSession.create(encodeModel(g));
    const x = Int8Array.from({ length: 256 }, (_, i) => i - 128);
    const y = (await s.run({ x: new ort.Tensor('int8', x, [x.length]) })).y!.data as Int8Array;
    expect(Array.from(y)).toEqual(Array.from(x));
  });
});

describe('keepFeeds', () => {
  it('maps each kept position to its prefill chunk row and to its slot of the flat scan, in order', () => {
    for (const [P, tokens, chunkLen] of [[7, 1000, 128], [0, 300, 300], [130, 50, 128]] as const) {
      const chunks = Math.ceil((P + tokens) / chunkLen);
      const kept = keptPositions(tokens, 0, 0.3, 1, `c${P}`);
      const f = keepFeeds(kept, P, [chunks, chunkLen]);
      const [n, width] = f.shape;
      expect(n).toBe(chunks);
      expect(f.rows.length).toBe(n * width);
      expect(f.index.length).toBe(kept.length);
      kept.forEach((t, j) => {
        const slot = Number(f.index[j]);
        const chunk = Math.floor(slot / width);
        expect(chunk * chunkLen + Number(f.rows[slot])).toBe(P + t); // the stream row of position t
        if (j > 0) expect(slot).toBeGreaterThan(Number(f.index[j - 1]));
      });
      // no chunk holds more rows than the width, and the width is the busiest chunk's count
      const counts = new Map<number, number>();
      for (const v of f.index) counts.set(Math.floor(Number(v) / width), (counts.get(Math.floor(Number(v) / width)) ?? 0) + 1);
      expect(Math.max(...counts.values())).toBe(width);
    }
  });
});
