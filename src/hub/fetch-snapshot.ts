// Shared core of resolveModel / resolveDatasetFile: pin a revision to a commit, fetch the wanted
// files of that commit into the Python-compatible cache, and fall back to the cache when offline
// or when the network fails.
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { datasetInfo, downloadFileToCacheDir, modelInfo, pathsInfo } from '@huggingface/hub';
import { UserError } from '../util/errors.js';
import type { HubEnv } from './env.js';
import { credentials, hubError, isNetworkError, networkReason } from './hub-errors.js';
import { formatBytes, note } from './progress.js';
import { withQuietConsole } from './quiet-console.js';
import { withHubLock } from './cache-lock.js';
import { cachedCommit, repoCacheFolder, snapshotDir, writeRef, type HubRepo } from './repo-cache.js';

const SINGLE = 'model.safetensors';
const INDEX = 'model.safetensors.index.json';

export interface SnapshotRequest {
  repo: HubRepo;
  revision: string;
  env: HubEnv;
  /** files that must exist in the repo */
  required: string[];
  /** files fetched when the repo has them */
  optional: string[];
  /** also fetch model.safetensors, or model.safetensors.index.json and every shard it lists */
  weights: boolean;
}

export interface Snapshot {
  dir: string;
  commit: string;
}

export function repoLabel(repo: HubRepo): string {
  return repo.type === 'dataset' ? `dataset ${repo.name}` : repo.name;
}

function indexShards(indexFile: string): string[] {
  const map = JSON.parse(readFileSync(indexFile, 'utf8'))?.weight_map;
  if (!map || typeof map !== 'object') throw new UserError(`${indexFile}: no "weight_map" object`);
  const shards = [...new Set(Object.values(map as Record<string, unknown>))];
  for (const s of shards) {
    if (typeof s !== 'string' || s === '' || path.isAbsolute(s) || s.split(/[\\/]/).includes('..')) {
      throw new UserError(`${indexFile}: weight_map names a shard outside the repo: ${JSON.stringify(s)}`);
    }
  }
  return shards as string[];
}

/** What a snapshot folder still lacks for this request (empty when complete). */
export function missingFromSnapshot(dir: string, req: Pick<SnapshotRequest, 'required' | 'weights'>): string[] {
  const missing = req.required.filter((f) => !existsSync(path.join(dir, f)));
  if (req.weights) {
    if (existsSync(path.join(dir, SINGLE))) return missing;
    if (!existsSync(path.join(dir, INDEX))) return [...missing, `${SINGLE} (or ${INDEX})`];
    try {
      missing.push(...indexShards(path.join(dir, INDEX)).filter((s) => !existsSync(path.join(dir, s))));
    } catch {
      missing.push(`${INDEX} (unreadable)`);
    }
  }
  return missing;
}

function fromCache(req: SnapshotRequest, reason: string, warn: boolean): Snapshot {
  const label = repoLabel(req.repo);
  const commit = cachedCommit(req.env.cacheDir, req.repo, req.revision);
  if (!commit) {
    throw new UserError(`${label}: ${reason}, and revision "${req.revision}" is not in the cache (${repoCacheFolder(req.env.cacheDir, req.repo)})`);
  }
  const dir = snapshotDir(req.env.cacheDir, req.repo, commit);
  const missing = missingFromSnapshot(dir, req);
  if (missing.length > 0) throw new UserError(`${label}: ${reason}, and the cached snapshot ${dir} lacks ${missing.join(', ')}`);
  if (warn) note(`${reason}; using the cached ${label}@${req.revision} (commit ${commit.slice(0, 12)})`);
  return { dir, commit };
}

async function resolveCommit(req: SnapshotRequest): Promise<string> {
  const common = { name: req.repo.name, revision: req.revision, hubUrl: req.env.endpoint, ...credentials(req.env) };
  const info = req.repo.type === 'model' ? await modelInfo({ ...common, additionalFields: ['sha'] }) : await datasetInfo({ ...common, additionalFields: ['sha'] });
  const sha = (info as { sha?: unknown }).sha;
  if (typeof sha !== 'string' || !/^[0-9a-f]{40}$/.test(sha)) throw new UserError(`${repoLabel(req.repo)}: the Hub did not return a commit for revision "${req.revision}"`);
  return sha;
}

