// The shipped Slurm templates (examples/slurm/), run as shipped on a real single-node Slurm
// (slurmctld + slurmd + munge, started by test/helpers/slurm.ts): submit.sh submits the
// extraction job array (2 tasks, `extract --shard auto`) and the dependent merge -> train
// (--workers 2) -> export job, on CPU with the embedded default model and CI's reduced budget
// (configs/ci.json). The merged store must equal a one-process store (same shard checksums),
// and the exported gates must equal CI's reference (.ci/expected-gates.pt) within its tolerance.
// Skipped, saying why, where Slurm is not installed or cannot start.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readManifest } from '../../src/features/index.js';
import { startSlurm, waitForJob, type Slurm } from '../helpers/slurm.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'fastkvzip.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-slurm-'));
const MODEL = path.join(ROOT, 'data/default-model');
// configs/ci.json as extract flags (the reduced default pipeline)
const RECIPE = `--template fastkvzip-tiny --data sotu --exclude-docs ${path.join(MODEL, 'heldout.json')} --min-doc-tokens 1500 --max-doc-tokens 4000 --ten-k-count 4 --cat-count 1 --cat-min-tokens 4000 --max-tokens 15000 --prefill-chunk 4096 --score-chunk 500 --hidden-dtype bfloat16 --threads 1`;
const base = { ...process.env, HF_HUB_OFFLINE: '1', FASTKVZIP_CACHE: path.join(tmp, 'cache') };
for (const k of ['SLURM_ARRAY_TASK_ID', 'SLURM_ARRAY_TASK_COUNT', 'SLURM_JOB_ID', 'JOB_COMPLETION_INDEX', 'RANK', 'WORLD_SIZE']) delete base[k];

let slurm: Slurm | null = null;
let skip = '';
beforeAll(() => {
  const s = startSlurm(path.join(tmp, 'slurm'));
  if ('skip' in s) {
    skip = s.skip;
    console.warn(`skipping the Slurm test: ${s.skip}`);
  } else slurm = s;
});
afterAll(() => slurm?.stop());

describe('examples/slurm on a real single-node Slurm (CPU)', () => {
  it('submit.sh: a 2-task extract array, then merge -> train -> export; the merged store equals one process\'s, the gates equal CI\'s reference', async (ctx) => {
    if (!slurm) return ctx.skip(skip);
    const work = path.join(tmp, 'work');
    const env = {
      ...base,
      ...slurm.env,
      FKZ_WORK: work,
      FKZ_MODEL: MODEL,
      FKZ_PARTS: '2',
      FKZ_DEVICE: 'cpu',
      FKZ_GPUS_PER_TASK: '0',
      FKZ_CPUS_PER_TASK: '1',
      FKZ_MEM: '',
      FKZ_TIME: '00:20:00',
      FKZ_FINISH_GPUS: '0',
      FKZ_FINISH_CPUS: String(Math.min(2, os.availableParallelism())),
      FKZ_EXTRACT_ARGS: RECIPE,
      FKZ_TRAIN_ARGS: '--steps 300 --threads 1',
      FKZ_TRAIN_SCALE: '--workers 2',
      FKZ_EXPORT_FORMATS: 'pt',
      FASTKVZIP: `${process.execPath} ${BIN}`,
    };
    const sub = spawnSync('bash', [path.join(ROOT, 'examples/slurm/submit.sh')], { env, encoding: 'utf8', cwd: tmp });
    expect(sub.status, sub.stderr).toBe(0);
    const [array, finish] = readFileSync(path.join(work, 'logs', 'jobs'), 'utf8').trim().split(' ');
    const state = await waitForJob(finish!, slurm.env, 540_000);
    const logs = () => spawnSync('sh', ['-c', `tail -n 20 ${path.join(work, 'logs')}/*.out`], { encoding: 'utf8' }).stdout;
    expect(state, logs()).toBe('COMPLETED');

    // each array task took its part from Slurm's environment
    for (const id of [0, 1]) {
      const m = await readManifest(path.join(work, 'parts', `part-${id}`));
      expect(m.part).toMatchObject({ index: id, count: 2, source: { scheduler: 'slurm-array', vars: { SLURM_ARRAY_TASK_ID: String(id), SLURM_ARRAY_TASK_COUNT: '2', SLURM_ARRAY_JOB_ID: array } } });
    }
    // the merged store is the one-process store
    const single = path.join(tmp, 'single');
    const r = spawnSync(process.execPath, [BIN, 'extract', '--model', MODEL, ...RECIPE.split(' '), '--out', single, '--quiet'], { env: base, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const a = await readManifest(single);
    const b = await readManifest(path.join(work, 'features'));
    expect(b.shards.map((s) => [s.contextId, s.sha256])).toEqual(a.shards.map((s) => [s.contextId, s.sha256]));
    expect([b.identityHash, b.totals, b.complete]).toEqual([a.identityHash, a.totals, true]);
    // train ran as two workers, and the exported gates are CI's reference pipeline's
    expect(JSON.parse(readFileSync(path.join(work, 'train', 'summary.json'), 'utf8')).groups).toEqual([[0, 1], [2, 3]]);
    const pt = path.join(work, 'export', 'default-model', 'q2_dim16_sink16.pt');
    expect(existsSync(pt)).toBe(true);
    const cmp = spawnSync(process.execPath, [path.join(ROOT, '.ci/compare-gates.mjs'), pt, path.join(ROOT, '.ci/expected-gates.pt')], { encoding: 'utf8' });
    expect(cmp.status, cmp.stdout + cmp.stderr).toBe(0);
  }, 600_000);
});
