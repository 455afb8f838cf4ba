// The "step" graph: one chunk of tokens forward through the model, attending to a KV cache
// passed in as inputs. Outputs the present cache and, on request, logits and every layer's
// attention input. Used by `generate`, evaluation and the golden tests.
import { Graph, type DType } from './builder.js';
import { makeEmbedding, makeLayer, makeLmHead, gqaLengths, type DecoderContext, type ForwardInputs } from './decoder.js';
import { evictionBias, gqaBias, snapWindowAttention } from './eviction-graph.js';

export interface StepGraphOptions {
  /** 'all' positions, only the 'last' one, or 'none' */
  logits: 'all' | 'last' | 'none';
  /** emit attn_input.<l> for these layers (empty: none) */
  captureLayers: number[];
  /** also emit query.<l> (post-norm, post-RoPE queries [B, T, Hq, d]) for the captured layers */
  captureQueries?: boolean;
  /**
   * Per-head KV eviction by masking (evaluation): input kv_keep [L_s, H, past] bool over the
   * cached positions of each scored layer (true = visible); evicted positions get a large
   * negative attention bias. The cache buffers keep every position (no memory is freed).
   */
  keepMask?: boolean;
  /** with keepMask: input snap_window (int64 scalar) and outputs snap.<l> [H, T] (SnapKV window attention) for scored layers */
  snapScores?: boolean;
}

/** dtype of the KV cache at the graph boundary (ORT cannot take bf16 I/O; fp32 holds bf16 exactly). */
export function cacheIoDtype(compute: DType): DType {
  return compute === 'bfloat16' ? 'float32' : compute;
}

/** dtype of captured attention inputs at the graph boundary. */
export function attnInputIoDtype(compute: DType): DType {
  return compute === 'float32' ? 'float32' : 'float16';
}

export function buildStepGraph(ctx: DecoderContext, opts: StepGraphOptions): Graph {
  const { spec, dtype } = ctx;
  const g = new Graph('fastkvzip_step');
  const ioDtype = cacheIoDtype(dtype);
  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  const positions = g.input('position_ids', 'int64', ['batch', 'seq']);
  const past = Array.from({ length: spec.numLayers }, (_, l) => ({
    key: g.input(`past_key.${l}`, ioDtype, ['batch', spec.numKvHeads, 'past', spec.headDim]),
    value: g.input(`past_value.${l}`, ioDtype, ['batch', spec.numKvHeads, 'past', spec.headDim]),
  }));
  const toCompute = (x: string) => (ioDtype === dtype ? x : g.cast(x, dtype));
  const toIo = (x: string) => (ioDtype === dtype ? x : g.cast(x, ioDtype));

  const pastLen = g.reshape(g.shape(past[0]!.key, 2, 3), []);
  const newLen = g.reshape(g.shape(ids, 1, 2), []);
  const fwd: ForwardInputs = { positions, ...gqaLengths(g, pastLen, newLen), rope: new Map() };

  const keep = opts.keepMask ? g.input('kv_keep', 'bool', [spec.scoredLayers.length, spec.numKvHeads, 'past']) : undefined;
  const snapWindow = opts.keepMask && opts.snapScores ? g.input('snap_window', 'int64', []) : undefined;

  let h = makeEmbedding(g, ctx, ids);
  for (let l = 0; l < spec.numLayers; l++) {
    const s = spec.scoredLayers.indexOf(l);
    const biasHT = keep && s >= 0 ? evictionBias(g, keep, s, newLen, spec.numKvHeads, dtype) : undefined;
    const bias = biasHT ? gqaBias(g, biasHT, spec, newLen) : undefined;
    const out = makeLayer(g, ctx, l, h, fwd, { key: toCompute(past[l]!.key), value: toCompute(past[l]!.value) }, bias);
    h = out.hidden;
    if (biasHT && snapWindow) {
      const snap = snapWindowAttention(g, spec, out.query, out.presentKey, biasHT, pastLen, snapWindow);
      g.output(snap, `snap.${l}`, 'float32', [spec.numKvHeads, 'seq']);
    }
    g.output(toIo(out.presentKey), `present_key.${l}`, ioDtype, ['batch', spec.numKvHeads, 'total', spec.headDim]);
    g.output(toIo(out.presentValue), `present_value.${l}`, ioDtype, ['batch', spec.numKvHeads, 'total', spec.headDim]);
    if (opts.captureLayers.includes(l)) {
      const hd = attnInputIoDtype(dtype);
      g.output(hd === dtype ? out.attnInput : g.cast(out.attnInput, hd), `attn_input.${l}`, hd, ['batch', 'seq', spec.hiddenSize]);
      if (opts.captureQueries) g.output(toIo(out.query), `query.${l}`, ioDtype, ['batch', 'seq', spec.numHeads, spec.headDim]);
    }
  }
  if (opts.logits !== 'none') {
    const last = opts.logits === 'last' ? g.slice(h, [-1], [Number.MAX_SAFE_INTEGER], [1]) : h;
    g.output(makeLmHead(g, ctx, last), 'logits', 'float32', ['batch', opts.logits === 'last' ? 1 : 'seq', spec.vocabSize]);
  }
  ctx.weights.register(g);
  return g;
}
