// A tokenizer.json small enough to build in microseconds, for fixtures that only need *a* tokenizer.
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';

export function tinyTokenizerJson(): object {
  const letters = 'abcdefghijklmnopqrstuvwxyzĠ';
  const vocab: Record<string, number> = {};
  for (const ch of letters) vocab[ch] = Object.keys(vocab).length;
  vocab['ab'] = Object.keys(vocab).length;
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const n = Object.keys(vocab).length;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(n, '<bos>'), special(n + 1, '<eos>')],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: ['a b'] },
  };
}

/** Writes tokenizer.json and tokenizer_config.json (bos <bos>, eos <eos>) into `dir`. */
export function writeTinyTokenizer(dir: string): void {
  writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tinyTokenizerJson()));
  writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<bos>', eos_token: { content: '<eos>' } }));
}
