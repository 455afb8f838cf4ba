// Python huggingface_hub's cache layout, which @huggingface/hub's downloadFileToCacheDir also
// writes: <cache>/<type>s--<org>--<name>/{blobs/<etag>, snapshots/<commit>/<file> -> ../../blobs/<etag>,
// refs/<revision> (a file holding the commit sha)}.
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';

export type RepoType = 'model' | 'dataset';

export interface HubRepo {
  type: RepoType;
  /** "org/name" */
  name: string;
}

export const COMMIT_SHA = /^[0-9a-f]{40}$/;

export function repoCacheFolder(cacheDir: string, repo: HubRepo): string {
  return path.join(cacheDir, [`${repo.type}s`, ...repo.name.split('/')].join('--'));
}

export function snapshotDir(cacheDir: string, repo: HubRepo, commit: string): string {
  return path.join(repoCacheFolder(cacheDir, repo), 'snapshots', commit);
}

/** The commit a revision points to in the cache: the revision itself when it is a sha, else refs/<revision>. */
export function cachedCommit(cacheDir: string, repo: HubRepo, revision: string): string | null {
  if (COMMIT_SHA.test(revision)) return revision;
  const ref = path.join(repoCacheFolder(cacheDir, repo), 'refs', revision);
  if (!existsSync(ref)) return null;
  const sha = readFileSync(ref, 'utf8').trim();
  return COMMIT_SHA.test(sha) ? sha : null;
}

/** Like Python, refs are written only for symbolic revisions (branch / tag names), without a newline. */
export async function writeRef(cacheDir: string, repo: HubRepo, revision: string, commit: string): Promise<void> {
  if (revision === commit) return;
  const ref = path.join(repoCacheFolder(cacheDir, repo), 'refs', revision);
  if (existsSync(ref) && readFileSync(ref, 'utf8').trim() === commit) return;
  await writeFileAtomic(ref, commit);
}
