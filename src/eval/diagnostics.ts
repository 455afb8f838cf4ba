// How a scorer's scores relate to the KVzip oracle's on one context (per scored layer), to
// explain the quality numbers: rank correlation, the 0.05-threshold accuracy the trainer
// reports, and how much of the oracle's score mass the scorer's top 30 % would keep.

export interface ScoreDiagnostics {
  /** Pearson correlation with the oracle */
  pearson: number[];
  /** Spearman rank correlation with the oracle */
  spearman: number[];
  /** (score ≥ 0.05) == (oracle ≥ 0.05), the trainer's accuracy (meaningful for gates and kvzip) */
  acc005: number[];
  /** fraction of entries the oracle scores ≥ 0.05 */
  oracleAbove005: number[];
  /** oracle score mass inside the scorer's top 30 % / inside the oracle's own top 30 % */
  mass30: number[];
}

function pearson(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i]!;
    mb += b[i]!;
  }
  ma /= n;
  mb /= n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    const x = a[i]! - ma;
    const y = b[i]! - mb;
    sab += x * y;
    saa += x * x;
    sbb += y * y;
  }
  return saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : 0;
}

/** Average ranks (ties share their mean rank). */
function ranks(v: ArrayLike<number>): Float64Array {
  const idx = Array.from({ length: v.length }, (_, i) => i).sort((x, y) => v[x]! - v[y]!);
  const r = new Float64Array(v.length);
  for (let i = 0; i < idx.length; ) {
    let j = i;
    while (j + 1 < idx.length && v[idx[j + 1]!] === v[idx[i]!]) j++;
    for (let k = i; k <= j; k++) r[idx[k]!] = (i + j) / 2;
    i = j + 1;
  }
  return r;
}

function topIndices(v: ArrayLike<number>, k: number): number[] {
  return Array.from({ length: v.length }, (_, i) => i)
    .sort((a, b) => v[b]! - v[a]! || a - b)
    .slice(0, k);
}

/** oracle/candidate: [L_s][H × ctxLen] */
export function scoreDiagnostics(oracle: Float32Array[], candidate: Float32Array[], _heads: number): ScoreDiagnostics {
  const d: ScoreDiagnostics = { pearson: [], spearman: [], acc005: [], oracleAbove005: [], mass30: [] };
  oracle.forEach((ref, l) => {
    const c = candidate[l]!;
    d.pearson.push(pearson(ref, c));
    d.spearman.push(pearson(ranks(ref), ranks(c)));
    let agree = 0;
    let above = 0;
    for (let i = 0; i < ref.length; i++) {
      if (ref[i]! >= 0.05 === c[i]! >= 0.05) agree++;
      if (ref[i]! >= 0.05) above++;
    }
    d.acc005.push(agree / ref.length);
    d.oracleAbove005.push(above / ref.length);
    const k = Math.max(1, Math.ceil(0.3 * ref.length));
    const mass = (idx: number[]) => idx.reduce((a, i) => a + ref[i]!, 0);
    const best = mass(topIndices(ref, k));
    d.mass30.push(best > 0 ? mass(topIndices(c, k)) / best : 0);
  });
  return d;
}
