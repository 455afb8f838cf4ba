// Scale-out on one host, for real (CPU, the embedded default model, real SOTU text):
// `extract --workers 2` (two `extract --shard k/2` processes, merged) gives the very store one
// process gives; a rerun resumes (nothing redone); a failing worker fails the command with its
// error and leaves the other part resumable; `extract --shard auto` reads each scheduler's
// environment and records it; `train --workers 2` joins into the gates one process trains.
import { describe, it, expect, beforeAll } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readManifest, verifyStore } from '../../src/features/index.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'fastkvzip.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-scale-'));
const env = { ...process.env, FASTKVZIP_CACHE: path.join(tmp, 'cache'), HF_HUB_OFFLINE: '1' };
for (const k of ['SLURM_ARRAY_TASK_ID', 'SLURM_ARRAY_TASK_COUNT', 'SLURM_ARRAY_TASK_MIN', 'SLURM_ARRAY_TASK_MAX', 'JOB_COMPLETION_INDEX', 'RANK', 'WORLD_SIZE', 'FASTKVZIP_SHARD_COUNT']) delete env[k];
// configs/ci.json's reduced default pipeline, smaller still: 3 + 1 contexts
const EXTRACT = ['extract', '--model', path.join(ROOT, 'data/default-model'), '--template', 'fastkvzip-tiny', '--data', 'sotu', '--exclude-docs', path.join(ROOT, 'data/default-model/heldout.json'),
  '--min-doc-tokens', '1500', '--max-doc-tokens', '4000', '--ten-k-count', '3', '--cat-count', '1', '--cat-min-tokens', '4000', '--max-tokens', '10000',
  '--prefill-chunk', '4096', '--score-chunk', '500', '--hidden-dtype', 'bfloat16'];

function fkz(args: string[], extraEnv: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { env: { ...env, ...extraEnv }, encoding: 'utf8', cwd: tmp });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
const shardList = async (dir: string) => (await readManifest(dir)).shards.map((s) => [s.contextId, s.index, s.tokens, s.sha256]);

const single = path.join(tmp, 'single');
beforeAll(() => {
  const r = fkz([...EXTRACT, '--threads', '1', '--out', single, '--quiet']);
  expect(r.code, r.stderr).toBe(0);
});

