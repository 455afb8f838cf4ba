// Which part of an n-way split (`extract --shard i/n`, `--shard auto`, `--gpus`, `--workers`)
// takes each context: longest first, each to the part with the fewest tokens so far (Graham's
// LPT rule, within 4/3 of the best split), then pairwise exchanges between the heaviest and the
// lightest part while they even them out; so the parts carry about the same token work and the
// slowest part, which bounds the wall time, finishes about when the others do. Taking contexts
// by `index % n` instead put two of the five 100k-token contexts of the public recipe on one
// part of four. Deterministic (ties: the earlier context, the lower part): every process of a
// split computes the same assignment from the same plan.

/** Above this many contexts the exchange pass (pairs of contexts: quadratic) is skipped; LPT alone then leaves the parts within about one short context of each other. */
const EXCHANGE_MAX_CONTEXTS = 2000;
/** Bound on exchange rounds (each strictly lowers the spread of the loads; this only caps the work). */
const EXCHANGE_MAX_ROUNDS = 1000;

/** Part (0..parts-1) of each context, from the contexts' token counts in recipe order. */
export function balancedParts(tokens: readonly number[], parts: number): number[] {
  if (!Number.isInteger(parts) || parts < 1) throw new RangeError(`balancedParts: parts must be a positive integer (got ${parts})`);
  const order = tokens.map((_, i) => i).sort((a, b) => tokens[b]! - tokens[a]! || a - b);
  const load = new Array<number>(parts).fill(0);
  const part = new Array<number>(tokens.length);
  for (const i of order) {
    let best = 0;
    for (let p = 1; p < parts; p++) if (load[p]! < load[best]!) best = p;
    part[i] = best;
    load[best] += tokens[i]!;
  }
  if (parts > 1 && tokens.length <= EXCHANGE_MAX_CONTEXTS) exchange(tokens, part, load);
  return part;
}

/**
 * Moves a context of the heaviest part to the lightest, or swaps it for a smaller one there,
 * choosing the change that brings the two closest to their mean; stops when none narrows the gap.
 */
function exchange(tokens: readonly number[], part: number[], load: number[]): void {
  for (let round = 0; round < EXCHANGE_MAX_ROUNDS; round++) {
    let h = 0;
    let l = 0;
    for (let p = 1; p < load.length; p++) {
      if (load[p]! > load[h]!) h = p;
      if (load[p]! < load[l]!) l = p;
    }
    const gap = load[h]! - load[l]!;
    let best: { i: number; j: number; miss: number } | null = null;
    for (let i = 0; i < tokens.length; i++) {
      if (part[i] !== h) continue;
      for (let j = -1; j < tokens.length; j++) {
        if (j >= 0 && part[j] !== l) continue;
        const d = tokens[i]! - (j >= 0 ? tokens[j]! : 0);
        if (d <= 0 || d >= gap) continue;
        const miss = Math.abs(gap - 2 * d);
        if (!best || miss < best.miss) best = { i, j, miss };
      }
    }
    if (!best) return;
    const d = tokens[best.i]! - (best.j >= 0 ? tokens[best.j]! : 0);
    part[best.i] = l;
    if (best.j >= 0) part[best.j] = h;
    load[h]! -= d;
    load[l]! += d;
  }
}
