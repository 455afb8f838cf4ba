// Push a local folder to a Hub model repo (creating the repo when missing), as one commit.
import { lstatSync, readdirSync, realpathSync } from 'node:fs';
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
  /** visibility when the repo is created (default private; an existing repo keeps its own) */
  private?: boolean;
  /**
   * The files to upload, relative to the folder (with `/`). Without it: every regular file of
   * the folder that is not hidden. Either way symlinks are never followed and nothing outside
   * the folder is read.
   */
  files?: string[];
}

export interface UploadResult {
  commit: string;
  url: string;
}

type UploadFile = { rel: string; abs: string; size: number };

/** Hidden files (.env, .git, .cache, our temp files) are never published from a folder listing. */
function skipped(name: string): boolean {
  return name.startsWith('.');
}

function listFiles(dir: string, rel = ''): UploadFile[] {
  const out: UploadFile[] = [];
  for (const entry of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    if (skipped(entry.name)) continue;
    const r = rel ? `${rel}/${entry.name}` : entry.name;
    const abs = path.join(dir, r);
    const st = lstatSync(abs); // a symlink is neither a file nor a folder here: not followed
    if (st.isDirectory()) out.push(...listFiles(dir, r));
    else if (st.isFile()) out.push({ rel: r, abs, size: st.size });
  }
  return out;
}

/** Each named file must be a regular file (no symlink) inside `dir`. */
function namedFiles(dir: string, names: string[]): UploadFile[] {
  const root = realpathSync(dir);
  return names.map((name) => {
    const rel = name.split(path.sep).join('/');
    if (rel === '' || path.isAbsolute(name) || rel.split('/').some((p) => p === '..' || p === '')) throw fileError(name, `not a path inside ${dir}; refusing to upload it`);
    const abs = path.join(dir, ...rel.split('/'));
    const st = lstatSync(abs);
    if (st.isSymbolicLink()) throw fileError(abs, 'is a symbolic link; refusing to upload what it points to');
    if (!st.isFile()) throw fileError(abs, 'not a regular file; refusing to upload it');
    const real = realpathSync(abs);
    if (!real.startsWith(root + path.sep)) throw fileError(abs, `resolves outside ${dir}; refusing to upload it`);
    return { rel, abs, size: st.size };
  });
}

export async function uploadFolder(repo: string, dir: string, opts: UploadFolderOptions = {}): Promise<UploadResult> {
  const env = hubEnv(opts.env);
  if (!/^[\w.-]+\/[\w.-]+$/.test(repo)) throw new UserError(`${repo}: not a Hub repo id (expected "org/name")`);
  if (env.offline) throw new UserError(`${repo}: cannot push while HF_HUB_OFFLINE is set`);
  if (!env.token) throw new UserError(`${repo}: pushing needs a Hugging Face token (set HF_TOKEN, or log in with huggingface-cli)`);
  let files;
  try {
    files = opts.files ? namedFiles(dir, opts.files) : listFiles(dir);
  } catch (e) {
    if (e instanceof UserError) throw e;
    const err = e as NodeJS.ErrnoException;
    throw fileError(err.path ?? dir, `cannot read it for upload (${err.code ?? err.message})`);
  }
  if (files.length === 0) throw fileError(dir, 'nothing to upload (empty folder)');

  const auth = credentials(env) as { accessToken: string };
  try {
    await createRepo({ repo, hubUrl: env.endpoint, ...auth, private: opts.private ?? true });
  } catch (e) {
    // 409: the repo exists already, which is fine (Python's create_repo(exist_ok=True)).
    if (!(e instanceof HubApiError && e.statusCode === 409)) throw pushError(e, repo, env);
  }

  const total = files.reduce((s, f) => s + f.size, 0);
  note(`uploading ${files.length} file(s) (${formatBytes(total)}) to ${env.endpoint}/${repo}: ${files.map((f) => f.rel).join(', ')}`);
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
