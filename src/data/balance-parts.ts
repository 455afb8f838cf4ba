// Which part of an n-way split (`extract --shard i/n`, `--shard auto`, `--gpus`, `--workers`)
// takes each context: longest first, each to the part with the fewest tokens so far (Graham's
// LPT rule, within 4/3 of the best split), so the parts carry about the same token work and the
// slowest part, which bounds the wall time, finishes about when the others do. Taking contexts
// by `index % n` instead put two of the five 100k-token contexts of the public recipe on one
// part of four. Deterministic (ties: the earlier context, the lower part): every process of a
// split computes the same assignment from the same plan.

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
  return part;
}