describe('extract --workers 2 (one host, CPU)', () => {
  const out = path.join(tmp, 'w2');
  it('two processes, merged: the same shards (checksums), totals and identity as one process', async () => {
    // a cache of its own: both workers start with no graphs; exactly one builds them, the other
    // waits for it (or, started later, finds them built) instead of deleting its half-built files
    const r = fkz([...EXTRACT, '--workers', '2', '--threads', '1', '--out', out, '--json'], { FASTKVZIP_CACHE: path.join(tmp, 'cache-workers') });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.match(/building ONNX graphs/g), r.stderr).toHaveLength(1);
    const s = JSON.parse(r.stdout);
    expect(s.workers).toHaveLength(2);
    expect(s.workers.map((w: { part: string }) => w.part)).toEqual(['0/2', '1/2']);
    expect(s.workers.every((w: { contexts: { thisRun: number } }) => w.contexts.thisRun > 0)).toBe(true);
    expect(s.complete).toBe(true);
    expect(r.stderr).toMatch(/\[part 0\/2 CPU\] feature store: about/); // workers' lines, labelled
    const a = await readManifest(single);
    const b = await readManifest(out);
    expect(await shardList(out)).toEqual(await shardList(single));
    expect([b.identityHash, b.totals, b.part, b.complete]).toEqual([a.identityHash, a.totals, null, true]);
    expect((await verifyStore(out)).ok).toBe(true);
    const p1 = await readManifest(path.join(`${out}.parts`, 'part-1-of-2'));
    expect(p1.part).toEqual({ index: 1, count: 2, source: { scheduler: 'flag', vars: { '--shard': '1/2' } }, split: 'balanced' });
  });

  it('a rerun resumes every part (nothing extracted again) and keeps the merge', async () => {
    const before = readFileSync(path.join(out, 'manifest.json'), 'utf8');
    const r = fkz([...EXTRACT, '--workers', '2', '--threads', '1', '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.alreadyMerged).toBe(true);
    expect(s.workers.map((w: { contexts: { thisRun: number } }) => w.contexts.thisRun)).toEqual([0, 0]);
    expect(readFileSync(path.join(out, 'manifest.json'), 'utf8')).toBe(before);
  });

  it('a failing worker fails the command with its error (exit 1); the other part stays resumable; fixed, a rerun completes the same store', async () => {
    const out2 = path.join(tmp, 'fail');
    const bad = path.join(`${out2}.parts`, 'part-1-of-2');
    mkdirSync(bad, { recursive: true });
    writeFileSync(path.join(bad, 'notes.txt'), 'not a store'); // part 1 cannot start here
    const r = fkz([...EXTRACT, '--workers', '2', '--threads', '1', '--out', out2]);
    expect(r.code).toBe(1);
    const last = r.stderr.trim().split('\n').pop()!;
    expect(last).toMatch(/^fastkvzip: part 1\/2 CPU failed: .*part-1-of-2: is not empty \(notes\.txt\).*rerun the same command to resume$/);
    expect(r.stderr).not.toMatch(/internal error/);
    expect(existsSync(path.join(out2, 'manifest.json'))).toBe(false); // nothing merged
    const p0 = path.join(`${out2}.parts`, 'part-0-of-2');
    // stopped or finished, its manifest is there to resume from; stopped during its setup (a
    // loaded machine), it has none yet and nothing to keep
    const m0 = existsSync(path.join(p0, 'manifest.json')) ? await readManifest(p0) : { shards: [] };
    rmSync(path.join(bad, 'notes.txt'));
    const again = fkz([...EXTRACT, '--workers', '2', '--threads', '1', '--out', out2, '--json']);
    expect(again.code, again.stderr).toBe(0);
    const s = JSON.parse(again.stdout);
    // part 0 did not redo what it had finished
    expect(s.workers[0].contexts.done - s.workers[0].contexts.thisRun).toBe(m0.shards.length);
    expect(await shardList(out2)).toEqual(await shardList(single));
  });

  it('SIGTERM to the command (a scheduler stopping the job) stops every worker gracefully (exit 130); a rerun completes the same store', async () => {
    const out3 = path.join(tmp, 'term');
    const child = spawn(process.execPath, [BIN, ...EXTRACT, '--workers', '2', '--threads', '1', '--out', out3], { env, cwd: tmp, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => {
      const t = setInterval(() => {
        try {
          const m = JSON.parse(readFileSync(path.join(`${out3}.parts`, 'part-0-of-2', 'manifest.json'), 'utf8'));
          if (m.shards.length >= 1) {
            clearInterval(t);
            child.kill('SIGTERM');
          }
        } catch {
          // not yet
        }
      }, 20);
      child.on('exit', (c) => {
        clearInterval(t);
        resolve(c);
      });
    });
    expect(code, stderr).toBe(130);
    expect(stderr).toMatch(/SIGTERM: stopping 2 worker\(s\)/);
    expect(existsSync(path.join(out3, 'manifest.json'))).toBe(false);
    const again = fkz([...EXTRACT, '--workers', '2', '--threads', '1', '--out', out3, '--json']);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout).workers[0].contexts.done).toBeGreaterThan(JSON.parse(again.stdout).workers[0].contexts.thisRun);
    expect(await shardList(out3)).toEqual(await shardList(single));
  });

  it('bad combinations are usage errors (exit 2)', () => {
    for (const [args, msg] of [
      [['--workers', '2', '--gpus', '0'], /--gpus and --workers: give one/],
      [['--workers', '2', '--shard', '0/2'], /--shard with --workers/],
      [['--gpus', '0,1', '--device', 'cpu'], /--gpus runs on CUDA/],
      [['--gpus', 'zero'], /"all" or a list of GPU indices/],
      [['--shard', 'auto'], /no scheduler part found/],
      [['--shard-count', '2'], /--shard-count goes with --shard auto/],
    ] as [string[], RegExp][]) {
      const r = fkz([...EXTRACT, ...args, '--out', path.join(tmp, 'never')]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(msg);
    }
    expect(existsSync(path.join(tmp, 'never'))).toBe(false);
  });
});

describe('extract --shard auto, per scheduler', () => {
  const cases: [string, Record<string, string>, string[], string][] = [
    ['Slurm array (1-based: --array=1-2)', { SLURM_ARRAY_TASK_ID: '2', SLURM_ARRAY_TASK_COUNT: '2', SLURM_ARRAY_TASK_MIN: '1', SLURM_ARRAY_TASK_MAX: '2' }, [], 'slurm-array'],
    ['Kubernetes Indexed Job', { JOB_COMPLETION_INDEX: '0' }, ['--shard-count', '2'], 'kubernetes-indexed-job'],
  ];
  const dirs: string[] = [];
  for (const [name, vars, flags, scheduler] of cases) {
    it(`${name}: the part from the environment, recorded in the manifest`, async () => {
      const out = path.join(tmp, `auto-${scheduler}`);
      dirs.push(out);
      const r = fkz([...EXTRACT, '--threads', '1', '--shard', 'auto', ...flags, '--out', out], vars);
      expect(r.code, r.stderr).toBe(0);
      const m = await readManifest(out);
      expect(m.part!.source!.scheduler).toBe(scheduler);
      expect(m.part!.source!.vars).toMatchObject(vars);
    });
  }
  it('the two parts (index 1 from Slurm, 0 from Kubernetes) merge into the one-process store; RANK/WORLD_SIZE disagreeing with Slurm is refused', async () => {
    const r = fkz(['merge-features', ...dirs, '--out', path.join(tmp, 'auto-merged'), '--verify', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).complete).toBe(true);
    expect(await shardList(path.join(tmp, 'auto-merged'))).toEqual(await shardList(single));
    const bad = fkz([...EXTRACT, '--shard', 'auto', '--out', path.join(tmp, 'never2')], { SLURM_ARRAY_TASK_ID: '0', SLURM_ARRAY_TASK_COUNT: '2', RANK: '1', WORLD_SIZE: '2' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/schedulers disagree/);
  });
});

describe('train --workers 2 (layers split over processes)', () => {
  it('joins into the output one train writes, with gates byte-identical to one process with the same layer groups', () => {
    const args = ['train', '--features', single, '--steps', '200', '--batch', '500', '--threads', '1', '--quiet'];
    const one = path.join(tmp, 'train-one');
    const two = path.join(tmp, 'train-two');
    expect(fkz([...args, '--layers-per-group', '2', '--out', one]).code).toBe(0);
    const r = fkz([...args, '--workers', '2', '--out', two, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.workers.map((w: { layers: number[] }) => w.layers)).toEqual([[0, 1], [2, 3]]);
    expect(sha(path.join(two, 'gates.safetensors'))).toBe(sha(path.join(one, 'gates.safetensors')));
    for (const plot of ['loss.svg', 'recall.svg']) expect(sha(path.join(two, plot)), plot).toBe(sha(path.join(one, plot)));
    const a = JSON.parse(readFileSync(path.join(one, 'summary.json'), 'utf8'));
    const b = JSON.parse(readFileSync(path.join(two, 'summary.json'), 'utf8'));
    for (const k of ['identity', 'groups', 'layers', 'mean', 'tokens', 'steps', 'batch', 'options']) expect(b[k], k).toEqual(a[k]);
    const noTime = (f: string) => readFileSync(f, 'utf8').trim().split('\n').map((l) => ({ ...JSON.parse(l), seconds: 0 }));
    expect(noTime(path.join(two, 'log.jsonl'))).toEqual(noTime(path.join(one, 'log.jsonl')));
    // the one-process run on the joined folder finds it finished (same run identity)
    const again = fkz([...args.filter((a) => a !== '--quiet'), '--layers-per-group', '2', '--out', two]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/already finished/);
    // and the joined gates export like any others
    expect(fkz(['export', '--gates', two, '--format', 'pt', '--out', path.join(tmp, 'x')]).code).toBe(0);
  });
});

describe('run --workers 2 (the one-command pipeline, both stages split over processes)', () => {
  // configs/ci.json narrowed to the contexts of EXTRACT (3 + 1) and a short training
  const RUN = ['run', '--config', 'ci', '--set', 'recipe.tenKCount=3', '--set', 'recipe.maxTokens=10000', '--set', 'train.steps=200', '--set', 'train.batch=500', '--quiet'];
  const out = path.join(tmp, 'run-w2');
  it('extracts in parts and trains in layer slices: the store of one process, the gates of one process with the same layer groups', async () => {
    const r = fkz([...RUN, '--workers', '2', '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.extract.workers.map((w: { part: string }) => w.part)).toEqual(['0/2', '1/2']);
    expect(s.extract.contexts).toEqual({ done: 4, thisRun: 4 });
    expect(s.train.workers.map((w: { layers: number[] }) => w.layers)).toEqual([[0, 1], [2, 3]]);
    expect(existsSync(path.join(out, 'features.parts', 'part-1-of-2', 'manifest.json'))).toBe(true);
    expect((await readManifest(path.join(out, 'features.parts', 'part-1-of-2'))).part!.source).toEqual({ scheduler: 'flag', vars: { '--extract-part': '1/2' } });
    expect(await shardList(path.join(out, 'features'))).toEqual(await shardList(single));
    // the run's training settings (configs/default.json + the overrides above), one process, groups of 2
    const one = path.join(tmp, 'run-w2-one-train');
    const t = fkz(['train', '--features', single, '--steps', '200', '--batch', '500', '--lr', '0.2', '--momentum', '0.9', '--seed', '0', '--rank', '16', '--sinks', '16', '--eval-every', '50', '--threads', '1', '--layers-per-group', '2', '--quiet', '--out', one]);
    expect(t.code, t.stderr).toBe(0);
    expect(sha(path.join(out, 'train', 'gates.safetensors'))).toBe(sha(path.join(one, 'gates.safetensors')));
    expect(existsSync(path.join(out, 'export', 'README.md'))).toBe(true);
  });

  it('a rerun redoes nothing (every part resumed, the merge kept) and reports the finished run', () => {
    const before = readFileSync(path.join(out, 'features', 'manifest.json'), 'utf8');
    const gates = sha(path.join(out, 'train', 'gates.safetensors'));
    const r = fkz([...RUN, '--workers', '2', '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).unchanged).toBe(true);
    expect(readFileSync(path.join(out, 'features', 'manifest.json'), 'utf8')).toBe(before);
    expect(sha(path.join(out, 'train', 'gates.safetensors'))).toBe(gates);
  });

  it('--dry-run --workers 2 shows the tokens of each part of the split (they add up to the plan\'s)', () => {
    const r = fkz([...RUN, '--workers', '2', '--dry-run', '--json', '--out', path.join(tmp, 'never-run')]);
    expect(r.code, r.stderr).toBe(0);
    const plan = JSON.parse(r.stdout);
    expect(plan.partTokens).toHaveLength(2);
    expect(plan.partTokens[0] + plan.partTokens[1]).toBe(plan.tokens);
    const text = fkz([...RUN, '--workers', '2', '--dry-run', '--out', path.join(tmp, 'never-run')]);
    expect(text.stdout).toContain(`workers: 2 for extraction (parts of ${plan.partTokens.map((t: number) => t.toLocaleString('en-US')).join(' / ')} tokens), 2 for training`);
    expect(existsSync(path.join(tmp, 'never-run'))).toBe(false);
  });

  it('bad combinations are usage errors (exit 2), before anything is written', () => {
    for (const [args, msg] of [
      [['--workers', '2', '--gpus', '0'], /--gpus and --workers: give one/],
      [['--gpus', '0,1', '--device', 'cpu'], /--gpus runs on CUDA/],
      [['--workers', '0'], /--workers must be positive/],
      [['--workers', '2', '--device', 'webgpu'], /--workers runs processes on cpu or cuda/],
    ] as [string[], RegExp][]) {
      const r = fkz([...RUN, ...args, '--out', path.join(tmp, 'never-run')]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(msg);
    }
    expect(existsSync(path.join(tmp, 'never-run'))).toBe(false);
  });
});
