// `--gpus all|0,1,…` and `--workers n`: which devices the worker processes of one host run on.
// Counting GPUs needs no GPU library: CUDA_VISIBLE_DEVICES when set (what a scheduler hands a
// job: Slurm's --gres, Kubernetes' device plugin), else the lines of `nvidia-smi -L`.
import { spawnSync } from 'node:child_process';
import { UsageError } from '../util/errors.js';

/** One worker process: the device it runs on (null device id: the CPU). */
export interface WorkerSlot {
  device: 'cpu' | 'cuda';
  /** CUDA device index as this process sees it (after CUDA_VISIBLE_DEVICES renumbering) */
  deviceId: number | null;
}

/** What listed the GPUs, for messages and summaries. */
export interface GpuCount {
  count: number;
  from: 'CUDA_VISIBLE_DEVICES' | 'nvidia-smi -L';
}

/** Seconds `nvidia-smi -L` may take before it counts as not working. */
const NVIDIA_SMI_TIMEOUT_S = 20;

export type RunCommand = (cmd: string, args: string[]) => { status: number | null; stdout: string; error?: Error };

const runForReal: RunCommand = (cmd, args) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: NVIDIA_SMI_TIMEOUT_S * 1000 });
  return { status: r.status, stdout: r.stdout ?? '', error: r.error };
};

/** GPUs this process may use: CUDA_VISIBLE_DEVICES when set, else `nvidia-smi -L`; a clear error when neither works. */
export function countGpus(env: Record<string, string | undefined>, run: RunCommand = runForReal): GpuCount {
  const visible = env.CUDA_VISIBLE_DEVICES;
  if (visible !== undefined) {
    // CUDA stops at the first invalid entry ("-1", "" or "NoDevFiles" hide every GPU)
    const entries = visible.split(',').map((s) => s.trim());
    let n = 0;
    while (n < entries.length && /^(\d+|GPU-[0-9a-fA-F-]+|MIG-[\w/-]+)$/.test(entries[n]!) && entries[n] !== '-1') n++;
    if (n === 0) throw new UsageError(`--gpus all: CUDA_VISIBLE_DEVICES=${JSON.stringify(visible)} hides every GPU`);
    return { count: n, from: 'CUDA_VISIBLE_DEVICES' };
  }
  const r = run('nvidia-smi', ['-L']);
  if (r.error || r.status !== 0) {
    const why = r.error ? ((r.error as NodeJS.ErrnoException).code === 'ENOENT' ? 'nvidia-smi is not installed' : r.error.message) : `nvidia-smi -L exited with ${r.status}`;
    throw new UsageError(`--gpus all: cannot count the GPUs (CUDA_VISIBLE_DEVICES is not set and ${why}); list them (--gpus 0,1) or set CUDA_VISIBLE_DEVICES`);
  }
  const n = r.stdout.split('\n').filter((l) => /^GPU \d+:/.test(l.trim())).length;
  if (n === 0) throw new UsageError('--gpus all: nvidia-smi -L lists no GPU');
  return { count: n, from: 'nvidia-smi -L' };
}

/** Worker slots of `--gpus all|i,j,…` (a GPU may be listed twice: two workers share it). */
export function parseGpus(spec: string, env: Record<string, string | undefined> = process.env, run?: RunCommand): WorkerSlot[] {
  const s = spec.trim();
  if (s === 'all') {
    const { count } = countGpus(env, run);
    return Array.from({ length: count }, (_, i) => ({ device: 'cuda' as const, deviceId: i }));
  }
  const items = s.split(',').map((x) => x.trim());
  if (!items.length || items.some((x) => !/^\d+$/.test(x))) throw new UsageError(`--gpus must be "all" or a list of GPU indices like 0,1,2 (got "${spec}")`);
  return items.map((x) => ({ device: 'cuda' as const, deviceId: Number(x) }));
}

/** `--workers n` on the device of the command line (cpu, or one GPU shared by n processes). */
export function workerSlots(n: number, device: string, deviceId: number): WorkerSlot[] {
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--workers must be a positive integer (got ${n})`);
  if (device !== 'cpu' && device !== 'cuda') throw new UsageError(`--workers runs processes on cpu or cuda, not ${device}`);
  return Array.from({ length: n }, () => (device === 'cuda' ? { device: 'cuda' as const, deviceId } : { device: 'cpu' as const, deviceId: null }));
}

export function describeSlot(s: WorkerSlot): string {
  return s.device === 'cuda' ? `GPU ${s.deviceId}` : 'CPU';
}
