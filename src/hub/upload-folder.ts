// Push a local folder to a Hub model repo (creating the repo when missing), as one commit.
import { readdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { commit, createRepo, HubApiError, type CommitOperation } from '@huggingface/hub';
import { UserError, fileError } from '../util/errors.js';
import { hubEnv, type HubEnv } from './env.js';
import { credentials, hubError } from './hub-errors.js';
import { formatBytes, note } from './progress.js';

export interface UploadFolderOptions {
  env?: NodeJS.ProcessEnv;
  commitMessage?: string;
  /** visibility when the repo is created (an existing repo keeps its own) */
  private?: boolean;
}

export interface UploadResult {
  commit: string;
  url: string;
}

/** Leftovers that must not be published: VCS folders, caches, our atomic-write temp files. */
function skipped(name: string): boolean {
  return name === '.git' || name === '.cache' || /^\..+\.tmp-\d+-\d+$/.test(name);
}

function listFiles(dir: string, rel = ''): { rel: string; abs: string; size: number }[] {
  const out: { rel: string; abs: string; size: number }[] = [];
  for (const entry of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    if (skipped(entry.name)) continue;
    const r = rel ? `${rel}/${entry.name}` : entry.name;
    const abs = path.join(dir, r);
    const st = statSync(abs); // follows symlinks, e.g. a folder inside the HF cache
    if (st.isDirectory()) out.push(...listFiles(dir, r));
    else if (st.isFile()) out.push({ rel: r, abs, size: st.size });
  }
  return out;
}

export async function uploadFolder(repo: string, dir: string, opts: UploadFolderOptions = {}): Promise<UploadResult> {
  const env = hubEnv(opts.env);
  if (!/^[\w.-]+\/[\w.-]+$/.test(repo)) throw new UserError(`${repo}: not a Hub repo id (expected "org/name")`);
  if (env.offline) throw new UserError(`${repo}: cannot push while HF_HUB_OFFLINE is set`);
  if (!env.token) throw new UserError(`${repo}: pushing needs a Hugging Face token (set HF_TOKEN, or log in with huggingface-cli)`);
  let files;
  try {
    files = listFiles(dir);
  } catch (e) {
    throw fileError(dir, `cannot read folder (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (files.length === 0) throw fileError(dir, 'nothing to upload (empty folder)');

  const auth = credentials(env) as { accessToken: string };
  try {
    await createRepo({ repo, hubUrl: env.endpoint, ...auth, ...(opts.private === undefined ? {} : { private: opts.private }) });
  } catch (e) {
    // 409: the repo exists already, which is fine (Python's create_repo(exist_ok=True)).
    if (!(e instanceof HubApiError && e.statusCode === 409)) throw pushError(e, repo, env);
  }

  const total = files.reduce((s, f) => s + f.size, 0);
  note(`uploading ${files.length} files (${formatBytes(total)}) to ${env.endpoint}/${repo}`);
  const operations: CommitOperation[] = files.map((f) => ({ operation: 'addOrUpdate', path: f.rel, content: pathToFileURL(f.abs) }));
  try {
    const out = await commit({ repo, operations, title: opts.commitMessage ?? 'Upload with fastkvzip', hubUrl: env.endpoint, ...auth });
    if (!out) throw new UserError(`${repo}: the Hub returned no commit`);
    note(`pushed ${repo} commit ${out.commit.oid.slice(0, 12)}`);
    return { commit: out.commit.oid, url: out.commit.url };
  } catch (e) {
    throw pushError(e, repo, env);
  }
}

function pushError(e: unknown, repo: string, env: HubEnv): Error {
  if (e instanceof HubApiError && (e.statusCode === 401 || e.statusCode === 403)) {
    return new UserError(`${repo}: ${env.endpoint} refused to let the token from ${env.tokenSource} write here (status ${e.statusCode})`);
  }
  return hubError(e, repo, env);
}
