// The "step_compressed" graphs: the step graph over a KV cache that really shrinks. Every layer
// has its own past length (a global eviction threshold keeps different counts per layer) and
// every KV head its own valid length inside the layer's buffer (right-padded to the layer's
// largest head): input past_lens.<l> [H] int32. Evicted entries are absent, not masked; kept
// keys carry the RoPE of their original positions, and position_ids give the new tokens theirs.
import { Graph } from './builder.js';
import type { ModelSpec } from '../model/config.js';
import { makeEmbedding, makeLayer, makeLmHead, type DecoderContext, type ForwardInputs } from './decoder.js';
import { cacheIoDtype, attnInputIoDtype } from './step-graph.js';

export interface CompressedGraphOptions {
  /** 'last' (prefill chunks and decoding; emits the scored layers' attention inputs for the gates) or 'all' (teacher forcing) */
  logits: 'all' | 'last';
  /** one token per run (decoding): all heads of a layer in one attention node, heads as the batch */
  singleToken?: boolean;
  /** input snap_window (int64 scalar) and outputs snap.<l> [H, T]: SnapKV window attention of the scored layers */
  snapScores?: boolean;
}

/**
 * SnapKV observation-window attention over the compacted cache (the masked graph's
 * snapWindowAttention, src/onnx/eviction-graph.ts, for per-head lengths): the chunk's last
 * w' = min(w, T) queries attend (fp32 softmax, causal) to each KV head's held entries; the mean
 * over the window queries and the G query heads, at the chunk's own columns
 * (lens[h] .. lens[h] + T - 1 of head h). Returns [H, T].
 */
function compressedSnap(g: Graph, spec: ModelSpec, query: string, presentKey: string, lens: string, window: string): string {
  const H = spec.numKvHeads;
  const G = spec.numHeads / H;
  const d = spec.headDim;
  const f32 = (x: string) => g.cast(x, 'float32');
  const range = (n: string) => g.op('Range', [g.constant(0, 'int64'), n, g.constant(1, 'int64')]);
  const qw = g.slice(query, [g.op('Neg', [window])], [Number.MAX_SAFE_INTEGER], [1]); // [1, w', Hq, d]
  const wLen = g.reshape(g.shape(qw, 1, 2), []);
  const T = g.reshape(g.shape(query, 1, 2), []);
  const q = f32(g.transpose(g.reshape(g.squeeze(qw, [0]), [-1, H, G, d]), [1, 2, 0, 3])); // [H, G, w', d]
  const kT = g.unsqueeze(f32(g.transpose(g.squeeze(presentKey, [0]), [0, 2, 1])), [1]); // [H, 1, d, total]
  const logits = g.mul(g.matmul(q, kT), g.constant(spec.attnScale, 'float32')); // [H, G, w', total]
  const lens64 = g.unsqueeze(g.cast(lens, 'int64'), [1]); // [H, 1]
  // window query i is chunk row T - w' + i, i.e. column lens[h] + T - w' + i of head h; it sees
  // every column up to its own (later columns of the head are its future or padding)
  const rowCol = g.add(lens64, g.unsqueeze(g.add(range(wLen), g.sub(T, wLen)), [0])); // [H, w']
  const cols = range(g.reshape(g.shape(presentKey, 2, 3), []));
  const visible = g.op('LessOrEqual', [g.reshape(cols, [1, 1, -1]), g.unsqueeze(rowCol, [2])]); // [H, w', total]
  const bias = g.unsqueeze(g.op('Where', [visible, g.constant(0, 'float32'), g.constant(-Infinity, 'float32')]), [1]);
  const probs = g.op('Softmax', [g.add(logits, bias)], { axis: -1 });
  const mean = g.reduce('ReduceMean', probs, [1, 2], false); // [H, total]
  const own = g.add(lens64, g.unsqueeze(range(T), [0])); // [H, T]
  return g.op('GatherElements', [mean, own], { axis: 1 });
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
  const newLen = g.cast(g.reshape(g.shape(ids, 1, 2), []), 'int32');
  // the shared lengths are unused (every layer passes its own), but ForwardInputs carries them
  const zero = g.constant(0, 'int32');
  const fwd: ForwardInputs = { positions, seqlensK: zero, totalLength: zero, rope: new Map() };

  const snapWindow = opts.snapScores ? g.input('snap_window', 'int64', []) : undefined;
  let h = makeEmbedding(g, ctx, ids);
  for (let l = 0; l < spec.numLayers; l++) {
    const past = {
      key: g.input(`past_key.${l}`, ioDtype, [1, H, `past_${l}`, spec.headDim]),
      value: g.input(`past_value.${l}`, ioDtype, [1, H, `past_${l}`, spec.headDim]),
    };
    const lens = g.input(`past_lens.${l}`, 'int32', [H]);
    const headLengths = { lens, seqlensK: g.sub(g.add(lens, newLen), g.constant(1, 'int32')), singleToken: opts.singleToken };
    const out = makeLayer(g, ctx, l, h, fwd, { key: toCompute(past.key), value: toCompute(past.value) }, undefined, headLengths);
    h = out.hidden;
    g.output(toIo(out.presentKey), `present_key.${l}`, ioDtype, [1, H, `total_${l}`, spec.headDim]);
    g.output(toIo(out.presentValue), `present_value.${l}`, ioDtype, [1, H, `total_${l}`, spec.headDim]);
    if (snapWindow && spec.scoredLayers.includes(l)) g.output(compressedSnap(g, spec, out.query, out.presentKey, lens, snapWindow), `snap.${l}`, 'float32', [H, 'seq']);
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
