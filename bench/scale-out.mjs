#!/usr/bin/env node
// Scale-out on one host (issue 18): N worker processes vs one process, on the CPU, with the
// embedded default model and the default preset's extraction (configs/default.json: 35 contexts,
// ~100k tokens of SOTU) and a shortened training. Checks that the N-process store (merged) has
// the same shard checksums as the one-process store, and the joined gates the same bytes as a
// one-process training with the same layer groups; times each mode REPEAT times, alternating.
// Per worker it records the context tokens it extracted and its seconds, beside the tokens each
// part would have had under the earlier split (index % N, from the one-process store's plan).
// --baseline DIR also runs the workers' extraction with another build (DIR/bin/fastkvzip.js, e.g.
// a checkout of the commit before a change) in the same alternation; --no-train skips training.
// --recipe JSON changes keys of the preset's recipe (e.g. longer concatenated contexts: a mixed-length set).
// Usage: node bench/scale-out.mjs [--workers 2] [--repeat 2] [--train-steps 1000] [--baseline DIR] [--recipe JSON] [--no-train] [--out bench/results/scale-out-cpu.json]
// Needs dist/ (npm run build). The machine's load is recorded: on a shared machine it matters.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'fastkvzip.js');
const { values: a } = parseArgs({ options: { workers: { type: 'string', default: '2' }, repeat: { type: 'string', default: '2' }, 'train-steps': { type: 'string', default: '1000' }, baseline: { type: 'string' }, recipe: { type: 'string' }, 'no-train': { type: 'boolean', default: false }, out: { type: 'string', default: path.join(ROOT, 'bench/results/scale-out-cpu.json') } } });
const N = Number(a.workers);
const REPEAT = Number(a.repeat);
const STEPS = Number(a['train-steps']);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-bench-scale-'));
const env = { ...process.env, HF_HUB_OFFLINE: '1', FASTKVZIP_CACHE: path.join(tmp, 'cache') };
const cores = os.availableParallelism();

const preset = JSON.parse(readFileSync(path.join(ROOT, 'configs/default.json'), 'utf8'));
// --recipe '{"catMinTokens": 10000, ...}': the preset's recipe with these keys changed (e.g. a mixed-length set)
const r = { ...preset.recipe, ...(a.recipe ? JSON.parse(a.recipe) : {}) };
const EXTRACT = ['extract', '--model', path.join(ROOT, preset.model), '--template', preset.template, '--data', preset.data, '--exclude-docs', path.join(ROOT, preset.excludeDocs),
  '--min-doc-tokens', String(r.minDocTokens), '--max-doc-tokens', String(r.maxDocTokens), '--ten-k-count', String(r.tenKCount), '--cat-count', String(r.catCount),
  '--cat-min-tokens', String(r.catMinTokens), '--max-tokens', String(r.maxTokens), '--prefill-chunk', String(preset.extract.prefillChunk), '--score-chunk', String(preset.extract.scoreChunk),
  '--hidden-dtype', 'bfloat16', '--quiet', '--json'];

const BASELINE_BIN = a.baseline ? path.join(path.resolve(a.baseline), 'bin', 'fastkvzip.js') : null;
function fkz(args, bin = BIN) {
  const t0 = process.hrtime.bigint();
  const p = spawnSync(process.execPath, [bin, ...args], { env, encoding: 'utf8', maxBuffer: 1 << 28 });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (p.status !== 0) throw new Error(`fastkvzip ${args.slice(0, 1)} failed (${p.status}): ${p.stderr.slice(-2000)}`);
  return { seconds, json: JSON.parse(p.stdout) };
}
const sha = (f) => createHash('sha256').update(readFileSync(f)).digest('hex');
const shards = (dir) => JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8')).shards.map((s) => [s.contextId, s.sha256]);
const median = (xs) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const min = (xs) => Math.min(...xs);
const ratio = (f, r) => +(f(r.one) / f(r.workers)).toFixed(3);
const load = () => os.loadavg().map((x) => +x.toFixed(2));

