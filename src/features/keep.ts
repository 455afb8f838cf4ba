// `--keep-fraction p`: which token positions of a context a subsampled store keeps (issue 16).
// Uniform over positions and seeded per context, so a resumed or repeated extraction keeps the
// same rows; the held-out positions of the trainer's split (every 100th position, 1-based, of
// the concatenated stream of all contexts) are always kept, so held-out metrics are measured on
// the very positions a full store holds out. Pure logic.
import { Rng } from '../util/random.js';

/** The trainer's held-out rule (SPEC §2): every `HELD_OUT_EVERY`-th position, 1-based, of the stream. */
export const HELD_OUT_EVERY = 100;

export function isHeldOut(streamPosition: number, every = HELD_OUT_EVERY): boolean {
  return (streamPosition + 1) % every === 0;
}

/** 32-bit FNV-1a of a string, mixed with the seed: one generator per (seed, context). */
export function contextSeed(seed: number, contextId: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < contextId.length; i++) h = Math.imul(h ^ contextId.charCodeAt(i), 0x01000193) >>> 0;
  return h >>> 0;
}

/**
 * Positions (0-based, ascending) kept of a context of `tokens` tokens that starts at stream
 * position `offset`: every held-out position, plus round(fraction × the others) of the others
 * drawn uniformly without replacement.
 */
export function keptPositions(tokens: number, offset: number, fraction: number, seed: number, contextId: string): Int32Array {
  if (!(fraction > 0 && fraction <= 1)) throw new Error(`keep fraction ${fraction} must be in (0, 1]`);
  const others: number[] = [];
  const keep = new Uint8Array(tokens);
  for (let t = 0; t < tokens; t++) {
    if (isHeldOut(offset + t)) keep[t] = 1;
    else others.push(t);
  }
  const k = Math.round(fraction * others.length);
  const perm = new Rng(contextSeed(seed, contextId)).permutation(others.length);
  for (let i = 0; i < k; i++) keep[others[perm[i]!]!] = 1;
  let n = 0;
  for (let t = 0; t < tokens; t++) n += keep[t]!;
  const out = new Int32Array(n);
  for (let t = 0, j = 0; t < tokens; t++) if (keep[t]) out[j++] = t;
  return out;
}
