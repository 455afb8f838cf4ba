// The KVzip scoring forms (src/onnx/kvzip-graph.ts: classic, fused) timed against each other on
// one scored layer of one reconstruction pass, alone (buildKvzipScoreGraph: no model, random
// post-RoPE queries and keys of a real attention shape), and their scores compared.
//   tsx bench/kvzip_scoring.ts --shape qwen3-8b --device cpu --dtype float32 --reps 5 --out r.json
// --model DIR takes the attention shape from a checkpoint's config.json instead of --shape.
// Each timed run scores one full --chunk (the second chunk of the context, after a prefix of
// --prefix tokens; R = --repeat-extra + chunk repeat tokens) in --layers layers, per-pass masks
// shared by the layers as in the KVzip graph. The queries and keys are initializers of the graph,
// so a run moves no inputs to the device. "per_context_s" extrapolates to every pass
// (ceil(--ctx / --chunk)) and scored layer of a --ctx-token context.
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { encodeModel } from '../src/onnx/builder.js';
import { buildKvzipScoreGraph, KVZIP_SCORINGS, type KvzipScoring } from '../src/onnx/kvzip-graph.js';
import type { ComputeDType } from '../src/onnx/weights.js';
import { parseModelConfig } from '../src/model/config.js';
import { createSession, ort, parseDevice } from '../src/runtime/session.js';
import { Rng } from '../src/util/random.js';

/** Attention shapes of the benchmark models (config.json's values) and their scored-layer counts. */
const SHAPES: Record<string, { numKvHeads: number; numHeads: number; headDim: number; scoredLayers: number }> = {
  'qwen3-8b': { numKvHeads: 8, numHeads: 32, headDim: 128, scoredLayers: 36 },
  'qwen3-0.6b': { numKvHeads: 8, numHeads: 16, headDim: 128, scoredLayers: 28 },
  'default-model': { numKvHeads: 2, numHeads: 4, headDim: 64, scoredLayers: 4 },
};

const { values: a } = parseArgs({
  options: {
    shape: { type: 'string', default: 'qwen3-8b' },
    model: { type: 'string' },
    device: { type: 'string', default: 'cpu' },
    dtype: { type: 'string' },
    threads: { type: 'string' },
    ctx: { type: 'string', default: '20000' },
    chunk: { type: 'string', default: '2000' },
    prefix: { type: 'string', default: '30' },
    'repeat-extra': { type: 'string', default: '30' },
    reps: { type: 'string', default: '5' },
    scorings: { type: 'string', default: KVZIP_SCORINGS.join(',') },
    layers: { type: 'string', default: '4' },
    out: { type: 'string' },
  },
});
const device = { device: parseDevice(a.device!), threads: a.threads ? Number(a.threads) : undefined };
const dtype = (a.dtype ?? (device.device === 'cpu' ? 'float32' : 'bfloat16')) as ComputeDType;
let shapeName = a.shape!;
let shape = SHAPES[shapeName];
if (a.model) {
  const spec = parseModelConfig(JSON.parse(readFileSync(path.join(a.model, 'config.json'), 'utf8')), path.join(a.model, 'config.json'));
  shape = { numKvHeads: spec.numKvHeads, numHeads: spec.numHeads, headDim: spec.headDim, scoredLayers: spec.scoredLayers.length };
  shapeName = path.basename(a.model);
}
if (!shape) throw new Error(`--shape ${a.shape}: expected one of ${Object.keys(SHAPES).join(', ')}`);
const scorings = a.scorings!.split(',') as KvzipScoring[];
const [ctxLen, chunk, P, extra, reps] = [a.ctx, a.chunk, a.prefix, a['repeat-extra'], a.reps].map(Number) as [number, number, number, number, number];
const passes = Math.ceil(ctxLen / chunk);
const cLen = chunk;
const R = extra + cLen;
const N = P + 2 * chunk;
const { numKvHeads: H, numHeads: Hq, headDim: d } = shape;
const L = Number(a.layers);

// random post-RoPE values, scaled so the logits q·k/√d spread like a real layer's (std ≈ 4),
// and key 0 made an attention sink (large logit for every query), as real prefixes have
const rng = new Rng(1);
const normal = () => Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
const query = new Float32Array(L * R * Hq * d).map(() => 1.4 * normal());
const keys = new Float32Array(L * H * (N + R) * d).map(() => 1.4 * normal());
for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) for (let i = 0; i < d; i++) keys[(l * H + h) * (N + R) * d + i] = 3 * Math.sign(query[l * R * Hq * d + i]!); // sink
const i64 = (v: number) => new ort.Tensor('int64', BigInt64Array.of(BigInt(v)), []);
const feeds = {
  prefix_len: i64(P),
  chunk_start: i64(P + chunk),
  chunk_len: i64(cLen),
  max_chunk: i64(chunk),
};

