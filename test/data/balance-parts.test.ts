import { describe, expect, it } from 'vitest';
import { balancedParts } from '../../src/data/balance-parts.js';

const loads = (tokens: number[], part: number[], n: number) => Array.from({ length: n }, (_, p) => tokens.reduce((a, t, i) => a + (part[i] === p ? t : 0), 0));

describe('balancedParts (longest first to the lightest part)', () => {
  it('the public recipe shape (29 contexts of 10-30k, then 5 of >= 100k): no part gets two long contexts while another has none', () => {
    // deterministic stand-ins for the 29 one-document lengths and the 5 concatenated ones
    const tokens = [...Array.from({ length: 29 }, (_, i) => 10_000 + ((i * 7919) % 20_000)), 104_000, 101_500, 117_000, 100_200, 109_000];
    const total = tokens.reduce((a, b) => a + b, 0);
    for (const n of [2, 4, 8]) {
      const part = balancedParts(tokens, n);
      const balanced = Math.max(...loads(tokens, part, n));
      const modulo = Math.max(...loads(tokens, tokens.map((_, i) => i % n), n));
      const bound = Math.max(total / n, Math.max(...tokens)); // no split does better than this
      expect(balanced, `n=${n}`).toBeLessThanOrEqual(modulo);
      expect(balanced, `n=${n}`).toBeLessThanOrEqual((4 / 3) * bound); // Graham's bound for LPT
      const longPerPart = loads(tokens.map((t) => (t >= 100_000 ? 1 : 0)), part, n);
      expect(Math.max(...longPerPart) - Math.min(...longPerPart), `n=${n}`).toBeLessThanOrEqual(1);
    }
    // with 4 parts, index % 4 put cat contexts 29 and 33 on part 1: 2 of the 5 long ones
    expect(Math.max(...loads(tokens, balancedParts(tokens, 4), 4))).toBeLessThan(Math.max(...loads(tokens, tokens.map((_, i) => i % 4), 4)));
  });

  it('evens out what LPT leaves by exchanges between the heaviest and the lightest part, never worse than LPT alone', () => {
    // LPT: 8 | 7, 6 to the lighter, 5 and 4 to part 0: 17 / 13; swapping 8 for 6 gives 15 / 15
    expect(loads([8, 7, 6, 5, 4], balancedParts([8, 7, 6, 5, 4], 2), 2)).toEqual([15, 15]);
    const lpt = (t: number[], n: number) => {
      const load = new Array<number>(n).fill(0);
      for (const x of [...t].sort((a, b) => b - a)) load[load.indexOf(Math.min(...load))] += x;
      return Math.max(...load);
    };
    for (let seed = 1; seed <= 30; seed++) {
      // one-document lengths of 1,500-4,000 with a few long concatenated ones, like the default preset
      const t = Array.from({ length: 20 + (seed % 15) }, (_, i) => 1500 + ((i * 7919 * seed) % 2500)).concat(Array.from({ length: seed % 6 }, (_, i) => 4000 + ((i * 104729 * seed) % 4000)));
      for (const n of [2, 3, 4]) {
        const max = Math.max(...loads(t, balancedParts(t, n), n));
        expect(max, `seed ${seed}, n ${n}`).toBeLessThanOrEqual(lpt(t, n));
        expect(max, `seed ${seed}, n ${n}`).toBeLessThanOrEqual(Math.max(...loads(t, t.map((_, i) => i % n), n)));
      }
    }
  });

  it('is deterministic (ties: the earlier context, the lower part) and covers every context once', () => {
    expect(balancedParts([5, 5, 5, 5], 2)).toEqual([0, 1, 0, 1]);
    expect(balancedParts([1, 9, 1, 9], 2)).toEqual([0, 0, 1, 1]);
    expect(balancedParts([], 3)).toEqual([]);
    expect(balancedParts([3, 2, 1], 1)).toEqual([0, 0, 0]);
    const t = Array.from({ length: 50 }, (_, i) => (i * 37) % 101);
    expect(balancedParts(t, 5)).toEqual(balancedParts([...t], 5));
    expect(balancedParts(t, 5).every((p) => p >= 0 && p < 5)).toBe(true);
    expect(() => balancedParts([1], 0)).toThrow(RangeError);
  });
});
