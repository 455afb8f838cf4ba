// KV importance scorers compared by `fastkvzip eval`. Each turns one prefill chunk into
// scores [L_s][H × n] (head-major) for the chunk's n context tokens; higher = keep.
//
//   gates   trained Fast KVzip gates on the chunk's attention inputs (the ONNX gate model)
//   kvzip   exact KVzip scores of the whole context from the full cache (the oracle; `extract`'s algorithm)
//   snapkv  attention of the chunk's last `window` queries (SnapKV / kvpress SnapKVPress):
//           softmax over the visible keys in fp32, mean over the window queries and over the
//           G query heads of each KV head, a 1-D average pool (kernel 5, zero padding, as
//           kvpress's avg_pool1d); the window's own tokens get the layer's maximum score
//   window  the position (the most recent survive: StreamingLLM, the prefix acting as sinks)
//   random  seeded uniform noise
import type { MaskedStep } from './masked-runner.js';
import { ort } from '../runtime/session.js';
import { Rng } from '../util/random.js';

export type ScorerName = 'gates' | 'kvzip' | 'snapkv' | 'window' | 'random';
export const SCORER_NAMES: ScorerName[] = ['gates', 'kvzip', 'snapkv', 'window', 'random'];

export interface ChunkView {
  /** context positions [ctxStart, ctxEnd) of the chunk's context tokens */
  ctxStart: number;
  ctxEnd: number;
  /** index of the first context token inside the chunk (prefix tokens come first in chunk 0) */
  offset: number;
  /** tokens in the chunk */
  T: number;
  step: MaskedStep;
}

export interface Scorer {
  readonly name: ScorerName;
  /** SnapKV observation window the chunk forward must compute (0: none) */
  readonly snapWindow: number;
  score(chunk: ChunkView): Promise<Float32Array[]>;
}

export interface ScorerDims {
  layers: number;
  heads: number;
  hidden: number;
}

/** scores[s][h * ctxLen + j] for the whole context, computed once (the oracle). */
export function kvzipScorer(scores: Float32Array[], ctxLen: number, dims: ScorerDims): Scorer {
  return {
    name: 'kvzip',
    snapWindow: 0,
    async score(c) {
      const n = c.ctxEnd - c.ctxStart;
      return scores.map((sc) => {
        const out = new Float32Array(dims.heads * n);
        for (let h = 0; h < dims.heads; h++) out.set(sc.subarray(h * ctxLen + c.ctxStart, h * ctxLen + c.ctxEnd), h * n);
        return out;
      });
    },
  };
}

/** Gate session input attn_input [L, n, D] in `dtype`; output scores [L, H, n]. */
export function gateScorer(session: ort.InferenceSession, dims: ScorerDims, dtype: 'float32' | 'float16'): Scorer {
  return {
    name: 'gates',
    snapWindow: 0,
    async score(c) {
      const n = c.ctxEnd - c.ctxStart;
      const D = dims.hidden;
      const data = dtype === 'float32' ? new Float32Array(dims.layers * n * D) : new Uint16Array(dims.layers * n * D);
      c.step.attnInputs.forEach((x, s) => {
        if ((dtype === 'float32') !== x instanceof Float32Array) throw new Error('gate input dtype does not match the captured attention inputs');
        data.set(x.subarray(c.offset * D, (c.offset + n) * D) as never, s * n * D);
      });
      const out = await session.run({ attn_input: new ort.Tensor(dtype, data, [dims.layers, n, D]) });
      const scores = out.scores!.data as Float32Array;
      return Array.from({ length: dims.layers }, (_, s) => scores.slice(s * dims.heads * n, (s + 1) * dims.heads * n));
    },
  };
}

/** 1-D average pool, kernel k (odd), zero padding counted in the divisor (PyTorch avg_pool1d defaults). */
export function avgPool1d(x: Float32Array, k: number): Float32Array {
  const r = Math.floor(k / 2);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    let s = 0;
    for (let j = Math.max(0, i - r); j <= Math.min(x.length - 1, i + r); j++) s += x[j]!;
    out[i] = s / k;
  }
  return out;
}

export function snapkvScorer(dims: ScorerDims, window = 64, kernel = 5): Scorer {
  return {
    name: 'snapkv',
    snapWindow: window,
    async score(c) {
      const n = c.ctxEnd - c.ctxStart;
      const w = Math.min(window, c.T);
      const observed = Math.max(0, c.T - w - c.offset); // context tokens before the window
      return c.step.snap.map((attn) => {
        const out = new Float32Array(dims.heads * n);
        let max = 0;
        for (let h = 0; h < dims.heads; h++) {
          const row = attn.subarray(h * c.T + c.offset, h * c.T + c.offset + observed);
          const pooled = avgPool1d(row, kernel);
          out.set(pooled, h * n);
          for (const v of pooled) max = Math.max(max, v);
        }
        const top = observed > 0 ? max : 1;
        for (let h = 0; h < dims.heads; h++) out.fill(top, h * n + observed, (h + 1) * n);
        return out;
      });
    },
  };
}

/** Later positions score higher; every layer and head alike. */
export function windowScorer(dims: ScorerDims): Scorer {
  return {
    name: 'window',
    snapWindow: 0,
    async score(c) {
      const n = c.ctxEnd - c.ctxStart;
      return Array.from({ length: dims.layers }, () => {
        const out = new Float32Array(dims.heads * n);
        for (let h = 0; h < dims.heads; h++) for (let j = 0; j < n; j++) out[h * n + j] = c.ctxStart + j;
        return out;
      });
    },
  };
}

export function randomScorer(dims: ScorerDims, seed: number): Scorer {
  const rng = new Rng(seed);
  return {
    name: 'random',
    snapWindow: 0,
    async score(c) {
      const n = c.ctxEnd - c.ctxStart;
      return Array.from({ length: dims.layers }, () => Float32Array.from({ length: dims.heads * n }, () => rng.next()));
    },
  };
}
