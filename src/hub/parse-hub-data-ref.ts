import { UserError } from '../util/errors.js';

export interface HubDataRef {
  /** "org/name" of a dataset repo */
  repo: string;
  /** path inside the repo */
  file: string;
  /** from "org/name@revision/..."; undefined means main */
  revision?: string;
}

/** "hub:org/name/path/in/repo.parquet" (optionally "hub:org/name@rev/path") -> its parts. */
export function parseHubDataRef(ref: string): HubDataRef {
  const m = /^hub:([^/@\s]+)\/([^/@\s]+)(?:@([^/\s]+))?\/(.+)$/.exec(ref);
  const bad = (why: string) => new UserError(`${ref}: ${why} (expected hub:org/name/path/in/repo.parquet)`);
  if (!m) throw bad('not a Hub file reference');
  const [, org, name, revision, file] = m as unknown as [string, string, string, string | undefined, string];
  const parts = file.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..')) throw bad('bad path inside the repo');
  return revision === undefined ? { repo: `${org}/${name}`, file } : { repo: `${org}/${name}`, file, revision };
}
