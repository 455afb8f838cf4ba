// Evaluation contexts: documents of a corpus (held-out ones by default), cut to a token
// budget, with synthetic key–value pairs written into them.
import { openCorpus } from '../data/index.js';
import { resolveDatasetFile } from '../hub/index.js';
import { insertKvPairs, type KvPair } from './retrieval-data.js';
import { UserError } from '../util/errors.js';

export interface EvalContext {
  id: string;
  /** context tokens (no prefix) */
  ids: number[];
  pairs: KvPair[];
  /** tokens of the document before cutting (for the report) */
  docTokens: number;
}

export interface ContextSelection {
  data: string;
  textField?: string;
  /** only these document ids (corpus order kept) */
  docs?: string[];
  excludeDocs?: string[];
  count: number;
  /** documents with fewer tokens are passed over */
  minTokens: number;
  /** documents are cut to this many tokens before the pairs are inserted */
  maxTokens: number;
  kvPairs: number;
  seed: number;
}

export interface ContextTokenizer {
  encode(text: string): number[];
  decode(ids: number[]): string;
}

export async function selectContexts(o: ContextSelection, tok: ContextTokenizer): Promise<EvalContext[]> {
  const corpus = openCorpus(o.data, {
    textField: o.textField,
    excludeIds: o.excludeDocs,
    resolveHubFile: async (repo: string, file: string) => (await resolveDatasetFile(repo, file, {})).path,
  });
  const wanted = o.docs ? new Set(o.docs) : null;
  const out: EvalContext[] = [];
  for await (const doc of corpus.documents()) {
    if (out.length >= o.count) break;
    if (wanted && !wanted.has(doc.id)) continue;
    const ids = tok.encode(doc.text.trim());
    if (ids.length < o.minTokens) continue;
    const cut = ids.length > o.maxTokens ? tok.decode(ids.slice(0, o.maxTokens)) : doc.text.trim();
    const withPairs = insertKvPairs(cut, o.kvPairs, o.seed * 7919 + out.length);
    out.push({ id: doc.id, ids: tok.encode(withPairs.text), pairs: withPairs.pairs, docTokens: ids.length });
  }
  if (out.length === 0) {
    throw new UserError(`${o.data}: no document with at least ${o.minTokens} tokens${wanted ? ' among the requested --docs' : ''} (lower --min-context-tokens?)`);
  }
  return out;
}