// graphs built once beforehand, so no mode pays for the build
fkz([...EXTRACT, '--max-tokens', '1', '--ten-k-count', '1', '--cat-count', '0', '--out', path.join(tmp, 'warm')]);
const loadBefore = load();
const runs = { extract: { one: [], workers: [], baseline: [] }, train: { one: [], workers: [] } };
// per workers run: each worker's context tokens and seconds
const perWorker = { workers: [], baseline: [] };
const workerLoads = (json) => json.workers.map((w) => ({ part: w.part, tokens: w.tokens.total, contexts: w.contexts.done, seconds: +w.seconds.toFixed(1) }));
let moduloTokens = null;
let identicalStore = true;
let identicalGates = true;
let tokens = 0;
for (let i = 0; i < REPEAT; i++) {
  const one = path.join(tmp, `one-${i}`);
  const many = path.join(tmp, `many-${i}`);
  const e1 = fkz([...EXTRACT, '--threads', String(cores), '--out', one]);
  const eN = fkz([...EXTRACT, '--workers', String(N), '--out', many]); // threads split: cores / N each
  runs.extract.one.push(e1.seconds);
  runs.extract.workers.push(eN.seconds);
  perWorker.workers.push(workerLoads(eN.json));
  tokens = e1.json.tokens.total;
  identicalStore &&= JSON.stringify(shards(one)) === JSON.stringify(shards(many));
  // what index % N gave each part (the split before issue 18's balancing)
  const plan = JSON.parse(readFileSync(path.join(one, 'manifest.json'), 'utf8')).shards;
  moduloTokens = Array.from({ length: N }, (_, k) => plan.filter((s) => s.index % N === k).reduce((t, s) => t + (s.contextTokens ?? s.tokens), 0));
  if (BASELINE_BIN) {
    const base = path.join(tmp, `base-${i}`);
    const eB = fkz([...EXTRACT, '--workers', String(N), '--out', base], BASELINE_BIN);
    runs.extract.baseline.push(eB.seconds);
    perWorker.baseline.push(workerLoads(eB.json));
    identicalStore &&= JSON.stringify(shards(one)) === JSON.stringify(shards(base));
    for (const d of [base, `${base}.parts`]) rmSync(d, { recursive: true, force: true });
  }
  if (a['no-train']) {
    for (const d of [one, many, `${many}.parts`]) rmSync(d, { recursive: true, force: true });
    continue;
  }
  const TRAIN = ['train', '--features', one, '--steps', String(STEPS), '--quiet', '--json'];
  const layers = JSON.parse(readFileSync(path.join(one, 'manifest.json'), 'utf8')).model.scoredLayers.length;
  const t1 = fkz([...TRAIN, '--threads', String(cores), '--layers-per-group', String(Math.ceil(layers / N)), '--out', path.join(tmp, `train-one-${i}`)]);
  const tN = fkz([...TRAIN, '--workers', String(N), '--out', path.join(tmp, `train-many-${i}`)]);
  runs.train.one.push(t1.seconds);
  runs.train.workers.push(tN.seconds);
  identicalGates &&= sha(path.join(tmp, `train-one-${i}`, 'gates.safetensors')) === sha(path.join(tmp, `train-many-${i}`, 'gates.safetensors'));
  for (const d of [one, many, `${many}.parts`, path.join(tmp, `train-one-${i}`), path.join(tmp, `train-many-${i}`), path.join(tmp, `train-many-${i}.parts`)]) rmSync(d, { recursive: true, force: true });
}
const result = {
  what: `extract and train on the CPU: one process (${cores} threads) vs --workers ${N} (${Math.max(1, Math.floor(cores / N))} thread(s) each)`,
  date: new Date().toISOString(),
  machine: { cpus: cores, cpuModel: os.cpus()[0]?.model ?? '?', memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, loadBefore, loadAfter: load() },
  model: preset.model,
  recipe: r,
  tokens,
  trainSteps: STEPS,
  repeat: REPEAT,
  command: `node bench/scale-out.mjs --workers ${N} --repeat ${REPEAT} --train-steps ${STEPS}${a.baseline ? ` --baseline ${a.baseline}` : ''}${a.recipe ? ` --recipe '${a.recipe}'` : ''}${a['no-train'] ? ' --no-train' : ''}`,
  // on a shared machine the least disturbed run (the minimum) is the better estimate; the median is kept beside it
  extract: {
    oneSeconds: runs.extract.one,
    workersSeconds: runs.extract.workers,
    speedup: ratio(min, runs.extract),
    speedupOfMedians: ratio(median, runs.extract),
    identicalStore,
    // per workers run, per worker: context tokens, contexts, seconds (the slowest bounds the wall)
    perWorker: perWorker.workers,
    // the tokens per part under index % N
    moduloTokens,
    ...(BASELINE_BIN ? { baseline: { bin: BASELINE_BIN, workersSeconds: runs.extract.baseline, perWorker: perWorker.baseline } } : {}),
  },
  train: a['no-train'] ? null : { oneSeconds: runs.train.one, workersSeconds: runs.train.workers, speedup: ratio(min, runs.train), speedupOfMedians: ratio(median, runs.train), identicalGates },
};
writeFileSync(a.out, JSON.stringify(result, null, 2) + '\n');
console.log(JSON.stringify(result, null, 2));
rmSync(tmp, { recursive: true, force: true });
