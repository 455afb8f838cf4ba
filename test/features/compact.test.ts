// Issue 16's compact store forms: the 8-bit quantiser against an independent reference
// computation, the kept positions, the Arrow round trip of every form, the store identity,
// the refusal to mix forms, and the trainer's in-graph dequantisation.
import { describe, it, expect } from 'vitest';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { quantize16, dequantizeRows, FP8_E4M3_VALUES, fp8E4m3Code, type QuantDtype } from '../../src/features/quant.js';
import { keptPositions, isHeldOut } from '../../src/features/keep.js';
import { compactLayer } from '../../src/features/compact.js';
import { openStore, type StoreInit } from '../../src/features/store.js';
import { readLayer, type LayerChunk } from '../../src/features/reader.js';
import { layerBlocks } from '../../src/features/blocks.js';
import { identityHash, identityOf, readManifest } from '../../src/features/manifest.js';
import { mergeStores } from '../../src/features/merge.js';
import { estimateStoreBytes, bytesPerRow } from '../../src/features/summary.js';
import { Graph, encodeModel } from '../../src/onnx/builder.js';
import { dequantRows } from '../../src/gate/graph.js';
import { Rng } from '../../src/util/random.js';
import { CONTEXTS, D, H, LAYERS, identity, layerData, tempDir, transpose } from './fixtures.js';

// ---- reference computations (written independently of src/features/quant.ts) -------------

const F = new Float32Array(1);
/** IEEE single rounding, through a Float32Array store */
const single = (v: number) => ((F[0] = v), F[0]!);
const bf16 = (bits: number) => new Float32Array(new Uint32Array([bits << 16]).buffer)[0]!;

/** round half to even via floor and an explicit tie test */
function refRound(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** every finite e4m3fn value from its definition: sign, 4 exponent bits (bias 7), 3 mantissa bits */
function refFp8Table(): { code: number; value: number }[] {
  const out: { code: number; value: number }[] = [];
  for (let code = 0; code < 256; code++) {
    const e = (code >> 3) & 15;
    const m = code & 7;
    if (e === 15 && m === 7) continue; // NaN
    const mag = e === 0 ? m * 2 ** -9 : (8 + m) * 2 ** (e - 10);
    out.push({ code, value: code & 128 ? -mag : mag });
  }
  return out;
}
const FP8_REF = refFp8Table();

/** nearest finite code by exhaustive search, ties to the even code, the sign of v kept */
function refFp8(v: number): number {
  const c = Math.min(Math.abs(v), 448);
  let best = -1;
  let bestD = Infinity;
  for (const { code, value } of FP8_REF) {
    if (code & 128) continue;
    const d = Math.abs(value - c);
    if (d < bestD || (d === bestD && code % 2 === 0)) {
      best = code;
      bestD = d;
    }
  }
  return v < 0 || Object.is(v, -0) ? best | 128 : best;
}

function refQuantize(dtype: QuantDtype, bits: Uint16Array, block: number) {
  const rows = bits.length / D;
  const qmax = dtype === 'int8' ? 127 : 448;
  const codes: number[] = [];
  const scales: number[] = [];
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < D / block; b++) {
      const xs = Array.from({ length: block }, (_, j) => bf16(bits[r * D + b * block + j]!));
      const amax = Math.max(...xs.map(Math.abs));
      const s = single(amax / qmax);
      scales.push(s);
      for (const x of xs) {
        if (s === 0) codes.push(0);
        else if (dtype === 'int8') codes.push(Math.max(-127, Math.min(127, refRound(single(x / s)))));
        else codes.push(refFp8(single(x / s)));
      }
    }
  }
  return { codes, scales };
}

/** bf16 rows with a zero row, exact ties of x/scale and values near the e4m3 boundaries */
function testBits(rows: number, seed: number): Uint16Array {
  const rng = new Rng(seed);
  const toBits = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0]! >>> 16; // exact: values below have ≤ 8 significant bits
  const out = new Uint16Array(rows * D);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < D; c++) {
      let x: number;
      if (r === 0) x = 0;
      else if (r === 1) x = c === 0 ? 127 : (c - 8) + 0.5; // scale exactly 1: every x.5 is a tie
      else if (r === 2) x = c === 0 ? 448 : FP8_REF[(c * 7) % FP8_REF.length]!.value * (1 + 1 / 32); // halfway-ish between e4m3 codes
      else x = bf16(toBits(rng.uniform(-3, 3) * (c === 5 ? 40 : 1))); // one outlier channel
      out[r * D + c] = toBits(x);
    }
  }
  return out;
}

