// One file of a Hub dataset repo (e.g. a FineWeb-Edu parquet shard), cached like Python does
// under datasets--org--name.
import * as path from 'node:path';
import { hubEnv } from './env.js';
import { fetchSnapshot } from './fetch-snapshot.js';

export interface ResolveDatasetFileOptions {
  revision?: string;
  env?: NodeJS.ProcessEnv;
}

export interface ResolvedDatasetFile {
  /** local path of the file (a symlink into the cache's blobs) */
  path: string;
  repoId: string;
  revision: string;
  commit: string;
}

export async function resolveDatasetFile(repo: string, file: string, opts: ResolveDatasetFileOptions = {}): Promise<ResolvedDatasetFile> {
  const revision = opts.revision ?? 'main';
  const { dir, commit } = await fetchSnapshot({
    repo: { type: 'dataset', name: repo },
    revision,
    env: hubEnv(opts.env),
    required: [file],
    optional: [],
    weights: false,
  });
  return { path: path.join(dir, file), repoId: repo, revision, commit };
}
