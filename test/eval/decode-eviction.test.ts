// Decoding eviction (src/eval/decode-eviction.ts) against a brute-force restatement: after every
// round each budget group holds exactly its budget outside the window and prefix, and what it
// holds is the best-scored entries (ties: later position, lower layer, lower head kept).
import { describe, it, expect } from 'vitest';
import { DecodeEviction, type DecodeBudget } from '../../src/eval/decode-eviction.js';
import { floorEps, type EvictionLevel } from '../../src/eval/eviction.js';
import { Rng } from '../../src/util/random.js';

interface Entry { s: number; h: number; pos: number; v: number }

function simulate(level: EvictionLevel, budget: DecodeBudget, ratio: number) {
  const L = 3;
  const H = 2;
  const P = 2;
  const W = 5;
  const ctx = 40;
  const rng = new Rng(7);
  const ev = new DecodeEviction({ ratio, level, layers: L, heads: H, prefixLen: P, window: W, budget });
  const units = level === 'pair' ? L * H : level === 'layer' ? H : 1;
  const groupOf = (e: Entry) => (level === 'pair' ? 0 : level === 'layer' ? e.s : e.s * H + e.h);
  const held: Entry[] = [];
  const add = (pos: number) => {
    for (let s = 0; s < L; s++) for (let h = 0; h < H; h++) {
      // coarse scores so ties happen
      const v = Math.round(rng.next() * 8) / 8;
      held.push({ s, h, pos, v });
      ev.add(s, h, pos, v);
    }
  };
  // start: everything of a short "prefill" is kept, then the first round brings it to budget
  for (let p = P; p < P + ctx; p++) add(p);
  let tokens = P + ctx;
  let fixed: number | null = null;
  const check = (out: [number, number, number][]) => {
    const gone = new Set(out.map(([s, h, p]) => `${s},${h},${p}`));
    // brute force: per group, rank the entries outside the window that were held before the round
    const before = held.filter((e) => e.pos < tokens - W);
    const byRatio = Math.max(0, floorEps(ratio * (tokens - P) * units) - W * units);
    const allowed = budget === 'ratio' ? byRatio : (fixed ??= byRatio);
    const groups = new Map<number, Entry[]>();
    for (const e of before) groups.set(groupOf(e), [...(groups.get(groupOf(e)) ?? []), e]);
    const expected = new Set<string>();
    for (const list of groups.values()) {
      list.sort((a, b) => b.v - a.v || b.pos - a.pos || a.s - b.s || a.h - b.h);
      for (const e of list.slice(allowed)) expected.add(`${e.s},${e.h},${e.pos}`);
    }
    expect([...gone].sort()).toEqual([...expected].sort());
    for (let i = held.length - 1; i >= 0; i--) if (gone.has(`${held[i]!.s},${held[i]!.h},${held[i]!.pos}`)) held.splice(i, 1);
    for (const list of groups.values()) expect(list.length - list.filter((e) => gone.has(`${e.s},${e.h},${e.pos}`)).length).toBe(Math.min(list.length, allowed));
  };
  check(ev.round(tokens));
  for (let round = 0; round < 6; round++) {
    for (let i = 0; i < 7; i++) add(tokens++);
    check(ev.round(tokens));
  }
  return { held, tokens, P, entries: L * H, window: W };
}

describe('decode eviction', () => {
  for (const level of ['pair', 'layer', 'head'] as EvictionLevel[]) {
    for (const budget of ['ratio', 'fixed'] as DecodeBudget[]) {
      it(`${level} level, ${budget} budget: evicts exactly the brute-force choice every round`, () => {
        const { held, tokens, P, entries, window } = simulate(level, budget, 0.4);
        // the kept fraction of everything seen stays the ratio (window included, as in prefill)
        const groups = level === 'pair' ? 1 : level === 'layer' ? 3 : 6;
        if (budget === 'ratio') expect(held.length).toBe(groups * Math.floor((0.4 * (tokens - P) * entries) / groups + 1e-9));
        else expect(held.length).toBeLessThan(0.4 * (tokens - P) * entries);
        expect(window).toBe(5);
      });
    }
  }

  it('ratio 1 never evicts', () => {
    const ev = new DecodeEviction({ ratio: 1, level: 'pair', layers: 1, heads: 1, prefixLen: 0, window: 0, budget: 'ratio' });
    for (let p = 0; p < 50; p++) ev.add(0, 0, p, 0);
    expect(ev.round(50)).toEqual([]);
  });

  it('NaN scores go first', () => {
    const ev = new DecodeEviction({ ratio: 0.5, level: 'pair', layers: 1, heads: 1, prefixLen: 0, window: 0, budget: 'ratio' });
    [0.1, NaN, 0.9, 0.2].forEach((v, p) => ev.add(0, 0, p, v));
    expect(ev.round(4).map((e) => e[2]).sort()).toEqual([0, 1]);
  });
});
