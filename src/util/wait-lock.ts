// A lock file that waits: for work several processes may start at once on a shared folder (the
// ONNX graph cache of `extract --gpus`, of Slurm array tasks, of Kubernetes pods), where the
// second process must wait for the first one's result rather than fail or clobber it.
// Synchronous, because the callers are. A holder on this host that died is detected by its pid;
// one on another host is waited for (the message names the file to delete if that host died).
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import * as os from 'node:os';

/** How often a waiting process looks at the lock again. */
const LOCK_POLL_MS = 250;

interface Holder {
  pid: number;
  host: string;
  since: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** Takes `file` (waiting while another live process holds it); returns the release function. */
export function waitForLockSync(file: string, what: string, log?: (line: string) => void): () => void {
  const mine: Holder = { pid: process.pid, host: os.hostname(), since: new Date().toISOString() };
  let told = false;
  for (;;) {
    try {
      const fd = openSync(file, 'wx');
      try {
        writeSync(fd, JSON.stringify(mine) + '\n');
      } finally {
        closeSync(fd);
      }
      return () => rmSync(file, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let holder: Holder | null = null;
    try {
      holder = JSON.parse(readFileSync(file, 'utf8')) as Holder;
    } catch {
      holder = null; // being written right now: look again
    }
    if (holder && holder.host === mine.host && !alive(holder.pid)) {
      rmSync(file, { force: true }); // left by a process of this host that died
      continue;
    }
    if (holder && !told) {
      log?.(`waiting for process ${holder.pid} on ${holder.host} (since ${holder.since}) to finish ${what} (delete ${file} if that process is gone)`);
      told = true;
    }
    sleepSync(LOCK_POLL_MS);
  }
}
