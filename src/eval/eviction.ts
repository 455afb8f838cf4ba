// Which KV entries survive chunked prefill with eviction (docs/method.md §6), restating the public
// Fast KVzip semantics (prefill/model/wrapper.py `prefill`, attention/score.py `_threshold*`):
//
// - The prefix (template system prompt + instruction) is never evicted and is not counted:
//   ratios are fractions of the context's KV entries of the scored layers.
// - The most recent `window` context tokens are always kept: 4 096, or windowRatio (2 %) of
//   the context when it is shorter than `shortContext` (the public code uses its prefill chunk,
//   16 000, as that bound). The window counts toward the budget: the ratio of the other
//   positions is lowered to (ratio·C − W)/(C − W), and when ratio·C < W the window shrinks to
//   ratio·C and nothing else is kept.
// - After each prefill chunk the context positions that have left the window since the last
//   round are decided at once: "pair" keeps the best-scored entries over all (layer, head,
//   position) triples with one global threshold, "layer" gives every layer the same budget,
//   "head" every (layer, head).
//
// Our choices where the public code is loose: budgets are exact integers (cumulative
// floor(K · end / E) per group, so the whole context keeps exactly floor(ratio · C · units)
// entries per group, where the public `score > threshold` keeps one fewer and drops ties),
// and ties break deterministically (higher score, then later position, then lower layer/head).

export type EvictionLevel = 'pair' | 'layer' | 'head';
export const EVICTION_LEVELS: EvictionLevel[] = ['pair', 'layer', 'head'];

export interface WindowOptions {
  /** always-kept recent tokens for long contexts (4 096) */
  window: number;
  /** fraction of short contexts kept as the window (0.02) */
  windowRatio: number;
  /** contexts shorter than this use windowRatio (16 000, the public prefill chunk) */
  shortContext: number;
}

export const PUBLIC_WINDOW: WindowOptions = { window: 4096, windowRatio: 0.02, shortContext: 16000 };

/** floor(x) that forgives binary rounding just below an integer (0.29 · 100 = 28.999…). */
export function floorEps(x: number): number {
  return Math.floor(x + 1e-9);
}

/** NaN would break sorting: it ranks below every real score. */
function orderable(v: number): number {
  return Number.isNaN(v) ? -Infinity : v;
}

/** The always-kept recent window of a context of `ctxLen` tokens at kept fraction `ratio`. */
export function recentWindow(ctxLen: number, ratio: number, o: WindowOptions): number {
  let w = ctxLen < o.shortContext ? floorEps(o.windowRatio * ctxLen) : o.window;
  w = Math.min(w, ctxLen);
  const budget = floorEps(ratio * ctxLen);
  return ratio < 1 && budget < w ? budget : w;
}

/**
 * Keep the `budget` best of members × [start, end) (higher score, then later position, then lower
 * layer, lower head) and push the rest to `evict`. The order is the one a full sort gives, found
 * with a native sort of the scores for the threshold and a comparator sort of its ties only (a
 * comparator sort of millions of entries, the Qwen3-8B shape's 16k chunk, took seconds).
 */
function selectEvicted(members: [number, number][], start: number, end: number, budget: number, score: ScoreLookup, evict: [number, number, number][]): void {
  const span = end - start;
  const vals = new Float32Array(members.length * span);
  members.forEach(([s, h], m) => {
    for (let j = start; j < end; j++) vals[m * span + j - start] = orderable(score(s, h, j));
  });
  if (budget <= 0) {
    for (const [s, h] of members) for (let j = start; j < end; j++) evict.push([s, h, j]);
    return;
  }
  const threshold = vals.slice().sort()[vals.length - budget]!; // the budget-th best score
  let above = 0;
  for (const v of vals) if (v > threshold) above++;
  const ties: { s: number; h: number; j: number }[] = [];
  members.forEach(([s, h], m) => {
    for (let j = start; j < end; j++) {
      const v = vals[m * span + j - start]!;
      if (v < threshold) evict.push([s, h, j]);
      else if (v === threshold) ties.push({ s, h, j });
    }
  });
  ties.sort((a, b) => b.j - a.j || a.s - b.s || a.h - b.h);
  for (let i = budget - above; i < ties.length; i++) evict.push([ties[i]!.s, ties[i]!.h, ties[i]!.j]);
}

/** Scores of decided-now positions: score(s, h, j) for scored layer s, KV head h, context position j. */
export type ScoreLookup = (s: number, h: number, j: number) => number;

export interface RoundDecision {
  /** context positions [start, end) decided in this round */
  start: number;
  end: number;
  /** entries to hide: [s, h, j] (context position j) */
  evict: [number, number, number][];
}

/**
 * Budget bookkeeping for one context at one ratio. Call `round(seen, scores)` after each
 * prefill chunk with the number of context tokens seen so far; the last call must have
 * seen = ctxLen.
 */
export class EvictionPlan {
  readonly window: number;
  /** positions that can be evicted: [0, ctxLen - window) */
  readonly evictable: number;
  /** entries of one budget group per position: L·H (pair), H (layer), 1 (head) */
  readonly units: number;
  /** kept entries of each group over the evictable positions, window excluded */
  readonly groupBudget: number;
  private readonly kept: number[];
  private done = 0;

  constructor(
    readonly ctxLen: number,
    readonly ratio: number,
    readonly level: EvictionLevel,
    readonly layers: number,
    readonly heads: number,
    windowOptions: WindowOptions,
  ) {
    if (!(ratio > 0 && ratio <= 1)) throw new Error(`ratio must be in (0, 1], got ${ratio}`);
    this.window = recentWindow(ctxLen, ratio, windowOptions);
    this.evictable = ctxLen - this.window;
    this.units = level === 'pair' ? layers * heads : level === 'layer' ? heads : 1;
    this.groupBudget = Math.max(0, floorEps(ratio * ctxLen * this.units) - this.window * this.units);
    this.kept = Array(this.groups).fill(0);
  }

  get groups(): number {
    return this.level === 'pair' ? 1 : this.level === 'layer' ? this.layers : this.layers * this.heads;
  }

  /** entries kept per group at the end (window included) */
  get keptPerGroup(): number {
    return this.groupBudget + this.window * this.units;
  }

  /** members [s, h] of group g */
  private members(g: number): [number, number][] {
    const out: [number, number][] = [];
    for (let s = 0; s < this.layers; s++) {
      for (let h = 0; h < this.heads; h++) {
        const group = this.level === 'pair' ? 0 : this.level === 'layer' ? s : s * this.heads + h;
        if (group === g) out.push([s, h]);
      }
    }
    return out;
  }

  /** Decide the positions that left the window after `seen` context tokens. */
  round(seen: number, score: ScoreLookup): RoundDecision {
    const start = this.done;
    const end = Math.max(start, Math.min(this.evictable, seen - this.window));
    const evict: [number, number, number][] = [];
    if (end > start) {
      for (let g = 0; g < this.groups; g++) {
        const target = Math.floor((this.groupBudget * end) / this.evictable);
        const budget = target - this.kept[g]!;
        const members = this.members(g);
        if (budget >= members.length * (end - start)) {
          this.kept[g] = target; // everything kept (ratio 1): nothing to rank
          continue;
        }
        selectEvicted(members, start, end, budget, score, evict);
        this.kept[g] = target;
      }
    }
    this.done = end;
    return { start, end, evict };
  }

  /** true once every evictable position has been decided */
  get finished(): boolean {
    return this.done >= this.evictable;
  }
}