describe('8-bit quantiser (issue 16) against the reference computation', () => {
  it('the e4m3fn table is the format: 448 the largest finite value, 2^-9 the smallest subnormal, 0x7f NaN', () => {
    expect(FP8_E4M3_VALUES[0x7e]).toBe(448);
    expect(FP8_E4M3_VALUES[0x01]).toBe(2 ** -9);
    expect(FP8_E4M3_VALUES[0x38]).toBe(1);
    expect(Number.isNaN(FP8_E4M3_VALUES[0x7f]!)).toBe(true);
    for (const { code, value } of FP8_REF) expect(FP8_E4M3_VALUES[code]).toBe(value);
    for (const { code, value } of FP8_REF) if (!Object.is(value, -0)) expect(fp8E4m3Code(value)).toBe(code);
    expect(fp8E4m3Code(1e6)).toBe(0x7e);
    expect(fp8E4m3Code(-1e6)).toBe(0xfe);
    expect(fp8E4m3Code(1 + 1 / 16)).toBe(0x38); // tie between 1 (0x38, even) and 1.125 (0x39)
    expect(fp8E4m3Code(1 + 3 / 16)).toBe(0x3a); // tie between 1.125 (0x39) and 1.25 (0x3a, even)
  });

  for (const dtype of ['int8', 'float8e4m3'] as const) {
    for (const block of [D, 4]) {
      it(`${dtype}, ${block === D ? 'one scale per token' : `a scale per ${block} channels`}: codes and scales bit for bit, dequantised within half a step`, () => {
        const bits = testBits(12, block + (dtype === 'int8' ? 1 : 2));
        const got = quantize16(dtype, bits, 'bfloat16', D, block);
        const want = refQuantize(dtype, bits, block);
        expect(Array.from(got.scales)).toEqual(want.scales);
        expect(Array.from(got.codes)).toEqual(want.codes.map((c) => (dtype === 'int8' ? c : c & 255)));
        const deq = dequantizeRows(dtype, got.codes, got.scales, D, block);
        for (let i = 0; i < bits.length; i++) {
          const x = bf16(bits[i]!);
          const s = got.scales[Math.floor(i / block)]!;
          const code = got.codes[i]!;
          expect(deq[i]).toBe(single((dtype === 'int8' ? code : FP8_REF.find((f) => f.code === code)!.value) * s));
          // int8: half a step of the scale; e4m3: 1/16 relative (3 mantissa bits) or half the subnormal step
          const bound = dtype === 'int8' ? s / 2 : Math.max(Math.abs(x) / 16, (2 ** -10) * s);
          expect(Math.abs(deq[i]! - x)).toBeLessThanOrEqual(bound * (1 + 1e-6));
        }
      });
    }
  }

  it('fp16 sources decode exactly; a non-finite attention input is refused', () => {
    const bits = Uint16Array.from({ length: D }, (_, c) => 0x3c00 + c); // 1, 1+2^-10, …
    const q = quantize16('int8', bits, 'float16', D, D);
    expect(q.scales[0]).toBe(single((1 + 15 / 1024) / 127));
    expect(q.codes[D - 1]).toBe(127);
    const bad = bits.slice();
    bad[3] = 0x7e00; // NaN
    expect(() => quantize16('int8', bad, 'float16', D, D)).toThrow(/non-finite/);
    expect(() => quantize16('int8', bits, 'float16', D, 5)).toThrow(/must divide/);
  });
});

describe('--keep-fraction positions', () => {
  it('keeps every held-out position and round(p × the others), uniformly, seeded per context', () => {
    const offset = 250;
    const kept = keptPositions(1000, offset, 0.3, 7, 'ctx-a');
    const heldOut = Array.from({ length: 1000 }, (_, t) => t).filter((t) => isHeldOut(offset + t));
    expect(heldOut.length).toBe(10);
    for (const t of heldOut) expect(kept).toContain(t);
    expect(kept.length).toBe(10 + Math.round(0.3 * 990));
    expect(Array.from(kept)).toEqual(Array.from(kept).sort((a, b) => a - b));
    expect(Array.from(keptPositions(1000, offset, 0.3, 7, 'ctx-a'))).toEqual(Array.from(kept));
    expect(Array.from(keptPositions(1000, offset, 0.3, 8, 'ctx-a'))).not.toEqual(Array.from(kept));
    expect(Array.from(keptPositions(1000, offset, 0.3, 7, 'ctx-b'))).not.toEqual(Array.from(kept));
    // uniform: the kept share of each tenth of the context is near 0.3 over many seeds
    const counts = new Array(10).fill(0);
    for (let seed = 0; seed < 200; seed++) for (const t of keptPositions(1000, 0, 0.3, seed, 'u')) if (!isHeldOut(t)) counts[Math.floor(t / 100)]++;
    for (const c of counts) expect(c / (200 * 99)).toBeCloseTo(0.3, 1);
    expect(keptPositions(50, 0, 1, 0, 'x').length).toBe(50);
    expect(() => keptPositions(50, 0, 0, 0, 'x')).toThrow(/keep fraction/);
  });
});

