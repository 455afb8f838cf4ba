// Large host buffers that are freed and allocated again every context must not go back to the
// kernel in between. onnxruntime-node allocates each run's outputs with plain malloc and copies
// them into the caller's buffers (preallocated outputs do not avoid that allocation); glibc serves
// blocks above 32 MB with fresh mmap pages and unmaps them on free, so every run page-faults its
// whole output again: 5.9 GB per 20k-token context of an 8B model, ~1.4 M faults (a 512 MB
// output costs 1.8 s of faults on the 2-core VM, 0.11 s once the pages are reused). glibc reads
// its malloc tunables only at process start, so the command re-runs itself once with them set.
// The first touch of those blocks still faults; transparent huge pages (glibc.malloc.hugetlb=1,
// glibc >= 2.35; older glibc ignores it) make that 512 times fewer faults: the same 512 MB
// output's first two runs took 1.05 s instead of 1.8-2.6 s on the VM.
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { SilentExit } from './errors.js';

/** glibc malloc: never mmap, never trim, so freed output blocks are reused in place; huge pages. */
export const REUSE_TUNABLES = 'glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4611686018427387904:glibc.malloc.hugetlb=1';
const MARK = 'FASTKVZIP_HOST_MALLOC_PARENT';

/**
 * FASTKVZIP_HOST_MALLOC: `auto` (default: when `wanted`), `on` (always), `off` (never).
 * Whether this process should re-run itself with REUSE_TUNABLES.
 */
export function shouldRelaunch(wanted: boolean, env: NodeJS.ProcessEnv = process.env, platform = process.platform): boolean {
  if (platform !== 'linux' || env[MARK]) return false;
  const mode = env.FASTKVZIP_HOST_MALLOC ?? 'auto';
  return mode === 'on' || (mode !== 'off' && wanted);
}

/** The environment of the re-run: our tunables after any the user set. */
export function relaunchEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const tunables = env.GLIBC_TUNABLES ? `${env.GLIBC_TUNABLES}:${REUSE_TUNABLES}` : REUSE_TUNABLES;
  return { ...env, GLIBC_TUNABLES: tunables, [MARK]: String(process.pid) };
}

/**
 * Re-run this command in a child process with REUSE_TUNABLES and wait for it: signals are passed
 * on, and the exit code (or signal) becomes ours. Resolves to the child's exit code.
 */
export function relaunch(): Promise<number> {
  // its own process group: a terminal's Ctrl-C reaches the child once, through us, not twice
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: relaunchEnv(), detached: true });
  const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
  const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as NodeJS.Signals[]).map((sig) => [sig, forward(sig)] as const);
  for (const [sig, h] of handlers) process.on(sig, h);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      for (const [sig, h] of handlers) process.off(sig, h);
      resolve(code ?? 128 + (signal ? constants.signals[signal] : 0));
    });
  });
}

/** Whether this process runs with REUSE_TUNABLES. */
export function hostMallocReuses(env: NodeJS.ProcessEnv = process.env): boolean {
  return (env.GLIBC_TUNABLES ?? '').includes(REUSE_TUNABLES);
}

/** In the re-run child: exit when the parent is gone (killed with SIGKILL), not run on orphaned. */
export function exitWithParent(env: NodeJS.ProcessEnv = process.env): void {
  const parent = Number(env[MARK]);
  if (!parent) return;
  setInterval(() => {
    if (process.ppid !== parent) process.exit(137);
  }, 500).unref();
}

/**
 * First thing in a command whose runs return GBs of host outputs (`wanted`: on CUDA): re-run with
 * REUSE_TUNABLES when shouldRelaunch says so (throws SilentExit with the re-run's exit code);
 * in the re-run itself, follow the parent.
 */
export async function reuseFreedHostMemory(wanted: boolean): Promise<void> {
  if (shouldRelaunch(wanted)) throw new SilentExit(await relaunch());
  exitWithParent();
}
