// A model argument is either a local folder (used as is) or a Hub repo id, fetched into the
// Python-compatible HF cache; either way the caller gets a folder to open.
import { existsSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { UserError, fileError } from '../util/errors.js';
import { hubEnv } from './env.js';
import { fetchSnapshot } from './fetch-snapshot.js';

export interface ResolveModelOptions {
  /** branch, tag or commit sha (default "main") */
  revision?: string;
  env?: NodeJS.ProcessEnv;
  /** more files that must be fetched too (e.g. "chat_template.jinja") */
  files?: string[];
  /** fetch the safetensors weights (default true; false for tokenizer-only work) */
  weights?: boolean;
}

export interface ResolvedModel {
  dir: string;
  /** null for a local folder */
  repoId: string | null;
  revision: string | null;
  commit: string | null;
}

export const MODEL_REQUIRED_FILES = ['config.json', 'tokenizer.json'];
export const MODEL_OPTIONAL_FILES = ['tokenizer_config.json', 'generation_config.json', 'special_tokens_map.json'];

const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

export async function resolveModel(idOrDir: string, opts: ResolveModelOptions = {}): Promise<ResolvedModel> {
  if (existsSync(idOrDir)) {
    if (!statSync(idOrDir).isDirectory()) throw fileError(idOrDir, 'not a folder (expected a model folder or a Hub repo id like Qwen/Qwen3-8B)');
    return { dir: path.resolve(idOrDir), repoId: null, revision: null, commit: null };
  }
  if (!REPO_ID.test(idOrDir) || idOrDir.includes('..')) {
    throw new UserError(`${idOrDir}: no such folder, and not a Hub repo id (expected "org/name")`);
  }
  const revision = opts.revision ?? 'main';
  const { dir, commit } = await fetchSnapshot({
    repo: { type: 'model', name: idOrDir },
    revision,
    env: hubEnv(opts.env),
    required: [...MODEL_REQUIRED_FILES, ...(opts.files ?? [])],
    optional: MODEL_OPTIONAL_FILES,
    weights: opts.weights ?? true,
  });
  return { dir, repoId: idOrDir, revision, commit };
}
