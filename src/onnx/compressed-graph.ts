// The "step_compressed" graphs: the step graph over a KV cache that really shrinks. Every layer
// has its own past length (a global eviction threshold keeps different counts per layer) and
// every KV head its own valid length inside the layer's buffer (right-padded to the layer's
// largest head): input past_lens.<l> [H] int32. Evicted entries are absent, not masked; kept
// keys carry the RoPE of their original positions, and position_ids give the new tokens theirs.
import { Graph } from './builder.js';
import { makeEmbedding, makeLayer, makeLmHead, type DecoderContext, type ForwardInputs } from './decoder.js';
import { cacheIoDtype, hiddenIoDtype } from './step-graph.js';

export interface CompressedGraphOptions {
  /** 'last' (prefill chunks and decoding; emits the scored layers' attention inputs for the gates) or 'all' (teacher forcing) */
  logits: 'all' | 'last';
  /** one token per run (decoding): all heads of a layer in one attention node, heads as the batch */
  singleToken?: boolean;
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
    if (opts.logits === 'last' && spec.scoredLayers.includes(l)) {
      const hd = hiddenIoDtype(dtype);
      g.output(hd === dtype ? out.attnInput : g.cast(out.attnInput, hd), `attn_input.${l}`, hd, ['batch', 'seq', spec.hiddenSize]);
    }
  }
  const last = opts.logits === 'last' ? g.slice(h, [-1], [Number.MAX_SAFE_INTEGER], [1]) : h;
  g.output(makeLmHead(g, ctx, last), 'logits', 'float32', ['batch', opts.logits === 'last' ? 1 : 'seq', spec.vocabSize]);
  ctx.weights.register(g);
  return g;
}
