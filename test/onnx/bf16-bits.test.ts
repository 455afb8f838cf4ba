// The in-graph bfloat16 bit patterns equal JavaScript's round-to-nearest-even conversion, and
// the bf16 KVzip graph returns exactly the fp32 graph's attention inputs rounded to bf16, through
// a CPU-only identity so that on CUDA they leave the device via pinned memory.
import { describe, it, expect } from 'vitest';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { mkdtempSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Graph, encodeModel } from '../../src/onnx/builder.js';
import { bf16Bits } from '../../src/onnx/bf16-bits.js';
import { viaPinnedHost } from '../../src/onnx/kvzip-graph.js';
import { f32ArrayToBf16 } from '../../src/util/half.js';
import { Rng } from '../../src/util/random.js';
import { golden, modelDir } from '../helpers/golden.js';
import { openModel } from '../../src/model/load.js';
import { ensureGraphs } from '../../src/onnx/index.js';
import { BF16_BITS_ROUTES, BITCAST_OPSET } from '../../src/onnx/kvzip-graph.js';
import { createSession } from '../../src/runtime/session.js';
import { kvzipFeeds } from '../../src/kvzip/inputs.js';
import { scoreContext } from '../../src/kvzip/score-context.js';

describe('bf16Bits', () => {
  it('matches round-to-nearest-even bf16 bits on edge cases and random values', async () => {
    const g = new Graph('bits');
    g.output(bf16Bits(g, g.input('x', 'float32', ['n'])), 'bits', 'uint16', ['n']);
    const s = await ort.InferenceSession.create(encodeModel(g));
    const rng = new Rng(1);
    const values: number[] = [1, -1, 2, 0.5, 3, 1.5, 2 ** -126, -(2 ** -126), 2 ** 127, 3.3895313892515355e38, 65504, 1e-30, -7.25, 0.1, 1 / 3];
    for (let k = -120; k <= 120; k += 7) values.push(2 ** k, 2 ** k * (1 - 2 ** -9), -(2 ** k) * 1.0078125, 2 ** k * 1.99);
    for (let i = 0; i < 20000; i++) values.push((rng.next() - 0.5) * 10 ** Math.floor(rng.uniform(-20, 20)));
    const x = Float32Array.from(values);
    const got = (await s.run({ x: new ort.Tensor('float32', x, [x.length]) })).bits!.data as Uint16Array;
    const want = f32ArrayToBf16(x);
    for (let i = 0; i < x.length; i++) expect(got[i], `value ${x[i]}`).toBe(want[i]);
  });

  it('is 0 for zeros and bf16 subnormals (documented)', async () => {
    const g = new Graph('bits');
    g.output(bf16Bits(g, g.input('x', 'float32', ['n'])), 'bits', 'uint16', ['n']);
    const s = await ort.InferenceSession.create(encodeModel(g));
    const out = (await s.run({ x: new ort.Tensor('float32', Float32Array.from([0, -0, 1e-40, -1e-39]), [4]) })).bits!.data as Uint16Array;
    expect(Array.from(out)).toEqual([0, 0, 0, 0]);
  });
});

describe('viaPinnedHost', () => {
  it('is the identity on every uint16 value', async () => {
    const g = new Graph('pinned');
    g.output(viaPinnedHost(g, g.input('x', 'uint16', ['n'])), 'y', 'uint16', ['n']);
    const s = await ort.InferenceSession.create(encodeModel(g));
    const x = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const y = (await s.run({ x: new ort.Tensor('uint16', x, [x.length]) })).y!.data as Uint16Array;
    expect(Buffer.from(y.buffer, y.byteOffset, y.byteLength).equals(Buffer.from(x.buffer))).toBe(true);
  });
});

describe('kvzip_bf16 graph', () => {
  // arith: BitwiseAnd, the CPU-only identity; bitcast: BitCast, which ONNX Runtime implements on the CPU only
  const outputOp = { arith: 'BitwiseAnd', bitcast: 'BitCast' } as const;
  it.each(BF16_BITS_ROUTES)('%s route: every attention-input output comes from a CPU-only node (pinned-memory route on CUDA)', (route) => {
    const model = openModel(modelDir('qwen3'));
    const files = ensureGraphs(model, { dtype: 'float32', kinds: ['kvzip_bf16', 'prefill_bf16'], cacheDir: mkdtempSync(path.join(os.tmpdir(), 'fkz-pin-')), bf16Bits: route });
    for (const kind of ['kvzip_bf16', 'prefill_bf16'] as const) {
      const model_ = onnxProto.onnx.ModelProto.decode(readFileSync(files.paths[kind]!));
      expect(Number(model_.opsetImport!.find((o) => !o.domain)?.version), kind).toBe(route === 'bitcast' ? BITCAST_OPSET : 21);
      const graph = model_.graph!;
      const hidden = graph.output!.filter((o) => o.name!.startsWith('hidden.'));
      expect(hidden.length).toBe(model.spec.scoredLayers.length);
      for (const o of hidden) expect(graph.node!.find((n) => n.output!.includes(o.name!))?.opType, `${kind} ${o.name}`).toBe(outputOp[route]);
    }
  });

  it.each(BF16_BITS_ROUTES)('%s route: returns the fp32 graph attention inputs rounded to bf16, bit for bit, and the same scores', async (route) => {
    const g = golden('qwen3');
    const model = openModel(modelDir('qwen3'));
    const files = ensureGraphs(model, { dtype: 'float32', kinds: ['kvzip', 'kvzip_bf16'], cacheDir: mkdtempSync(path.join(os.tmpdir(), 'fkz-bf16-')), bf16Bits: route });
    const prompts = { prefixIds: g.ids('kvzip.prefix_ids'), postfixIds: g.ids('kvzip.postfix_ids'), repeatFirstIds: g.ids('kvzip.repeat_first_ids'), repeatNextIds: g.ids('kvzip.repeat_next_ids'), prevPostfixTokens: 8 };
    const feeds = kvzipFeeds(g.ids('kvzip.ctx_ids'), prompts, { prefillChunk: 16, scoreChunk: 12 });
    const a = await scoreContext(await createSession(files.paths.kvzip!, { device: 'cpu' }), feeds, 3, 2);
    const b = await scoreContext(await createSession(files.paths.kvzip_bf16!, { device: 'cpu' }), feeds, 3, 2);
    for (let s = 0; s < 3; s++) {
      expect(b.attnInput[s]).toBeInstanceOf(Uint16Array);
      expect(Array.from(b.attnInput[s]!)).toEqual(Array.from(f32ArrayToBf16(a.attnInput[s] as Float32Array)));
      expect(Array.from(b.scores[s]!)).toEqual(Array.from(a.scores[s]!));
    }
  });
});
