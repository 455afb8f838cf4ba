// A RoPE override applied to a checkpoint before it runs. The public extraction loads Qwen3
// checkpoints that are not -Instruct with YaRN x4 over 32,768 positions (131,072 in all), and
// its 100k-token concatenated contexts are scored under that RoPE (docs/method.md, "Model setup").
import type { ModelSpec } from './config.js';
import { UserError } from '../util/errors.js';

export interface RopeOverride {
  type: 'yarn';
  factor: number;
  /** positions the checkpoint was trained on (YaRN's original_max_position_embeddings) */
  originalMaxPositions: number;
  /** max_position_embeddings after the override (factor x original, as the public loader sets it) */
  maxPositions: number;
}

/** The public extraction's Qwen3 setup. */
export const QWEN3_PUBLIC_YARN = 'yarn:4:32768';

/** `none` -> null; `yarn:<factor>:<original_max_positions>` -> the override. `what` names the source in errors. */
export function parseRopeOverride(text: string, what = '--rope-override'): RopeOverride | null {
  const s = text.trim();
  if (s === '' || s === 'none') return null;
  const m = /^yarn:([0-9.]+):([0-9]+)$/.exec(s);
  const factor = m ? Number(m[1]) : NaN;
  const original = m ? Number(m[2]) : NaN;
  if (!m || !(factor > 1) || !Number.isFinite(factor) || !Number.isSafeInteger(original) || original <= 0) {
    throw new UserError(`${what}: "${text}" is not "none" or "yarn:<factor > 1>:<original positions>" (the public Qwen3 setup is ${QWEN3_PUBLIC_YARN})`, 2);
  }
  return { type: 'yarn', factor, originalMaxPositions: original, maxPositions: Math.round(factor * original) };
}

export function formatRopeOverride(o: RopeOverride | null): string {
  return o ? `${o.type}:${o.factor}:${o.originalMaxPositions}` : 'none';
}

/**
 * The spec with the override's RoPE on every layer that the checkpoint's own RoPE drives
 * (theta and partial rotation kept), and its position limit. Gemma-3 keeps two RoPEs per
 * model; an override there is refused rather than guessed.
 */
export function applyRopeOverride(spec: ModelSpec, o: RopeOverride | null): ModelSpec {
  if (!o) return spec;
  if (spec.family === 'gemma3') throw new UserError(`--rope-override: not supported for ${spec.family} (its global and sliding layers use different RoPEs)`, 2);
  const rope = {
    theta: spec.rope.theta,
    partialFactor: spec.rope.partialFactor,
    type: 'yarn',
    factor: o.factor,
    originalMaxPositions: o.originalMaxPositions,
    betaFast: 32,
    betaSlow: 1,
  };
  return { ...spec, rope, ropeLocal: rope, maxPositions: o.maxPositions };
}
