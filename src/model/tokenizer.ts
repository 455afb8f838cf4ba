// tokenizer.json (+ tokenizer_config.json) -> a small typed tokenizer, via @huggingface/tokenizers
// (pure JS; its types degrade to `any` under NodeNext, so everything is wrapped here).
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { fileError } from '../util/errors.js';

export interface Tokenizer {
  /** the tokenizer.json this came from */
  readonly file: string;
  /** highest token id + 1, added tokens included (may be below config.json's padded vocab_size) */
  readonly vocabSize: number;
  /** from tokenizer_config.json's bos_token / eos_token / pad_token; null when absent there */
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;
  /** tokenizer_config.json's chat_template when it is a single string */
  readonly chatTemplate: string | null;
  /** addSpecialTokens defaults to true, as in transformers (adds e.g. Gemma's <bos>) */
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: readonly number[], opts?: { skipSpecialTokens?: boolean }): string;
  /** id of one vocabulary entry or added token, e.g. "<|im_start|>" */
  tokenId(token: string): number | undefined;
  /** the vocabulary entry of an id */
  tokenString(id: number): string | undefined;
}

function readJson(file: string): any {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw fileError(file, `cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw fileError(file, `not valid JSON (${(e as Error).message})`);
  }
}

/** tokenizer_config.json writes special tokens as a string or as an AddedToken object. */
function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return null;
}

/** Load `<dir>/tokenizer.json`, and `<dir>/tokenizer_config.json` when present. */
export function loadTokenizer(dir: string): Tokenizer {
  const file = path.join(dir, 'tokenizer.json');
  if (!existsSync(file)) throw fileError(file, 'missing (a tokenizer.json is needed; slow/sentencepiece-only tokenizers are not supported)');
  const json = readJson(file);
  if (!json || typeof json !== 'object' || Array.isArray(json) || !json.model || typeof json.model !== 'object') {
    throw fileError(file, 'not a tokenizers file (no "model" object)');
  }
  const configFile = path.join(dir, 'tokenizer_config.json');
  const config = existsSync(configFile) ? readJson(configFile) : {};
  if (!config || typeof config !== 'object' || Array.isArray(config)) throw fileError(configFile, 'not a JSON object');

  let tk: any;
  try {
    tk = new HfTokenizer(json, config);
  } catch (e) {
    throw fileError(file, `cannot build the tokenizer (${(e as Error).message})`);
  }

  let maxId = -1;
  for (const id of (tk.get_vocab(true) as Map<string, number>).values()) if (id > maxId) maxId = id;
  const idOf = (token: string): number | undefined => {
    const id = tk.token_to_id(token);
    return typeof id === 'number' ? id : undefined;
  };
  const special = (key: string): number | null => {
    const content = tokenContent(config[key]);
    if (content === null) return null;
    const id = idOf(content);
    if (id === undefined) throw fileError(configFile, `${key} "${content}" is not in ${path.basename(file)}`);
    return id;
  };

  return {
    file,
    vocabSize: maxId + 1,
    bosTokenId: special('bos_token'),
    eosTokenId: special('eos_token'),
    padTokenId: special('pad_token'),
    chatTemplate: typeof config.chat_template === 'string' ? config.chat_template : null,
    encode: (text, opts = {}) => Array.from(tk.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids as number[]),
    decode: (ids, opts = {}) => tk.decode([...ids], { skip_special_tokens: opts.skipSpecialTokens ?? false }) as string,
    tokenId: idOf,
    tokenString: (id) => {
      const s = tk.id_to_token(id);
      return typeof s === 'string' ? s : undefined;
    },
  };
}
