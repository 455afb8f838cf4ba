// A real single-node Slurm for tests: Debian's slurm-wlm + munge (installed by .ci/run, best
// effort), started here in a private folder with its own munge key, socket and ports, and
// stopped again by the process ids it wrote. `startSlurm` returns why it could not start
// instead of throwing, so a test can skip with that reason.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';

export interface Slurm {
  /** environment for sbatch/squeue/scontrol (SLURM_CONF) */
  env: Record<string, string>;
  dir: string;
  stop(): void;
}

const which = (cmd: string) => ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].map((d) => path.join(d, cmd)).find((p) => existsSync(p)) ?? null;

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, timeout: 30_000 });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? r.error.message : ''}` };
}

const killPidFile = (file: string) => {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    if (pid > 0) process.kill(pid, 'SIGTERM');
  } catch {
    // not running
  }
};

export function startSlurm(dir: string): Slurm | { skip: string } {
  const bins = { munged: which('munged'), slurmctld: which('slurmctld'), slurmd: which('slurmd'), sbatch: which('sbatch') };
  const missing = Object.entries(bins).filter(([, p]) => !p).map(([n]) => n);
  if (missing.length) return { skip: `Slurm is not installed (${missing.join(', ')} missing; apt-get install slurm-wlm munge, as .ci/run does)` };
  if (process.getuid?.() !== 0) return { skip: 'starting slurmctld/slurmd/munged for the test needs root' };
  for (const d of ['state', 'spool', 'log']) mkdirSync(path.join(dir, d), { recursive: true });
  const key = path.join(dir, 'munge.key');
  writeFileSync(key, randomBytes(1024));
  chmodSync(key, 0o600);
  const sock = path.join(dir, 'munge.sock');
  const stopAll = () => {
    killPidFile(path.join(dir, 'slurmd.pid'));
    killPidFile(path.join(dir, 'slurmctld.pid'));
    killPidFile(path.join(dir, 'munged.pid'));
  };
  const m = run(bins.munged!, ['--force', `--socket=${sock}`, `--key-file=${key}`, `--pid-file=${path.join(dir, 'munged.pid')}`, `--log-file=${path.join(dir, 'log', 'munged.log')}`, `--seed-file=${path.join(dir, 'munge.seed')}`]);
  if (!m.ok) return { skip: `munged did not start: ${m.out.trim()}` };
  const host = os.hostname().split('.')[0]!;
  const port = 20000 + Math.floor(Math.random() * 20000); // two test runs at once must not share ports
  const conf = path.join(dir, 'slurm.conf');
  writeFileSync(
    conf,
    [
      'ClusterName=fkztest',
      `SlurmctldHost=${host}`,
      'SlurmUser=root',
      'SlurmdUser=root',
      'AuthType=auth/munge',
      'CredType=cred/munge',
      `AuthInfo=socket=${sock}`,
      `SlurmctldPort=${port}`,
      `SlurmdPort=${port + 1}`,
      `StateSaveLocation=${path.join(dir, 'state')}`,
      `SlurmdSpoolDir=${path.join(dir, 'spool')}`,
      `SlurmctldPidFile=${path.join(dir, 'slurmctld.pid')}`,
      `SlurmdPidFile=${path.join(dir, 'slurmd.pid')}`,
      `SlurmctldLogFile=${path.join(dir, 'log', 'slurmctld.log')}`,
      `SlurmdLogFile=${path.join(dir, 'log', 'slurmd.log')}`,
      'ProctrackType=proctrack/linuxproc',
      'TaskPlugin=task/none',
      'JobAcctGatherType=jobacct_gather/none',
      'AccountingStorageType=accounting_storage/none',
      'SchedulerType=sched/backfill',
      'SelectType=select/cons_tres',
      'SelectTypeParameters=CR_Core',
      'MpiDefault=none',
      'ReturnToService=2',
      'MinJobAge=600',
      `NodeName=${host} CPUs=${os.availableParallelism()} State=UNKNOWN`,
      `PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP`,
      '',
    ].join('\n'),
  );
  const env = { SLURM_CONF: conf };
  const penv = { ...process.env, ...env };
  for (const daemon of ['slurmctld', 'slurmd'] as const) {
    const r = run(bins[daemon]!, ['-f', conf], penv);
    if (!r.ok) {
      stopAll();
      return { skip: `${daemon} did not start: ${r.out.trim()}` };
    }
  }
  // the node must come up idle before jobs can run
  const until = Date.now() + 30_000;
  let state = '';
  while (Date.now() < until) {
    state = run('sinfo', ['-h', '-o', '%t'], penv).out.trim();
    if (state === 'idle') break;
    spawnSync('sleep', ['0.5']);
  }
  if (state !== 'idle') {
    const log = existsSync(path.join(dir, 'log', 'slurmd.log')) ? readFileSync(path.join(dir, 'log', 'slurmd.log'), 'utf8').split('\n').slice(-5).join(' | ') : '';
    stopAll();
    return { skip: `the Slurm node did not come up (sinfo: ${JSON.stringify(state)}; slurmd log: ${log})` };
  }
  return { env, dir, stop: stopAll };
}

/** The state of a job (COMPLETED, FAILED, …) once it has ended, or null on timeout. */
export async function waitForJob(job: string, env: Record<string, string>, timeoutMs: number): Promise<string | null> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const r = spawnSync('scontrol', ['show', 'job', job, '-o'], { encoding: 'utf8', env: { ...process.env, ...env } });
    const state = /JobState=(\S+)/.exec(r.stdout ?? '')?.[1];
    if (state && !['PENDING', 'RUNNING', 'CONFIGURING', 'COMPLETING'].includes(state)) return state;
    await new Promise((res) => setTimeout(res, 1000));
  }
  return null;
}
