// The "step_compressed" graphs: the step graph over a KV cache that really shrinks. Every
// (layer, KV head) has a cache buffer of its own, past_key.<l>.<h> / past_value.<l>.<h>
// [1, 1, n, d], with its own length n (a global eviction threshold keeps different counts per
// layer and per head), so nothing is padded; each KV head's attention runs on its buffer.
// Evicted entries are absent, not masked; kept keys carry the RoPE of their original positions,
// and position_ids give the new tokens theirs.
import { Graph } from './builder.js';
import type { ModelSpec } from '../model/config.js';
import { makeEmbedding, makeLayer, makeLmHead, type DecoderContext, type ForwardInputs, type HeadCache } from './decoder.js';
import { cacheIoDtype, attnInputIoDtype } from './step-graph.js';

export interface CompressedGraphOptions {
  /** 'last' (prefill chunks and decoding; emits the scored layers' attention inputs for the gates) or 'all' (teacher forcing) */
  logits: 'all' | 'last';
  /** input snap_window (int64 scalar) and outputs snap.<l> [H, T]: SnapKV window attention of the scored layers */
  snapScores?: boolean;
}

/**
 * SnapKV observation-window attention over the compacted cache (the masked graph's
 * snapWindowAttention, src/onnx/eviction-graph.ts, for per-head buffers): the chunk's last
 * w' = min(w, T) queries attend (fp32 softmax, causal) to each KV head's held entries; the mean
 * over the window queries and the G query heads, at the chunk's own columns (the last T of each
 * head's present). Returns [H, T].
 */
export function compressedSnap(g: Graph, spec: ModelSpec, query: string, presentKeys: string[], window: string): string {
  const H = spec.numKvHeads;
  const G = spec.numHeads / H;
  const d = spec.headDim;
  const f32 = (x: string) => g.cast(x, 'float32');
  const range = (n: string) => g.op('Range', [g.constant(0, 'int64'), n, g.constant(1, 'int64')]);
  const qw = g.slice(query, [g.op('Neg', [window])], [Number.MAX_SAFE_INTEGER], [1]); // [1, w', Hq, d]
  const wLen = g.reshape(g.shape(qw, 1, 2), []);
  const T = g.reshape(g.shape(query, 1, 2), []);
  const q = f32(g.transpose(g.reshape(g.squeeze(qw, [0]), [-1, H, G, d]), [1, 2, 0, 3])); // [H, G, w', d]
  const rows: string[] = [];
  presentKeys.forEach((pk, h) => {
    const N = g.reshape(g.shape(pk, 2, 3), []); // n + T
    const kT = f32(g.transpose(g.reshape(pk, [-1, d]), [1, 0])); // [d, N]
    const qh = g.squeeze(g.slice(q, [h], [h + 1], [0]), [0]); // [G, w', d]
    const logits = g.mul(g.matmul(qh, kT), g.constant(spec.attnScale, 'float32')); // [G, w', N]
    // window query i is chunk row T - w' + i, i.e. column N - w' + i: it sees every column up to its own
    const rowCol = g.add(range(wLen), g.sub(N, wLen)); // [w']
    const visible = g.op('LessOrEqual', [g.unsqueeze(range(N), [0]), g.unsqueeze(rowCol, [1])]); // [w', N]
    const bias = g.op('Where', [visible, g.constant(0, 'float32'), g.constant(-Infinity, 'float32')]);
    const probs = g.op('Softmax', [g.add(logits, bias)], { axis: -1 });
    const mean = g.reduce('ReduceMean', probs, [0, 1], false); // [N]
    rows.push(g.unsqueeze(g.slice(mean, [g.op('Neg', [T])], [Number.MAX_SAFE_INTEGER], [0]), [0])); // [1, T]
  });
  return rows.length === 1 ? rows[0]! : g.concat(rows, 0);
}

export function buildCompressedGraph(ctx: DecoderContext, opts: CompressedGraphOptions): Graph {
  const { spec, dtype } = ctx;
  const g = new Graph('fastkvzip_step_compressed');
  const ioDtype = cacheIoDtype(dtype);
  const H = spec.numKvHeads;
  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  const positions = g.input('position_ids', 'int64', ['batch', 'seq']);
  const toCompute = (x: string) => (ioDtype === dtype ? x : g.cast(x, dtype));
  const toIo = (x: string) => (ioDtype === dtype ? x : g.cast(x, ioDtype));
  // the shared lengths are unused (every head's attention has its own), but ForwardInputs carries them
  const zero = g.constant(0, 'int32');
  const fwd: ForwardInputs = { positions, seqlensK: zero, totalLength: zero, rope: new Map() };

  const snapWindow = opts.snapScores ? g.input('snap_window', 'int64', []) : undefined;
  let h = makeEmbedding(g, ctx, ids);
  for (let l = 0; l < spec.numLayers; l++) {
    const heads: HeadCache[] = Array.from({ length: H }, (_, k) => ({
      key: toCompute(g.input(`past_key.${l}.${k}`, ioDtype, [1, 1, `past_${l}_${k}`, spec.headDim])),
      value: toCompute(g.input(`past_value.${l}.${k}`, ioDtype, [1, 1, `past_${l}_${k}`, spec.headDim])),
    }));
    const out = makeLayer(g, ctx, l, h, fwd, { heads });
    h = out.hidden;
    out.heads!.forEach((p, k) => {
      g.output(toIo(p.key), `present_key.${l}.${k}`, ioDtype, [1, 1, `total_${l}_${k}`, spec.headDim]);
      g.output(toIo(p.value), `present_value.${l}.${k}`, ioDtype, [1, 1, `total_${l}_${k}`, spec.headDim]);
    });
    if (snapWindow && spec.scoredLayers.includes(l)) g.output(compressedSnap(g, spec, out.query, out.heads!.map((p) => p.key), snapWindow), `snap.${l}`, 'float32', [H, 'seq']);
    if (opts.logits === 'last' && spec.scoredLayers.includes(l)) {
      const hd = attnInputIoDtype(dtype);
      g.output(hd === dtype ? out.attnInput : g.cast(out.attnInput, hd), `attn_input.${l}`, hd, ['batch', 'seq', spec.hiddenSize]);
    }
  }
  const last = opts.logits === 'last' ? g.slice(h, [-1], [Number.MAX_SAFE_INTEGER], [1]) : h;
  g.output(makeLmHead(g, ctx, last), 'logits', 'float32', ['batch', opts.logits === 'last' ? 1 : 'seq', spec.vocabSize]);
  ctx.weights.register(g);
  return g;
}
