// Greedy generation over the step graph: prefill the prompt in chunks, then one token at a time.
import type { ModelSpec } from '../model/config.js';
import { StepRunner } from './step.js';
import { ort } from './session.js';
import type { DType } from '../onnx/builder.js';

export interface GenerateOptions {
  maxNewTokens: number;
  /** stop at any of these ids (default: the model's eos ids) */
  stopIds?: number[];
  /** longest prefill chunk */
  prefillChunk?: number;
  onToken?: (id: number) => void;
}

export function argmax(v: Float32Array, offset = 0, length = v.length - offset): number {
  let best = offset;
  for (let i = offset + 1; i < offset + length; i++) if (v[i]! > v[best]!) best = i;
  return best - offset;
}

/** Greedy continuation of `promptIds` (the step graph must emit last-position logits). */
export async function generateGreedy(session: ort.InferenceSession, spec: ModelSpec, cacheDtype: DType, promptIds: number[], o: GenerateOptions): Promise<number[]> {
  if (promptIds.length === 0) throw new Error('empty prompt');
  const runner = new StepRunner(session, spec, cacheDtype);
  const stop = new Set(o.stopIds ?? spec.eosTokenIds);
  const chunk = o.prefillChunk ?? 4096;
  let logits: Float32Array | undefined;
  for (let i = 0; i < promptIds.length; i += chunk) logits = (await runner.forward(promptIds.slice(i, i + chunk))).logits;
  const out: number[] = [];
  for (let t = 0; t < o.maxNewTokens; t++) {
    const V = spec.vocabSize;
    const next = argmax(logits!, logits!.length - V, V);
    out.push(next);
    o.onToken?.(next);
    if (stop.has(next)) break;
    logits = (await runner.forward([next])).logits;
  }
  return out;
}