/** Which of `paths` exist at `commit`, with their sizes. */
async function listPaths(req: SnapshotRequest, commit: string, paths: string[]): Promise<Map<string, number>> {
  const infos = await pathsInfo({ repo: req.repo, paths, revision: commit, hubUrl: req.env.endpoint, ...credentials(req.env) });
  return new Map(infos.filter((i) => i.type === 'file').map((i) => [i.path, i.size]));
}

async function downloadOne(req: SnapshotRequest, commit: string, file: string, size: number | undefined): Promise<void> {
  if (existsSync(path.join(snapshotDir(req.env.cacheDir, req.repo, commit), file))) return;
  note(`downloading ${repoLabel(req.repo)} ${file}${size === undefined ? '' : ` (${formatBytes(size)})`}`);
  await withQuietConsole(() =>
    downloadFileToCacheDir({
      repo: req.repo,
      path: file,
      revision: commit,
      hubUrl: req.env.endpoint,
      cacheDir: req.env.cacheDir,
      ...credentials(req.env),
    }),
  );
}

async function downloadAll(req: SnapshotRequest, commit: string): Promise<void> {
  const label = repoLabel(req.repo);
  const wanted = [...req.required, ...req.optional, ...(req.weights ? [SINGLE, INDEX] : [])];
  const listing = await listPaths(req, commit, wanted);
  const absent = req.required.filter((f) => !listing.has(f));
  if (absent.length > 0) throw new UserError(`${label}: revision "${req.revision}" has no ${absent.join(', ')}`);
  const files = [...req.required, ...req.optional].filter((f) => listing.has(f));
  for (const f of files) await downloadOne(req, commit, f, listing.get(f));
  if (!req.weights) return;
  if (listing.has(SINGLE)) {
    await downloadOne(req, commit, SINGLE, listing.get(SINGLE));
    return;
  }
  if (!listing.has(INDEX)) {
    throw new UserError(`${label}: revision "${req.revision}" has no safetensors weights (${SINGLE} or ${INDEX}); other checkpoint formats are not supported`);
  }
  await downloadOne(req, commit, INDEX, listing.get(INDEX));
  const shards = indexShards(path.join(snapshotDir(req.env.cacheDir, req.repo, commit), INDEX));
  const shardListing = await listPaths(req, commit, shards);
  const lost = shards.filter((s) => !shardListing.has(s));
  if (lost.length > 0) throw new UserError(`${label}: ${INDEX} lists ${lost.join(', ')}, which revision "${req.revision}" does not have`);
  for (const s of shards) await downloadOne(req, commit, s, shardListing.get(s));
}

export async function fetchSnapshot(req: SnapshotRequest): Promise<Snapshot> {
  const label = repoLabel(req.repo);
  if (req.env.offline) return fromCache(req, 'HF_HUB_OFFLINE is set', false);
  let commit: string;
  try {
    commit = await resolveCommit(req);
  } catch (e) {
    if (isNetworkError(e)) return fromCache(req, networkReason(e, req.env), true);
    throw hubError(e, label, req.env);
  }
  await writeRef(req.env.cacheDir, req.repo, req.revision, commit);
  const dir = snapshotDir(req.env.cacheDir, req.repo, commit);
  if (missingFromSnapshot(dir, req).length === 0) return { dir, commit };
  try {
    await withHubLock(req.env.cacheDir, req.repo, label, async () => {
      // a process that held the lock before this one may have fetched it all
      if (missingFromSnapshot(dir, req).length > 0) await downloadAll(req, commit);
    });
  } catch (e) {
    if (isNetworkError(e)) return fromCache(req, networkReason(e, req.env), true);
    throw hubError(e, label, req.env);
  }
  const missing = missingFromSnapshot(dir, req);
  if (missing.length > 0) throw new UserError(`${label}: downloaded, but ${dir} still lacks ${missing.join(', ')}`);
  return { dir, commit };
}