// ---- stores of each form -----------------------------------------------------------------

interface Form {
  name: string;
  hiddenDtype: 'bfloat16' | 'int8' | 'float8e4m3';
  block?: number;
  keep?: { fraction: number; seed: number };
}
const FORMS: Form[] = [
  { name: 'int8 per token', hiddenDtype: 'int8', block: D },
  { name: 'int8 per 4 channels', hiddenDtype: 'int8', block: 4 },
  { name: 'fp8 e4m3 per token', hiddenDtype: 'float8e4m3', block: D },
  { name: 'bf16 kept 0.5', hiddenDtype: 'bfloat16', keep: { fraction: 0.5, seed: 3 } },
  { name: 'int8 kept 0.4', hiddenDtype: 'int8', block: 8, keep: { fraction: 0.4, seed: 1 } },
];

function formIdentity(f: Form): StoreInit {
  const id = identity(f.hiddenDtype);
  return {
    ...id,
    extract: {
      ...id.extract,
      ...(f.block ? { quantBlock: f.block, quantSource: 'bfloat16' as const } : {}),
      ...(f.keep ? { keepFraction: f.keep.fraction, keepSeed: f.keep.seed } : {}),
    },
  };
}

/** Writes the fixture contexts in form `f` (from their bf16 data) and returns what went in. */
async function writeFormStore(dir: string, f: Form) {
  const store = await openStore(dir, formIdentity(f));
  const expected = new Map<string, ReturnType<typeof compactLayer>[]>();
  let offset = 0;
  for (const ctx of CONTEXTS) {
    const w = await store.openShard(ctx.id, ctx.tokens);
    const spec = {
      ...(f.block ? { quant: { dtype: f.hiddenDtype as QuantDtype, block: f.block, source: 'bfloat16' as const } } : {}),
      ...(f.keep ? { keep: { ...f.keep, offset } } : {}),
    };
    const rows = f.keep ? keptPositions(ctx.tokens, offset, f.keep.fraction, f.keep.seed, ctx.id) : null;
    const layers = [];
    for (const layer of LAYERS) {
      const { hidden: raw, scoresHT } = layerData(ctx, layer);
      const hidden = raw.map((b) => b & 0xbfff); // finite bf16 values (the fixture's random bits include NaN and Inf)
      const c = compactLayer(spec, rows, hidden, scoresHT, D, H);
      layers.push(c);
      await w.writeLayer(layer, c.hidden, c.scores, c.extra);
    }
    expected.set(ctx.id, layers);
    const info = await w.close();
    expect(info.contextTokens).toBe(f.keep ? ctx.tokens : undefined);
    await store.addShard(info, { index: ctx.index, set: ctx.set, docIds: [] });
    offset += ctx.tokens;
  }
  await store.finish();
  return expected;
}

async function collect(it: AsyncIterable<LayerChunk>): Promise<LayerChunk[]> {
  const out: LayerChunk[] = [];
  for await (const c of it) out.push(c);
  return out;
}

describe.each(FORMS)('compact store round trip: $name', (f) => {
  it('reader and byte ranges return the stored codes, scales, scores and positions; the manifest records the form', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const expected = await writeFormStore(dir, f);
      const m = await readManifest(dir);
      expect(m.hiddenDtype).toBe(f.hiddenDtype);
      expect(m.extract.quantBlock).toBe(f.block);
      expect(m.extract.keepFraction).toBe(f.keep?.fraction);
      expect(m.extract.keepSeed).toBe(f.keep?.seed);
      for (const s of m.shards) expect(s.contextTokens).toBe(f.keep ? CONTEXTS.find((c) => c.id === s.contextId)!.tokens : undefined);
      for (const [li, layer] of LAYERS.entries()) {
        const chunks = await collect(readLayer(dir, layer));
        const blocks = await layerBlocks(dir, layer);
        for (const [ci, chunk] of chunks.entries()) {
          const want = expected.get(chunk.contextId)![li]!;
          const T = chunk.tokens;
          expect(Array.from(chunk.hidden)).toEqual(Array.from(want.hidden));
          expect(chunk.hidden.constructor).toBe(want.hidden.constructor);
          expect(Array.from(chunk.scores)).toEqual(Array.from(transpose(want.scores, T)));
          expect(chunk.scales && Array.from(chunk.scales)).toEqual(want.extra.scales && Array.from(want.extra.scales));
          expect(chunk.positions && Array.from(chunk.positions)).toEqual(want.extra.positions && Array.from(want.extra.positions));
          // the trainer's external-data ranges hold the same bytes
          const b = blocks[ci]!;
          const file = await fs.readFile(b.file);
          const bytes = (r: { offset: number; length: number }) => file.subarray(r.offset, r.offset + r.length);
          expect(Buffer.compare(bytes(b.hidden), Buffer.from(want.hidden.buffer, want.hidden.byteOffset, want.hidden.byteLength))).toBe(0);
          expect(b.hidden.offset % 4096).toBe(0);
          if (f.block) expect(Buffer.compare(bytes(b.scale!), Buffer.from(want.extra.scales!.buffer))).toBe(0);
          else expect(b.scale).toBeUndefined();
          if (f.keep) expect(Buffer.compare(bytes(b.position!), Buffer.from(want.extra.positions!.buffer))).toBe(0);
          else expect(b.position).toBeUndefined();
        }
      }
    } finally {
      await cleanup();
    }
  });
});

