// Shapes shared by the corpus sources and the document recipe.

/** Turns text into token ids; adds no special tokens (no BOS/EOS). */
export interface TextTokenizer {
  encode(text: string): number[];
}

/** One document of a corpus, in corpus order. */
export interface Document {
  /** stable across machines: derived from the corpus layout, never from local cache paths */
  id: string;
  /** raw text as stored (not stripped) */
  text: string;
  /** token count stored with the document (e.g. FineWeb's `token_count` column), when present */
  tokenCount?: number;
}

/** Why a document never reached the recipe. */
export type SkipReason =
  | 'empty' // blank after stripping whitespace
  | 'invalid-utf8' // bytes that are not UTF-8 (or lone surrogates)
  | 'null-text' // the text field exists but this row holds null
  | 'excluded'; // id listed in the caller's exclusions (e.g. held out)

export const SKIP_REASONS: readonly SkipReason[] = ['empty', 'invalid-utf8', 'null-text', 'excluded'];

export interface SkippedDocument {
  id: string;
  reason: SkipReason;
}

export interface DocumentStreamOptions {
  /** called once for every document a source leaves out; skips are never silent */
  onSkip?: (skip: SkippedDocument) => void;
}

/** What a corpus is, for manifests (no local paths of downloaded files). */
export interface CorpusDescription {
  kind: 'sotu' | 'local' | 'hub';
  /** the `--data` spec it was opened from */
  spec: string;
  /** field holding the text (files only) */
  textField?: string;
  /** field holding a stored token count, used when present (files only) */
  tokenCountField?: string;
}

/** A document source that can be iterated again from the start, in the same order. */
export interface Corpus {
  readonly description: CorpusDescription;
  documents(options?: DocumentStreamOptions): AsyncIterable<Document>;
}

/** Per-reason skip counts. */
export type SkipCounts = Record<SkipReason, number>;

export function emptySkipCounts(): SkipCounts {
  return { empty: 0, 'invalid-utf8': 0, 'null-text': 0, excluded: 0 };
}