const dir = mkdtempSync(path.join(os.tmpdir(), 'fkz-kvzip-scoring-'));
const variants: Record<string, unknown> = {};
const scores: Record<string, Float32Array> = {};
const sessions: Record<string, ort.InferenceSession> = {};
for (const scoring of scorings) {
  const file = path.join(dir, `${scoring}.onnx`);
  const g = buildKvzipScoreGraph(shape, dtype, scoring, L);
  // the random queries and keys become initializers: loaded once, on the device for GPU runs
  if (g.inputs[0]?.name !== 'query' || g.inputs[1]?.name !== 'present_key') throw new Error('buildKvzipScoreGraph inputs changed');
  g.inputs.splice(0, 2);
  g.rawInitializer('query', 'float32', [L, 1, R, Hq, d], new Uint8Array(query.buffer));
  g.rawInitializer('present_key', 'float32', [L, 1, H, N + R, d], new Uint8Array(keys.buffer));
  writeFileSync(file, encodeModel(g));
  sessions[scoring] = await createSession(file, device);
}
// the forms take turns, run by run, so a shared machine's load falls on both alike
// wall time, and this process's CPU time (user + system): on a machine shared with other work the
// CPU time of a single-threaded run (--threads 1) is the steadier figure
const times: Record<string, number[]> = Object.fromEntries(scorings.map((x) => [x, []]));
const cpuTimes: Record<string, number[]> = Object.fromEntries(scorings.map((x) => [x, []]));
for (let rep = 0; rep < reps + 2; rep++) {
  for (const scoring of scorings) {
    const c = process.cpuUsage();
    const t = process.hrtime.bigint();
    const out = await sessions[scoring]!.run(feeds);
    const sec = Number(process.hrtime.bigint() - t) / 1e9;
    const cpu = process.cpuUsage(c);
    if (rep >= 2) {
      // two warm-up runs (kernels, memory arena)
      times[scoring]!.push(sec);
      cpuTimes[scoring]!.push((cpu.user + cpu.system) / 1e6);
    }
    scores[scoring] = out.scores!.data as Float32Array;
  }
}
for (const scoring of scorings) {
  await sessions[scoring]!.release();
  const sorted = [...times[scoring]!].sort((x, y) => x - y);
  const median = sorted[Math.floor(sorted.length / 2)]! / L;
  const cpuSorted = [...cpuTimes[scoring]!].sort((x, y) => x - y);
  const cpuMedian = cpuSorted[Math.floor(cpuSorted.length / 2)]! / L;
  variants[scoring] = {
    per_layer_pass_ms: { median: +(median * 1e3).toFixed(2), min: +((sorted[0]! / L) * 1e3).toFixed(2), runs_ms: times[scoring]!.map((x) => +(x * 1e3).toFixed(1)) },
    cpu_per_layer_pass_ms: { median: +(cpuMedian * 1e3).toFixed(2), min: +((cpuSorted[0]! / L) * 1e3).toFixed(2) },
    per_context_s: +(median * passes * shape.scoredLayers).toFixed(2),
  };
  console.error(`${scoring}: median ${(median * 1e3).toFixed(1)} ms wall, ${(cpuMedian * 1e3).toFixed(1)} ms CPU per layer and pass (${sorted.length} runs)`);
}
rmSync(dir, { recursive: true, force: true });

let agreement: Record<string, number> | null = null;
if (scores.classic && scores.fused) {
  let maxAbs = 0;
  let maxRel = 0;
  let maxScore = 0;
  for (let i = 0; i < scores.classic.length; i++) {
    const c = scores.classic[i]!;
    const diff = Math.abs(c - scores.fused[i]!);
    maxAbs = Math.max(maxAbs, diff);
    if (c > 1e-6) maxRel = Math.max(maxRel, diff / c);
    maxScore = Math.max(maxScore, c);
  }
  agreement = { max_abs_diff: maxAbs, max_rel_diff_above_1e6: maxRel, max_score: maxScore };
}
const result = {
  bench: 'kvzip-scoring',
  shape: shapeName,
  device: a.device,
  dtype,
  threads: device.threads ?? 'ort-default',
  layers_per_run: L,
  lengths: { ctx: ctxLen, chunk, passes, prefix: P, repeat: R, chunk_scored: cLen, logits_per_layer_pass: H * R * (Hq / H) * (P + cLen + R) },
  scored_layers: shape.scoredLayers,
  variants,
  fused_vs_classic: agreement,
  date: new Date().toISOString(),
  command: `tsx bench/kvzip_scoring.ts ${process.argv.slice(2).join(' ')}`,
};
console.log(JSON.stringify(result, null, 2));
if (a.out) writeFileSync(a.out, JSON.stringify(result, null, 2) + '\n');
