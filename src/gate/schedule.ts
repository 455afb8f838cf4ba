// The public recipe's data split, batch order and learning-rate schedule (docs/method.md §4). Pure logic.
import { Rng } from '../util/random.js';

/** lr multiplier: 0.01·step during the first 1 % of steps, 1 until 50 %, 0.5 until 75 %, 0.25 after. */
export function lrMultiplier(step: number, maxSteps: number): number {
  if (step < 0.01 * maxSteps) return 0.01 * step;
  if (step >= 0.75 * maxSteps) return 0.25;
  if (step >= 0.5 * maxSteps) return 0.5;
  return 1;
}

/** Token-level split: every 100th position (1-based) of the concatenated stream is held out. */
export function splitPositions(total: number, every = 100): { train: Int32Array; test: Int32Array } {
  const nTest = Math.floor(total / every);
  const train = new Int32Array(total - nTest);
  const test = new Int32Array(nTest);
  let a = 0;
  let b = 0;
  for (let p = 0; p < total; p++) {
    if ((p + 1) % every === 0) test[b++] = p;
    else train[a++] = p;
  }
  return { train, test };
}

/** Keep a seeded random `fraction` of positions (in their original order). */
export function subsample(positions: Int32Array, fraction: number, seed: number): Int32Array {
  if (fraction >= 1) return positions;
  const rng = new Rng(seed ^ 0x5eed);
  return positions.filter(() => rng.next() < fraction);
}

/**
 * Epoch-wise batches like the public loop: n_split = ⌊n/B⌋ batches per epoch, a fresh
 * permutation at the start of every epoch (derived from the seed and the epoch number, so any
 * step can be regenerated on resume), batch i = perm[split·B, (split+1)·B).
 */
export class BatchOrder {
  readonly perEpoch: number;
  private epoch = -1;
  private perm: Int32Array = new Int32Array(0);

  constructor(
    private readonly train: Int32Array,
    readonly batch: number,
    private readonly seed: number,
  ) {
    if (train.length < batch) throw new Error(`only ${train.length} training positions for a batch of ${batch}`);
    this.perEpoch = Math.floor(train.length / batch);
  }

  /** positions of batch `step` (global token positions) */
  at(step: number): Int32Array {
    const epoch = Math.floor(step / this.perEpoch);
    if (epoch !== this.epoch) {
      this.perm = new Rng((this.seed * 2654435761 + epoch * 40503 + 1) >>> 0).permutation(this.train.length);
      this.epoch = epoch;
    }
    const split = step % this.perEpoch;
    const out = new Int32Array(this.batch);
    for (let j = 0; j < this.batch; j++) out[j] = this.train[this.perm[split * this.batch + j]!]!;
    return out;
  }
}

/**
 * Runs of steps between metric points: [0], (0, 50], (50, 100], …, then the remainder, so that
 * the last step of every run is a metric step (train metrics of that step's batch, held-out
 * metrics after its update — the public timing) and the final step closes the last run.
 */
export function stepBlocks(steps: number, every: number): { start: number; end: number; metric: boolean }[] {
  const out: { start: number; end: number; metric: boolean }[] = [];
  let start = 0;
  for (let m = 0; m < steps; m += every) {
    out.push({ start, end: m + 1, metric: true });
    start = m + 1;
  }
  if (start < steps) out.push({ start, end: steps, metric: false });
  return out.filter((b) => b.end > b.start);
}

/** Recall of the reference top-k set by the candidate's top-k (k = ⌈fraction·n⌉). */
export function topKRecall(reference: ArrayLike<number>, candidate: ArrayLike<number>, fraction: number): number {
  const n = reference.length;
  const k = Math.max(1, Math.ceil(fraction * n));
  const top = (v: ArrayLike<number>) => {
    const idx = Array.from({ length: n }, (_, i) => i);
    idx.sort((a, b) => v[b]! - v[a]! || a - b);
    return new Set(idx.slice(0, k));
  };
  const ref = top(reference);
  let hit = 0;
  for (const i of top(candidate)) if (ref.has(i)) hit++;
  return hit / k;
}

/**
 * The same top-k set as topKRecall picks (ties broken by lower index), as a mask, in
 * O(n log n) on a typed array: the training curves compute it at every evaluation.
 */
export function topKMask(values: ArrayLike<number>, fraction: number): Uint8Array {
  const n = values.length;
  const k = Math.max(1, Math.ceil(fraction * n));
  const sorted = Float64Array.from(values as ArrayLike<number>).sort();
  const t = sorted[n - k]!;
  const mask = new Uint8Array(n);
  let taken = 0;
  for (let i = 0; i < n; i++) if (values[i]! > t) (mask[i] = 1), taken++;
  for (let i = 0; i < n && taken < k; i++) if (values[i] === t) (mask[i] = 1), taken++;
  return mask;
}

/** topKRecall(reference, candidate, fraction) with the reference's mask computed once. */
export function recallAgainst(referenceMask: Uint8Array, candidate: ArrayLike<number>, fraction: number): number {
  const cand = topKMask(candidate, fraction);
  let hit = 0;
  let k = 0;
  for (let i = 0; i < cand.length; i++) {
    if (cand[i]) {
      k++;
      if (referenceMask[i]) hit++;
    }
  }
  return hit / k;
}
