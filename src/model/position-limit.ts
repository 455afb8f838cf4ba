// How long a context the model can score as it was trained: read from its config alone
// (max_position_embeddings, or Qwen2.5-1M's dual-chunk size), so it lives with the model.
import type { ModelSpec } from './config.js';

export interface PositionLimit {
  positions: number;
  /** the reason, for messages: "... beyond <why>" */
  why: string;
}

/** How many positions the model runs as it was trained (or, for DCA checkpoints, as full attention). */
export function positionLimit(spec: ModelSpec): PositionLimit {
  if (spec.dualChunkSize !== null && spec.dualChunkSize < spec.maxPositions) {
    return { positions: spec.dualChunkSize, why: `the ${spec.dualChunkSize.toLocaleString('en-US')}-position chunk of its dual chunk attention, which is not implemented (within one chunk it is full attention)` };
  }
  return { positions: spec.maxPositions, why: `the model's ${spec.maxPositions.toLocaleString('en-US')} trained positions (max_position_embeddings)` };
}