describe('store identity and mixing of forms', () => {
  it('16-bit identities carry no compact fields (their hashes are unchanged); each form has its own hash', () => {
    const plain = identityOf(identity('bfloat16')) as { extract: Record<string, unknown> };
    for (const k of ['quantBlock', 'quantSource', 'keepFraction', 'keepSeed']) expect(k in plain.extract).toBe(false);
    const hashes = new Set([identityHash(identity('bfloat16')), ...FORMS.map((f) => identityHash(formIdentity(f)))]);
    expect(hashes.size).toBe(FORMS.length + 1);
  });

  it('a store refuses a run of another form, and merge-features refuses to mix forms', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const a = path.join(dir, 'a');
      const b = path.join(dir, 'b');
      await writeFormStore(a, FORMS[0]!);
      await writeFormStore(b, FORMS[1]!);
      await expect(openStore(a, formIdentity(FORMS[2]!))).rejects.toThrow(/another model\/recipe\/extraction \(hiddenDtype|extract\./);
      await expect(mergeStores(path.join(dir, 'm'), [a, b])).rejects.toThrow(/holds int8 \(scale per 4 channels\) features, .* holds int8 \(scale per 16 channels\); cannot merge stores of different forms/);
    } finally {
      await cleanup();
    }
  });

  it('a manifest whose quantisation block does not divide D is refused', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      await writeFormStore(dir, FORMS[0]!);
      const file = path.join(dir, 'manifest.json');
      const m = JSON.parse(await fs.readFile(file, 'utf8'));
      m.extract.quantBlock = 5;
      await fs.writeFile(file, JSON.stringify(m));
      await expect(readManifest(dir)).rejects.toThrow(/quantBlock 5 must divide the hidden size/);
    } finally {
      await cleanup();
    }
  });

  it('size estimate: int8 with one scale per token is about half of bf16, with keep 0.45 under a quarter', () => {
    const base = { tokens: 1e6, layers: 36, D: 4096, H: 8 };
    const bf = estimateStoreBytes({ ...base, hiddenDtype: 'bfloat16' });
    const i8 = estimateStoreBytes({ ...base, hiddenDtype: 'int8', quantBlock: 4096 });
    const i8k = estimateStoreBytes({ ...base, hiddenDtype: 'int8', quantBlock: 4096, keepFraction: 0.45 });
    expect(bytesPerRow({ D: 4096, H: 8, hiddenDtype: 'int8', quantBlock: 4096 })).toBe(4096 + 32 + 4);
    expect(i8 / bf).toBeCloseTo(0.502, 3);
    expect(i8k / bf).toBeLessThan(0.25);
  });
});

describe('trainer dequantisation in the graph', () => {
  for (const dtype of ['int8', 'float8e4m3'] as const) {
    it(`${dtype}: fp32(decode(q) · scale) of the gathered rows equals dequantizeRows bit for bit`, async () => {
      const bits = testBits(9, 5);
      const block = 4;
      const q = quantize16(dtype, bits, 'bfloat16', D, block);
      const g = new Graph('deq');
      const codes = g.input('codes', dtype === 'int8' ? 'int8' : 'uint8', [1, 9, D]);
      const scales = g.input('scales', 'float32', [1, 9, D / block]);
      g.output(dequantRows(g, codes, scales, dtype, block), 'x', 'float32', [1, 9, D]);
      const session = await ort.InferenceSession.create(encodeModel(g));
      const out = await session.run({ codes: new ort.Tensor(dtype === 'int8' ? 'int8' : 'uint8', q.codes, [1, 9, D]), scales: new ort.Tensor('float32', q.scales, [1, 9, D / block]) });
      expect(Array.from(out.x!.data as Float32Array)).toEqual(Array.from(dequantizeRows(dtype, q.codes, q.scales, D, block)));
    });
  }
});
