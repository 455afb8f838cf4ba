// Eviction budgets (docs/method.md §6): exact kept fractions for the three levels, prefix/window
// accounting, the public window adjustment, and that the best-scored entries survive.
import { describe, it, expect } from 'vitest';
import { EvictionPlan, recentWindow, PUBLIC_WINDOW, floorEps, type EvictionLevel } from '../../src/eval/eviction.js';
import { Rng } from '../../src/util/random.js';

/** Run a plan over a context in prefill chunks; returns keep flags [L][H][C]. */
function simulate(C: number, ratio: number, level: EvictionLevel, L: number, H: number, chunk: number, score: (s: number, h: number, j: number) => number, win = PUBLIC_WINDOW) {
  const plan = new EvictionPlan(C, ratio, level, L, H, win);
  const keep = Array.from({ length: L }, () => Array.from({ length: H }, () => new Uint8Array(C).fill(1)));
  const rounds: [number, number][] = [];
  for (let seen = Math.min(chunk, C); ; seen = Math.min(C, seen + chunk)) {
    const d = plan.round(seen, score);
    rounds.push([d.start, d.end]);
    for (const [s, h, j] of d.evict) {
      expect(j).toBeGreaterThanOrEqual(d.start);
      expect(j).toBeLessThan(d.end);
      expect(keep[s]![h]![j]).toBe(1);
      keep[s]![h]![j] = 0;
    }
    if (seen === C) break;
  }
  expect(plan.finished).toBe(true);
  return { plan, keep, rounds };
}

const count = (a: Uint8Array, from = 0, to = a.length) => a.subarray(from, to).reduce((x, y) => x + y, 0);

describe('recent window', () => {
  it('is 2 % of short contexts and 4096 for long ones', () => {
    expect(recentWindow(3000, 1, PUBLIC_WINDOW)).toBe(60);
    expect(recentWindow(20000, 0.5, PUBLIC_WINDOW)).toBe(4096);
    expect(recentWindow(3000, 0.3, { ...PUBLIC_WINDOW, shortContext: 1000 })).toBe(900); // 4096 > budget 900: the window is the budget
  });
  it('shrinks to the budget when ratio·C is below it (public chunk_ratio adjustment)', () => {
    expect(recentWindow(20000, 0.1, PUBLIC_WINDOW)).toBe(2000);
    expect(recentWindow(100, 0.29, PUBLIC_WINDOW)).toBe(2); // floor(2.0), 0.29*100 = 28.999… handled
    expect(floorEps(0.29 * 100)).toBe(29);
  });
});

describe('eviction plan', () => {
  const rng = new Rng(3);
  const noise = Array.from({ length: 3 * 2 * 1000 }, () => rng.next());
  const score = (s: number, h: number, j: number) => noise[(s * 2 + h) * 1000 + j]!;

  for (const level of ['pair', 'layer', 'head'] as const) {
    for (const ratio of [1, 0.75, 0.5, 0.3, 0.1, 0.013]) {
      it(`${level} level keeps exactly floor(ratio · entries) at ratio ${ratio}`, () => {
        const C = 1000;
        const { plan, keep } = simulate(C, ratio, level, 3, 2, 128, score);
        const W = plan.window;
        // the window is always kept, in every layer and head
        for (const heads of keep) for (const k of heads) expect(count(k, C - W)).toBe(W);
        if (level === 'pair') expect(keep.flat().reduce((a, k) => a + count(k), 0)).toBe(floorEps(ratio * C * 6));
        if (level === 'layer') for (const heads of keep) expect(heads.reduce((a, k) => a + count(k), 0)).toBe(floorEps(ratio * C * 2));
        if (level === 'head') for (const heads of keep) for (const k of heads) expect(count(k)).toBe(floorEps(ratio * C));
      });
    }
  }

  it('ratio 1 evicts nothing', () => {
    const { keep } = simulate(777, 1, 'pair', 2, 2, 100, score);
    for (const heads of keep) for (const k of heads) expect(count(k)).toBe(777);
  });

  it('decides each position once, after it leaves the window, chunk by chunk', () => {
    const { plan, rounds } = simulate(1000, 0.5, 'pair', 3, 2, 300, score);
    expect(plan.window).toBe(20);
    expect(rounds).toEqual([[0, 280], [280, 580], [580, 880], [880, 980]]);
  });

  it('keeps the highest scores within a round (one global threshold at pair level)', () => {
    // one round: all scores of layer 0 above those of layer 1
    const byLayer = (s: number, h: number, j: number) => (s === 0 ? 10 : 0) + j / 1000 + h / 1e6;
    const { keep, plan } = simulate(500, 0.4, 'pair', 2, 2, 500, byLayer);
    const W = plan.window; // 10
    // budget 0.4·500·4 = 800 entries, 40 of them the window in each of 4 (layer, head): 760 chosen
    expect(count(keep[0]![0]!) + count(keep[0]![1]!)).toBe(760 + 2 * W); // every chosen entry comes from layer 0
    expect(count(keep[1]![0]!) + count(keep[1]![1]!)).toBe(2 * W); // layer 1 keeps its window only
  });

  it('per-layer budgets ignore score scales across layers', () => {
    const byLayer = (s: number, h: number, j: number) => (s === 0 ? 10 : 0) + ((j * 7919) % 500) / 500 + h;
    const { keep } = simulate(500, 0.4, 'layer', 2, 2, 500, byLayer);
    for (const heads of keep) expect(count(heads[0]!) + count(heads[1]!)).toBe(400);
    // head 1 scores higher than head 0 in every layer: it gets the larger share
    for (const heads of keep) expect(count(heads[1]!)).toBeGreaterThan(count(heads[0]!));
  });

  it('keeps the top-scored positions of each head at head level', () => {
    const { keep, plan } = simulate(400, 0.25, 'head', 1, 2, 400, (s, h, j) => (h === 0 ? j : -j));
    const W = plan.window; // 8
    // head 0 prefers late positions (the 92 just before the window), head 1 early ones
    expect(count(keep[0]![0]!, 400 - W - 92, 400 - W)).toBe(92);
    expect(count(keep[0]![1]!, 0, 92)).toBe(92);
  });
});
