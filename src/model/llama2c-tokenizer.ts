// llama2.c tokenizer .bin -> a Hugging Face tokenizer.json that encodes and decodes as run.c does.
// The .bin is a sentencepiece BPE vocabulary exported by llama2.c's tokenizer.py: uint32
// max_token_length, then per token: float32 score, int32 byte length, UTF-8 bytes ("▁" written as
// " ", BOS/EOS as "\n<s>\n" / "\n</s>\n", byte tokens as "<0xXX>" or, in newer exports, the raw byte).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { fileError } from '../util/errors.js';

export interface Llama2cVocab {
  maxTokenLength: number;
  /** piece strings as stored in the .bin */
  pieces: string[];
  scores: Float32Array;
}

const SPACE_MARK = '\u2581'; // sentencepiece's "▁"
const SPECIALS = ['<unk>', '<s>', '</s>'] as const;
const STORED_SPECIALS = ['<unk>', '\n<s>\n', '\n</s>\n'];
const FIRST_BYTE_ID = 3;

const byteName = (b: number) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;

/** Read exactly `vocabSize` tokens (the checkpoint's vocab_size); extra or missing bytes are errors. */
export function readLlama2cTokenizer(file: string, vocabSize: number): Llama2cVocab {
  if (!existsSync(file)) throw fileError(file, 'missing (expected a llama2.c tokenizer .bin)');
  if (!statSync(file).isFile()) throw fileError(file, 'not a file (expected a llama2.c tokenizer .bin)');
  const buf = readFileSync(file);
  if (buf.length < 4) throw fileError(file, `truncated: ${buf.length} bytes, a llama2.c tokenizer starts with a 4-byte max_token_length`);
  const maxTokenLength = buf.readUInt32LE(0);
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const pieces: string[] = [];
  const scores = new Float32Array(vocabSize);
  let at = 4;
  for (let i = 0; i < vocabSize; i++) {
    if (at + 8 > buf.length) throw fileError(file, `truncated: ends inside token ${i} of ${vocabSize} (the checkpoint's vocab_size)`);
    const score = buf.readFloatLE(at);
    const len = buf.readInt32LE(at + 4);
    at += 8;
    if (!Number.isFinite(score)) throw fileError(file, `token ${i} has a non-finite score`);
    if (len <= 0 || len > maxTokenLength) throw fileError(file, `token ${i} has length ${len}, outside 1..${maxTokenLength} (max_token_length); not a llama2.c tokenizer?`);
    if (at + len > buf.length) throw fileError(file, `truncated: ends inside token ${i} of ${vocabSize} (the checkpoint's vocab_size)`);
    try {
      pieces.push(utf8.decode(buf.subarray(at, at + len)));
    } catch {
      throw fileError(file, `token ${i} is not valid UTF-8`);
    }
    scores[i] = score;
    at += len;
  }
  if (at !== buf.length) {
    throw fileError(file, `has ${buf.length - at} bytes after token ${vocabSize - 1}; the checkpoint's vocab_size is ${vocabSize} (tokenizer of another model?)`);
  }
  for (let i = 0; i < STORED_SPECIALS.length; i++) {
    if (pieces[i] !== STORED_SPECIALS[i]) {
      throw fileError(file, `token ${i} is ${JSON.stringify(pieces[i])}, expected ${JSON.stringify(STORED_SPECIALS[i])} (llama2.c tokenizers keep <unk>, BOS, EOS at ids 0, 1, 2)`);
    }
  }
  return { maxTokenLength, pieces, scores };
}

/** True when ids 3..258 are the 256 byte tokens, in either export style. */
function hasByteTokens(pieces: string[]): boolean {
  if (pieces.length < FIRST_BYTE_ID + 256) return false;
  for (let b = 0; b < 256; b++) {
    const p = pieces[FIRST_BYTE_ID + b];
    if (p !== byteName(b) && p !== String.fromCodePoint(b)) return false;
  }
  return true;
}

export interface HfTokenizerFiles {
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
}

/**
 * A BPE tokenizer.json equivalent to run.c's encoder: run.c prepends a space, splits the text into
 * code points (unknown ones into byte tokens) and repeatedly merges the adjacent pair whose
 * concatenation is the highest-scoring vocabulary entry. As a merge list that is every split
 * (left, right) of every entry into two entries, ranked by the entry's score — the way
 * transformers' sentencepiece converter derives merges.
 */
export function llama2cToHfTokenizer(vocab: Llama2cVocab, file: string, maxLength: number): HfTokenizerFiles {
  const { pieces, scores } = vocab;
  const byteFallback = hasByteTokens(pieces);
  const names: string[] = pieces.map((p, id) => {
    if (id < SPECIALS.length) return SPECIALS[id]!;
    if (byteFallback && id >= FIRST_BYTE_ID && id < FIRST_BYTE_ID + 256) return byteName(id - FIRST_BYTE_ID);
    return p.replaceAll(' ', SPACE_MARK);
  });
  const vocabMap: Record<string, number> = Object.create(null);
  /** ids that can take part in merges: plain pieces, not specials or byte tokens */
  const mergeable = new Map<string, number>();
  names.forEach((name, id) => {
    if (name in vocabMap) throw fileError(file, `tokens ${vocabMap[name]} and ${id} are both ${JSON.stringify(pieces[id])}`);
    vocabMap[name] = id;
    const special = id < SPECIALS.length || (byteFallback && id < FIRST_BYTE_ID + 256);
    if (!special) mergeable.set(name, id);
  });

  const merges: { left: string; right: string; id: number; leftId: number; rightId: number }[] = [];
  for (const [name, id] of mergeable) {
    const chars = Array.from(name);
    for (let k = 1; k < chars.length; k++) {
      const left = chars.slice(0, k).join('');
      const right = chars.slice(k).join('');
      const leftId = mergeable.get(left);
      const rightId = mergeable.get(right);
      if (leftId !== undefined && rightId !== undefined) merges.push({ left, right, id, leftId, rightId });
    }
  }
  // Higher score merges first (run.c picks the best score); ties broken by id for a stable file.
  merges.sort((a, b) => scores[b.id]! - scores[a.id]! || a.id - b.id || a.leftId - b.leftId || a.rightId - b.rightId);

  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    // run.c's add_dummy_prefix: a leading space; spaces are "▁" in the vocabulary. No pre-tokenizer: run.c merges across words.
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: SPACE_MARK },
        { type: 'Replace', pattern: { String: ' ' }, content: SPACE_MARK },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<s>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<s>', type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    // run.c strips the space that follows BOS; sentencepiece drops the dummy prefix the same way.
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPACE_MARK }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: byteFallback,
      ignore_merges: false,
      vocab: vocabMap,
      merges: merges.map((m) => [m.left, m.right]),
    },
  };
  const tokenizerConfig = {
    tokenizer_class: 'LlamaTokenizerFast',
    bos_token: '<s>',
    eos_token: '</s>',
    unk_token: '<unk>',
    pad_token: null,
    add_bos_token: true,
    add_eos_token: false,
    legacy: true,
    add_prefix_space: null,
    clean_up_tokenization_spaces: false,
    model_max_length: maxLength,
  };
  return { tokenizerJson, tokenizerConfig };
}
