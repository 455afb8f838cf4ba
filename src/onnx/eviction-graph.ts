// Graph pieces for evaluating KV eviction by masking (src/eval): a per-KV-head keep mask over
// the cached positions becomes an additive attention bias for GroupQueryAttention, and the
// SnapKV observation-window attention is computed next to it. Masked positions stay in the
// cache buffers (nothing is freed); they are only made invisible to later queries.
import type { Graph, DType } from './builder.js';
import type { ModelSpec } from '../model/config.js';

/** Most negative finite value of a compute dtype (a finite "-inf" that survives any cast). */
function lowest(dtype: DType): number {
  if (dtype === 'float16') return -65504;
  return -3.0e38; // fp32 and bf16 share the exponent range
}

/**
 * [H, past + T] additive bias (0 keep, lowest evict) for scored layer `s`: columns of the past
 * come from keep[s] ([H, past] bool), the T new tokens are always visible (GQA's own causal
 * mask handles them).
 */
export function evictionBias(g: Graph, keep: string, s: number, newLen: string, H: number, dtype: DType): string {
  const keepS = g.gather(keep, g.constant(s, 'int64'), 0); // [H, past]
  const zero = g.cast(g.constant(0, 'float32'), dtype);
  const pastBias = g.op('Where', [keepS, zero, g.cast(g.constant(lowest(dtype), 'float32'), dtype)]);
  const newShape = g.concat([g.constant([H], 'int64'), g.reshape(newLen, [1])], 0);
  return g.concat([pastBias, g.op('Expand', [zero, newShape])], 1);
}

/** [H, total] per KV head -> GQA's attention_bias [1, H*G, T, total] (query head q reads KV head q / G). */
export function gqaBias(g: Graph, biasHT: string, spec: ModelSpec, newLen: string): string {
  const H = spec.numKvHeads;
  const G = spec.numHeads / H;
  const total = g.shape(biasHT, 1, 2);
  const b5 = g.reshape(biasHT, g.concat([g.constant([1, H, 1, 1], 'int64'), total], 0));
  const full = g.op('Expand', [b5, g.concat([g.constant([1, H, G], 'int64'), g.reshape(newLen, [1]), total], 0)]);
  return g.reshape(full, g.concat([g.constant([1, spec.numHeads], 'int64'), g.reshape(newLen, [1]), total], 0));
}

/**
 * SnapKV observation-window attention for the chunk's own tokens: the last w' = min(w, T)
 * queries of the chunk attend (softmax in fp32, causal, evicted keys hidden) to every visible
 * key; the probabilities are averaged over the window queries and over the G query heads of
 * each KV head. Returns [H, T] (columns past..past+T-1). Pooling and the window's own columns
 * are handled by the caller (src/eval/scorers.ts).
 */
export function snapWindowAttention(
  g: Graph,
  spec: ModelSpec,
  query: string, // [1, T, Hq, d]
  presentKey: string, // [1, H, total, d]
  biasHT: string, // [H, total] compute dtype
  pastLen: string, // int64 scalar
  window: string, // int64 scalar
): string {
  const H = spec.numKvHeads;
  const G = spec.numHeads / H;
  const d = spec.headDim;
  const f32 = (x: string) => g.cast(x, 'float32');
  const start = g.op('Neg', [window]);
  const qw = g.slice(query, [start], [Number.MAX_SAFE_INTEGER], [1]); // [1, w', Hq, d]
  const wLen = g.reshape(g.shape(qw, 1, 2), []);
  const q = f32(g.transpose(g.reshape(g.squeeze(qw, [0]), [-1, H, G, d]), [1, 2, 0, 3])); // [H, G, w', d]
  const kT = g.unsqueeze(f32(g.transpose(g.squeeze(presentKey, [0]), [0, 2, 1])), [1]); // [H, 1, d, total]
  const logits = g.mul(g.matmul(q, kT), g.constant(spec.attnScale, 'float32')); // [H, G, w', total]
  const total = g.reshape(g.shape(presentKey, 2, 3), []);
  const cols = g.op('Range', [g.constant(0, 'int64'), total, g.constant(1, 'int64')]); // [total]
  const rowPos = g.add(g.op('Range', [g.constant(0, 'int64'), wLen, g.constant(1, 'int64')]), g.sub(total, wLen)); // [w'] absolute
  const future = g.op('Greater', [g.unsqueeze(cols, [0]), g.unsqueeze(rowPos, [1])]); // [w', total]
  const causal = g.op('Where', [future, g.constant(-Infinity, 'float32'), g.constant(0, 'float32')]);
  const evict = g.unsqueeze(g.op('Max', [f32(biasHT), g.constant(-1e30, 'float32')]), [1, 2]); // [H, 1, 1, total]
  const probs = g.op('Softmax', [g.add(g.add(logits, causal), evict)], { axis: -1 });
  const mean = g.reduce('ReduceMean', probs, [1, 2], false); // [H, total]
  return g.slice(mean, [pastLen], [total], [1]);
}
