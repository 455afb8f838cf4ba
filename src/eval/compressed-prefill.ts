// Chunked prefill with eviction after every chunk (docs/method.md §6): run a chunk over the masked
// cache, score its context tokens, then hide what the eviction plan drops. Later chunks,
// questions and reconstruction passes only see what was kept, per (layer, head).
import { MaskedCache, type MaskedSessions, type MaskedStep, type ForwardOptions } from './masked-runner.js';
import { EvictionPlan, type EvictionLevel, type WindowOptions } from './eviction.js';
import type { Scorer } from './scorers.js';
import type { ModelSpec } from '../model/config.js';
import type { DType } from '../onnx/builder.js';

/** What prefill with eviction needs of a cache: the masked simulation (MaskedCache) or the real one (runtime CompressedCache). */
export interface EvictableCache {
  readonly length: number;
  forward(ids: number[], o?: ForwardOptions): Promise<MaskedStep>;
  evict(s: number, h: number, pos: number): void;
  countVisible(s: number, h: number, start: number, end: number): number;
}

export interface CompressedPrefillOptions {
  ratio: number;
  level: EvictionLevel;
  prefillChunk: number;
  window: WindowOptions;
  /** the cache to fill (default: a MaskedCache over `sessions`) */
  cache?: EvictableCache;
}

export interface CompressedPrefill<C extends EvictableCache = EvictableCache> {
  cache: C;
  /** the scorer's scores of every context token: [L_s][H × ctxLen], head-major */
  scores: Float32Array[];
  /** logits after the last prefill token */
  lastLogits: Float32Array;
  /** visible fraction of the context's KV entries in the scored layers (prefix excluded) */
  kept: number;
  /** the same per scored layer (a global "pair" threshold may give layers very different shares) */
  keptPerLayer: number[];
  /** always-kept recent window used */
  window: number;
}

export async function compressedPrefill(
  sessions: MaskedSessions | null,
  spec: ModelSpec,
  cacheDtype: DType,
  prefixIds: number[],
  ctxIds: number[],
  scorer: Scorer,
  o: CompressedPrefillOptions,
): Promise<CompressedPrefill> {
  const L = spec.scoredLayers.length;
  const H = spec.numKvHeads;
  const P = prefixIds.length;
  const C = ctxIds.length;
  const all = [...prefixIds, ...ctxIds];
  if (!o.cache && !sessions) throw new Error('compressedPrefill: pass the masked sessions or a cache');
  const cache = o.cache ?? new MaskedCache(sessions!, spec, cacheDtype);
  const plan = new EvictionPlan(C, o.ratio, o.level, L, H, o.window);
  const scores = Array.from({ length: L }, () => new Float32Array(H * C));
  let lastLogits: Float32Array = new Float32Array(0);
  for (let a = 0; a < all.length; a += o.prefillChunk) {
    const b = Math.min(all.length, a + o.prefillChunk);
    const step = await cache.forward(all.slice(a, b), { snapWindow: scorer.snapWindow });
    lastLogits = step.logits;
    const ctxStart = Math.max(a, P) - P;
    const ctxEnd = b - P;
    if (ctxEnd <= ctxStart) continue; // a chunk of prefix only
    const chunkScores = await scorer.score({ ctxStart, ctxEnd, offset: Math.max(a, P) - a, T: b - a, step });
    const n = ctxEnd - ctxStart;
    chunkScores.forEach((sc, s) => {
      for (let h = 0; h < H; h++) scores[s]!.set(sc.subarray(h * n, (h + 1) * n), h * C + ctxStart);
    });
    const decision = plan.round(ctxEnd, (s, h, j) => scores[s]![h * C + j]!);
    for (const [s, h, j] of decision.evict) cache.evict(s, h, P + j);
  }
  if (!plan.finished) throw new Error('eviction plan did not reach the end of the context');
  const keptPerLayer = spec.scoredLayers.map((_, s) => {
    let visible = 0;
    for (let h = 0; h < H; h++) visible += cache.countVisible(s, h, P, P + C);
    return visible / (H * C);
  });
  return { cache, scores, lastLogits, kept: keptPerLayer.reduce((a, b) => a + b, 0) / L, keptPerLayer, window: plan.window };
}
