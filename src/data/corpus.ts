// `--data` spec -> Corpus: "sotu", "hub:org/name/path/to/file", or a local file or folder.
import { hubCorpus, isHubSpec } from './hub.js';
import type { HubFileResolver } from './hub.js';
import { localCorpus } from './files.js';
import { sotuCorpus } from './sotu.js';
import { admitDocument } from './text.js';
import type { Corpus, Document, DocumentStreamOptions } from './types.js';

export interface OpenCorpusOptions {
  /** field holding the text in parquet/jsonl/json records (default "text") */
  textField?: string;
  /** field holding a stored token count, used when present (default "token_count") */
  tokenCountField?: string;
  /** needed for hub: specs */
  resolveHubFile?: HubFileResolver;
  /** documents left out and reported as 'excluded' skips (e.g. held-out SOTU addresses) */
  excludeIds?: Iterable<string>;
}

export const DEFAULT_TEXT_FIELD = 'text';
export const DEFAULT_TOKEN_COUNT_FIELD = 'token_count';

function withExclusions(corpus: Corpus, excluded: ReadonlySet<string>): Corpus {
  async function* documents(options: DocumentStreamOptions = {}): AsyncGenerator<Document> {
    for await (const doc of corpus.documents(options)) {
      if (excluded.has(doc.id)) options.onSkip?.({ id: doc.id, reason: 'excluded' });
      else yield doc;
    }
  }
  return { description: corpus.description, documents };
}

/** Open a corpus by its `--data` spec. Local paths are checked now; files are read lazily. */
export function openCorpus(spec: string, options: OpenCorpusOptions = {}): Corpus {
  const fields = {
    textField: options.textField ?? DEFAULT_TEXT_FIELD,
    tokenCountField: options.tokenCountField ?? DEFAULT_TOKEN_COUNT_FIELD,
  };
  let corpus: Corpus;
  if (spec === 'sotu') corpus = sotuCorpus(spec);
  else if (isHubSpec(spec)) corpus = hubCorpus(spec, fields, options.resolveHubFile);
  else corpus = localCorpus(spec, fields, spec);
  const excluded = new Set(options.excludeIds ?? []);
  return excluded.size > 0 ? withExclusions(corpus, excluded) : corpus;
}

/** A corpus over documents already in memory (tests, programmatic use). */
export function corpusFromDocuments(docs: readonly Document[], spec = 'memory'): Corpus {
  async function* documents(options: DocumentStreamOptions = {}): AsyncGenerator<Document> {
    for (const doc of docs) {
      const admitted = admitDocument(doc.id, doc.text, doc.tokenCount, options);
      if (admitted) yield admitted;
    }
  }
  return { description: { kind: 'local', spec }, documents };
}
