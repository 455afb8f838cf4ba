// Quick check that every graph kind loads and runs on a device EP in fp16 and bf16, and agrees
// with the CPU fp32 graphs (tiny random models). Run first on a new GPU machine.
//   tsx bench/cuda_smoke.ts --device cuda
import { mkdtempSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { randomModel } from '../test/helpers/random-model.js';
import { writeModelGraphs } from '../src/onnx/write-graphs.js';
import { createSession, ort, parseDevice } from '../src/runtime/session.js';
import { StepRunner } from '../src/runtime/step.js';
import { kvzipFeeds } from '../src/kvzip/inputs.js';
import { scoreContext } from '../src/kvzip/score-context.js';
import { cacheIoDtype } from '../src/onnx/step-graph.js';
import { Graph, encodeModel } from '../src/onnx/builder.js';
import { buildGradGraph, PARAMS, paramShape } from '../src/gate/graph.js';
import { initLayer, stack } from '../src/gate/state.js';
import { f16ArrayToF32 } from '../src/util/half.js';
import { CompressedCache } from '../src/runtime/compressed-cache.js';

const { values: a } = parseArgs({ options: { device: { type: 'string', default: 'cuda' } } });
const device = { device: parseDevice(a.device!) };
const asF32 = (x: Float32Array | Uint16Array) => (x instanceof Float32Array ? x : f16ArrayToF32(x));
const maxAbs = (x: ArrayLike<number>, y: ArrayLike<number>) => { let m = 0; for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!)); return m; };
const report: Record<string, unknown> = {};
for (const name of ['qwen3', 'gemma3'] as const) {
  const { spec, source } = randomModel(name, 11);
  const ids = Array.from({ length: 40 }, (_, i) => (i * 31 + 7) % spec.vocabSize);
  const prompts = { prefixIds: [1, 2, 3], postfixIds: [4, 5], repeatFirstIds: [6, 7], repeatNextIds: [8, 9], prevPostfixTokens: 8 };
  const feeds = kvzipFeeds(ids, prompts, { prefillChunk: 16, scoreChunk: 12 });
  const ref: { logits?: Float32Array; scores?: Float32Array[] } = {};
  for (const dtype of ['float32', 'float16', 'bfloat16'] as const) {
    const key = `${name}/${dtype}`;
    try {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'fkz-smoke-'));
      const files = writeModelGraphs(dir, spec, source, dtype, ['step_full', 'kvzip']);
      const dev = dtype === 'float32' ? { device: 'cpu' as const } : device;
      const step = await createSession(files.paths.step_full!, dev);
      const out = await new StepRunner(step, spec, cacheIoDtype(dtype)).forward(ids);
      const kv = await createSession(files.paths.kvzip!, dev);
      const res = await scoreContext(kv, feeds, spec.scoredLayers.length, spec.numKvHeads);
      if (dtype === 'float32') {
        ref.logits = out.logits!;
        ref.scores = res.scores;
        report[key] = 'reference (cpu)';
      } else {
        report[key] = { logitsMaxAbs: maxAbs(out.logits!, ref.logits!), scoresMaxAbs: Math.max(...res.scores.map((s, i) => maxAbs(s, ref.scores![i]!))), hiddenFinite: res.attnInput.every((h) => asF32(h).every(Number.isFinite)) };
      }
    } catch (e) {
      report[key] = `FAILED: ${(e as Error).message.slice(0, 400)}`;
    }
  }
}
// the compressed cache (generate --gates): per-head evictions, a multi-token chunk over the
// per-head buffers (one GQA per KV head), single-token steps, then a decode block (greedy steps in
// one ONNX Loop, the buffers carried with room), vs CPU fp32
for (const name of ['qwen3', 'gemma3'] as const) {
  const { spec, source } = randomModel(name, 11);
  const ids = Array.from({ length: 40 }, (_, i) => (i * 31 + 7) % spec.vocabSize);
  let ref: Float32Array[] = [];
  let refTokens: number[] = [];
  for (const dtype of ['float32', 'float16', 'bfloat16'] as const) {
    const key = `compressed/${name}/${dtype}`;
    try {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'fkz-smoke-'));
      const files = writeModelGraphs(dir, spec, source, dtype, ['step_compressed', 'step_compressed_decode', 'step_compressed_block']);
      const dev = dtype === 'float32' ? { device: 'cpu' as const } : device;
      const open = (k: 'step_compressed' | 'step_compressed_decode' | 'step_compressed_block') => createSession(files.paths[k]!, dev);
      const cache = new CompressedCache({ step: await open('step_compressed'), decode: await open('step_compressed_decode'), block: await open('step_compressed_block') }, spec, cacheIoDtype(dtype));
      const got: Float32Array[] = [];
      await cache.forward(ids.slice(0, 24));
      for (let s = 0; s < spec.scoredLayers.length; s++) for (let h = 0; h < spec.numKvHeads; h++) for (let p = 1; p < 20; p += 2 + h) cache.evict(s, h, p);
      got.push((await cache.forward(ids.slice(24, 32))).logits);
      for (const t of ids.slice(32, 36)) got.push((await cache.forward([t])).logits);
      const block = await cache.decodeBlock(ids[36]!, 6, []);
      got.push((await cache.forward([ids[37]!])).logits); // over the block's cache
      if (dtype === 'float32') {
        ref = got;
        refTokens = block.tokens;
        report[key] = { reference: 'cpu', paddingEntries: cache.footprint().paddingEntries, blockTokens: block.tokens };
      } else {
        report[key] = { logitsMaxAbs: Math.max(...got.map((g, i) => maxAbs(g, ref[i]!))), blockTokens: block.tokens, blockTokensAsCpu: block.tokens.join() === refTokens.join() };
      }
    } catch (e) {
      report[key] = `FAILED: ${(e as Error).message.slice(0, 400)}`;
    }
  }
}
// gate training math on the device, fp32 and bf16 matmuls
for (const mm of ['float32', 'bfloat16', 'float16'] as const) {
  try {
    const d = { L: 2, D: 64, H: 2, G: 2, r: 16, S: 16 };
    const g = new Graph('grad');
    buildGradGraph(g, d, mm);
    const s = await ort.InferenceSession.create(encodeModel(g), { executionProviders: [device.device === 'cuda' ? { name: 'cuda' } as ort.InferenceSession.ExecutionProviderConfig : device.device] });
    const P = stack([0, 1].map((l) => initLayer(d, 1, l)), d);
    const feeds: Record<string, ort.Tensor> = { x: new ort.Tensor('float32', new Float32Array(2 * 50 * 64).map((_, i) => Math.sin(i)), [2, 50, 64]), y: new ort.Tensor('float32', new Float32Array(2 * 50 * 2).fill(0.1), [2, 50, 2]) };
    for (const n of PARAMS) feeds[n] = new ort.Tensor('float32', P[n], paramShape(n, d));
    const o = await s.run(feeds);
    report[`gate-grad/${mm}`] = { loss: Array.from(o.loss!.data as Float32Array) };
  } catch (e) {
    report[`gate-grad/${mm}`] = `FAILED: ${(e as Error).message.slice(0, 400)}`;
  }
}
console.log(JSON.stringify(report, null, 2));
