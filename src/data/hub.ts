// Hub dataset file (`hub:org/name/path/to/file.parquet`), fetched through an injected resolver
// so this module does not depend on the download code. Ids use the hub path, not the local
// cache path, so they are the same on every machine.
import { UserError } from '../util/errors.js';
import { fileDocuments, formatOf } from './files.js';
import type { FieldOptions } from './files.js';
import type { Corpus, Document, DocumentStreamOptions } from './types.js';

/** Downloads (or finds in the cache) one file of a hub dataset repo; returns its local path. */
export type HubFileResolver = (repo: string, file: string) => Promise<string>;

/** The public recipe's corpus file. */
export const DEFAULT_HUB_DATA = 'hub:HuggingFaceFW/fineweb-edu/sample/10BT/000_00000.parquet';

export interface HubDataRef {
  /** "org/name" */
  repo: string;
  /** path of the file inside the repo */
  file: string;
}

export function isHubSpec(spec: string): boolean {
  return spec.startsWith('hub:');
}

/** `hub:org/name/path/to/file.ext` -> { repo: "org/name", file: "path/to/file.ext" }. */
export function parseHubSpec(spec: string): HubDataRef {
  const parts = spec.slice('hub:'.length).split('/');
  if (!isHubSpec(spec) || parts.length < 3 || parts.some((part) => part === '' || part === '.' || part === '..')) {
    throw new UserError(`${spec}: expected hub:org/name/path/to/file (one file of a dataset repo, e.g. ${DEFAULT_HUB_DATA})`);
  }
  const ref = { repo: `${parts[0]}/${parts[1]}`, file: parts.slice(2).join('/') };
  if (!formatOf(ref.file)) {
    throw new UserError(`${spec}: unsupported file type (expected .parquet, .jsonl, .json or .txt)`);
  }
  return ref;
}

async function* hubDocuments(
  spec: string,
  ref: HubDataRef,
  resolve: HubFileResolver,
  fields: FieldOptions,
  options: DocumentStreamOptions,
): AsyncGenerator<Document> {
  const local = await resolve(ref.repo, ref.file);
  yield* fileDocuments(local, `${ref.repo}/${ref.file}`, fields, options, `${spec} (${local})`, formatOf(ref.file));
}

export function hubCorpus(spec: string, fields: FieldOptions, resolve: HubFileResolver | undefined): Corpus {
  const ref = parseHubSpec(spec);
  if (!resolve) throw new UserError(`${spec}: hub data needs a hub file resolver (none was given)`);
  return {
    description: { kind: 'hub', spec, ...fields },
    documents: (options = {}) => hubDocuments(spec, ref, resolve, fields, options),
  };
}
