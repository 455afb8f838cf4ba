// Synthetic key–value lookup inside real text: random keys and values written as
// "The value of key 'KEY' is 'VALUE'." at random sentence boundaries, and the questions
// asking for one key's value. Pure text logic; seeded.
import { Rng } from '../util/random.js';

export interface KvPair {
  key: string;
  value: string;
}

export interface RetrievalText {
  text: string;
  pairs: KvPair[];
}

export const KV_SENTENCE = (p: KvPair) => `The value of key '${p.key}' is '${p.value}'. `;
export const KV_QUESTION = (key: string) => `\n\nWhat is the value of key '${key}'?`;
/**
 * Opens the answer so a base (non-chat) model can complete it by copying; the question and
 * the chat template postfix come first.
 */
export const KV_ANSWER_PRIMER = (key: string) => `The value of key '${key}' is '`;

const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const DIGITS = '0123456789';

function randomString(rng: Rng, alphabet: string, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[rng.int(alphabet.length)];
  return s;
}

/**
 * Insert `n` pairs (4-letter keys, 6-digit values, all keys distinct) after sentence ends
 * ('.', '!' or '?' followed by whitespace) in the first `span` fraction of the text, so
 * that they are not all inside the always-kept recent window.
 */
export function insertKvPairs(text: string, n: number, seed: number, span = 0.9): RetrievalText {
  const rng = new Rng(seed);
  const limit = Math.floor(text.length * span);
  const spots: number[] = [];
  for (const m of text.matchAll(/[.!?]\s+/g)) {
    const at = m.index! + m[0].length;
    if (at < limit) spots.push(at);
  }
  if (spots.length === 0) spots.push(0);
  const keys = new Set<string>();
  const pairs: KvPair[] = [];
  while (pairs.length < n) {
    const key = randomString(rng, LETTERS, 4);
    if (keys.has(key)) continue;
    keys.add(key);
    pairs.push({ key, value: randomString(rng, DIGITS, 6) });
  }
  const at = pairs.map(() => spots[rng.int(spots.length)]!);
  // insert from the back so earlier offsets stay valid; pairs sharing a spot keep their order
  const order = pairs.map((_, i) => i).sort((a, b) => at[b]! - at[a]! || b - a);
  let out = text;
  for (const i of order) out = out.slice(0, at[i]) + KV_SENTENCE(pairs[i]!) + out.slice(at[i]);
  return { text: out, pairs };
}
