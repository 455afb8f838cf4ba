// One fetch per hub repo at a time into a shared cache. @huggingface/hub writes each file to
// blobs/<etag>.incomplete and then renames it, so two processes fetching the same file at once
// (the workers of `extract --gpus`, Slurm array tasks or Kubernetes pods sharing one HF_HOME)
// would write one temp file together. The first process fetches; the others wait, then find the
// files there. The lock is proper-lockfile's: a directory made atomically whose mtime its holder
// refreshes, so it works on network filesystems across hosts, and a holder that died (killed,
// its host gone) stops refreshing it and is taken over once the lock is HUB_LOCK_STALE_MS old.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { UserError, fileError } from '../util/errors.js';
import { note } from './progress.js';
import { repoCacheFolder, type HubRepo } from './repo-cache.js';

/** A lock not refreshed for this long belongs to a dead process and is taken over (the holder refreshes it every half of it). */
export const HUB_LOCK_STALE_MS = 10_000;
/** How often a waiting process tries the lock again. */
const HUB_LOCK_POLL_MS = 500;

/** <cache>/.locks/<repo folder>/fastkvzip.lock, beside Python huggingface_hub's own per-file locks. */
export function hubLockPath(cacheDir: string, repo: HubRepo): string {
  return path.join(cacheDir, '.locks', path.basename(repoCacheFolder(cacheDir, repo)), 'fastkvzip.lock');
}

/** Runs `fetch` holding the repo's cache lock (waiting while another live process holds it). */
export async function withHubLock<T>(cacheDir: string, repo: HubRepo, label: string, fetch: () => Promise<T>): Promise<T> {
  // loaded here, not at startup: it hooks the process's exit signals (to drop held locks)
  const { default: lockfile } = await import('proper-lockfile');
  const file = hubLockPath(cacheDir, repo);
  await fs.mkdir(path.dirname(file), { recursive: true });
  let lost: Error | null = null;
  let told = false;
  let release: () => Promise<void>;
  for (;;) {
    try {
      release = await lockfile.lock(repoCacheFolder(cacheDir, repo), {
        lockfilePath: file,
        realpath: false,
        stale: HUB_LOCK_STALE_MS,
        retries: 0,
        onCompromised: (e) => {
          lost = e;
        },
      });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ELOCKED') throw fileError(file, `cannot take the hub cache lock: ${(e as Error).message}`);
      if (!told) note(`waiting for another process fetching ${label} into ${cacheDir} (lock ${file}; taken over if its holder stops for ${HUB_LOCK_STALE_MS / 1000} s)`);
      told = true;
      await new Promise((r) => setTimeout(r, HUB_LOCK_POLL_MS));
    }
  }
  try {
    const result = await fetch();
    if (lost) throw new UserError(`${label}: another process took over the hub cache lock ${file} while this one was fetching (${(lost as Error).message}); rerun`);
    return result;
  } finally {
    await release().catch(() => undefined); // already released when it was lost
  }
}
