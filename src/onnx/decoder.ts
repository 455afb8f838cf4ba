// The decoder-only transformer, written as ONNX nodes. Reads top-down like the model:
// makeEmbedding -> makeLayer (makeAttention, makeMlp) -> makeFinalNorm -> makeLmHead.
// Every architecture quirk comes from ModelSpec (src/model/config.ts); nothing here
// branches on a family name.
import type { Graph } from './builder.js';
import type { ModelSpec, RopeSpec } from '../model/config.js';
import type { ComputeDType, TensorSource, WeightFile } from './weights.js';
import { ropeTables } from './rope.js';

export interface DecoderContext {
  spec: ModelSpec;
  dtype: ComputeDType;
  weights: WeightFile;
  source: TensorSource;
  /** how GroupQueryAttention is called (GqaRoute; default 'flash') */
  gqa?: GqaRoute;
}

/**
 * 'flash' (default): plain GroupQueryAttention. 'sink': every GroupQueryAttention gets
 * smooth_softmax = 1 and a head sink of −∞ per query head, i.e. the same softmax exactly
 * (exp(−∞) = 0 joins the denominator). Why: the WebGPU EP of ONNX Runtime 1.29 takes its subgroup
 * flash-attention kernel for chunks of more than one token unless smooth softmax is on, and on
 * lavapipe (Mesa's software Vulkan) that kernel returns wrong attention (errors up to 0.2 on
 * outputs of magnitude 1, changing with the subgroup width); its other kernel is right there.
 */
export type GqaRoute = 'flash' | 'sink';
export const GQA_ROUTES: readonly GqaRoute[] = ['flash', 'sink'];

/** GroupQueryAttention's optional inputs from 7 on (attention bias at 10, head sink at 11) and attributes for `ctx.gqa`. */
function gqaOptional(g: Graph, ctx: DecoderContext, numHeads: number, attentionBias?: string): { inputs: string[]; attrs: { smooth_softmax?: number } } {
  if (ctx.gqa !== 'sink') return { inputs: attentionBias ? ['', '', '', attentionBias] : [], attrs: {} };
  const sink = g.constant(new Array(numHeads).fill(-Infinity), ctx.dtype, [numHeads], 'head_sink');
  return { inputs: ['', '', '', attentionBias ?? '', sink], attrs: { smooth_softmax: 1 } };
}

/** Per-graph values shared by all layers of one forward (positions, rope tables, lengths). */
export interface ForwardInputs {
  /** [B, T] int64 */
  positions: string;
  /** GQA's seqlens_k: [B] int32 = past + T - 1 */
  seqlensK: string;
  /** GQA's total_sequence_length: scalar int32 = past + T */
  totalLength: string;
  /** cos/sin per rope kind, filled lazily */
  rope: Map<string, { cos: string; sin: string }>;
  /** shape [B, H, T, d] of the empty KV slots appended to the past for the new tokens (filled lazily) */
  emptySlotsShape?: string;
  /**
   * 'concat' (default): the past gets T empty slots by a Concat, and GroupQueryAttention writes the
   * new keys/values into them in place; 'gqa': the past goes to GroupQueryAttention as it is, and
   * the kernel builds present = past ⧺ new itself (see KvzipRoom in kvzip-graph.ts).
   */
  room?: 'concat' | 'gqa';
  /** 'concat' room: this layer's empty-slot shape [B, H, T, d] (default: one shape shared by every layer, emptySlotsShape) */
  roomShape?: (g: Graph, past: string, key: string) => string;
}

/**
 * One KV head's cache in the compressed cache (src/onnx/compressed-graph.ts): a buffer of its own,
 * [1, 1, n, d], so heads of a layer keep different counts without padding.
 */
export interface HeadCache {
  key: string;
  value: string;
  /**
   * The buffer already has room for the new tokens (the decode-block graph's carried buffers):
   * GQA's seqlens_k ([1] int32: valid entries before the new tokens + T - 1) and
   * total_sequence_length (int32 scalar: the buffer's length), both computed by the caller
   * (there once for all heads). The present then has the buffer's size. Without it the whole
   * buffer is valid and the present is [1, 1, n + T, d].
   */
  room?: { seqlensK: string; total: string };
}

/** A layer's past: one buffer [B, H, past, d], or one per KV head (the compressed cache). */
export type LayerPast = { key: string; value: string } | { heads: HeadCache[] };

export interface LayerOutputs {
  hidden: string;
  /** output of the input RMSNorm: what feeds Q/K/V (the gate's input) */
  attnInput: string;
  presentKey: string;
  presentValue: string;
  /** post-norm, post-RoPE queries [B, T, Hq, d] and keys [B, T, H, d] (for KVzip scoring) */
  query: string;
  key: string;
  /** per KV head presents (with `heads` in: the compressed cache); presentKey/Value are then '' */
  heads?: HeadCache[];
}

const prefixOf = (spec: ModelSpec) => spec.weightPrefix;
const layerName = (spec: ModelSpec, i: number, rest: string) => `${prefixOf(spec)}layers.${i}.${rest}`;

/** A checkpoint tensor as an initializer; linear weights are stored transposed ([in, out]). */
function weight(ctx: DecoderContext, name: string, opts: { transpose?: boolean } = {}): string {
  const key = opts.transpose ? `${name}.T` : name;
  return ctx.weights.addTensor(key, ctx.source, name, { transpose: opts.transpose });
}

/** RMSNorm weight with the (offset + w) folding done in fp32 at build time (Gemma's 1 + w). */
function normWeight(ctx: DecoderContext, name: string): string {
  if (ctx.spec.normOffset === 0) return weight(ctx, name);
  const key = `${name}.plus${ctx.spec.normOffset}`;
  if (ctx.weights.has(key)) return key;
  const w = ctx.source.readF32(name).map((x) => x + ctx.spec.normOffset);
  return ctx.weights.add(key, w, ctx.source.shape(name));
}

function linear(g: Graph, ctx: DecoderContext, x: string, name: string, bias: boolean): string {
  const y = g.matmul(x, weight(ctx, `${name}.weight`, { transpose: true }));
  return bias ? g.add(y, weight(ctx, `${name}.bias`)) : y;
}

export function makeNorm(g: Graph, ctx: DecoderContext, x: string, name: string): string {
  return g.op('SimplifiedLayerNormalization', [x, normWeight(ctx, name)], {
    axis: -1,
    epsilon: { float: ctx.spec.rmsNormEps },
    stash_type: 1,
  });
}

export function makeEmbedding(g: Graph, ctx: DecoderContext, ids: string): string {
  const { spec } = ctx;
  let h: string;
  if (spec.tieWordEmbeddings) {
    // Only the transposed table [D, V] is stored (the LM head needs it); gather columns.
    const table = weight(ctx, `${prefixOf(spec)}embed_tokens.weight`, { transpose: true });
    h = g.transpose(g.gather(table, ids, 1), [1, 2, 0]);
  } else {
    h = g.gather(weight(ctx, `${prefixOf(spec)}embed_tokens.weight`), ids, 0);
  }
  if (spec.embedScale !== null) h = g.mul(h, g.constant(spec.embedScale, ctx.dtype, [], 'embed_scale'));
  return h;
}

/** cos/sin [B, T, 1, d] for one rope spec (computed in fp32 from positions, then cast like transformers). */
function ropeCosSin(g: Graph, ctx: DecoderContext, fwd: ForwardInputs, rope: RopeSpec): { cos: string; sin: string } {
  const key = JSON.stringify(rope);
  const hit = fwd.rope.get(key);
  if (hit) return hit;
  if (rope.partialFactor !== 1) throw new Error('partial rotary embeddings are not supported yet');
  const { invFreq, attentionScale } = ropeTables(rope, ctx.spec.headDim);
  const out = g.within('rope', () => {
    const pos = g.unsqueeze(g.cast(fwd.positions, 'float32'), [2]); // [B, T, 1]
    const freqs = g.mul(pos, g.constant(invFreq, 'float32', [invFreq.length], 'inv_freq')); // [B, T, d/2]
    const emb = g.unsqueeze(g.concat([freqs, freqs], -1), [2]); // [B, T, 1, d]
    let cos = g.op('Cos', [emb]);
    let sin = g.op('Sin', [emb]);
    if (attentionScale !== 1) {
      const s = g.constant(attentionScale, 'float32');
      cos = g.mul(cos, s);
      sin = g.mul(sin, s);
    }
    return { cos: g.cast(cos, ctx.dtype), sin: g.cast(sin, ctx.dtype) };
  });
  fwd.rope.set(key, out);
  return out;
}

/** x*cos + rotate_half(x)*sin on [B, T, H, d]. */
function applyRope(g: Graph, ctx: DecoderContext, x: string, cs: { cos: string; sin: string }): string {
  const half = ctx.spec.headDim / 2;
  const x1 = g.slice(x, [0], [half], [3]);
  const x2 = g.slice(x, [half], [ctx.spec.headDim], [3]);
  const rotated = g.concat([g.op('Neg', [x2]), x1], 3);
  return g.add(g.mul(x, cs.cos), g.mul(rotated, cs.sin));
}

export function makeAttention(
  g: Graph,
  ctx: DecoderContext,
  layer: number,
  x: string,
  fwd: ForwardInputs,
  past: LayerPast,
  attentionBias?: string,
): { out: string; presentKey: string; presentValue: string; query: string; key: string; heads?: HeadCache[] } {
  const { spec } = ctx;
  const d = spec.headDim;
  const sliding = spec.layerKinds[layer] === 'sliding';
  const attnName = (p: string) => layerName(spec, layer, `self_attn.${p}`);
  const q4 = g.reshape(linear(g, ctx, x, attnName('q_proj'), spec.qkvBias), [0, 0, spec.numHeads, d]);
  const k4 = g.reshape(linear(g, ctx, x, attnName('k_proj'), spec.qkvBias), [0, 0, spec.numKvHeads, d]);
  const v = linear(g, ctx, x, attnName('v_proj'), spec.qkvBias);
  const qn = spec.qkNorm ? makeNorm(g, ctx, q4, attnName('q_norm.weight')) : q4;
  const kn = spec.qkNorm ? makeNorm(g, ctx, k4, attnName('k_norm.weight')) : k4;
  const cs = ropeCosSin(g, ctx, fwd, sliding ? spec.ropeLocal : spec.rope);
  const query = applyRope(g, ctx, qn, cs);
  const key = applyRope(g, ctx, kn, cs);
  if ('heads' in past) {
    const { out, presents } = kvHeadAttention(g, ctx, sliding, query, key, v, past.heads);
    return { out: linear(g, ctx, out, attnName('o_proj'), spec.oBias), presentKey: '', presentValue: '', query, key, heads: presents };
  }
  // The CUDA kernel writes the new keys/values in place into the past buffer (present aliases
  // past), so the buffer must already have room for them: append T empty slots. The CPU kernel
  // reads the valid past length from seqlens_k, so both give present = [past ⧺ new].
  const room =
    fwd.room === 'gqa'
      ? (x: string) => x
      : (() => {
          const shape = fwd.roomShape ? fwd.roomShape(g, past.key, key) : (fwd.emptySlotsShape ??= roomShape(g, past.key, key));
          const empty = g.op('Expand', [g.cast(g.constant(0, 'float32'), ctx.dtype), shape]);
          return (x: string) => g.concat([x, empty], 2);
        })();
  // Optional additive bias on Q·Kᵀ [1, Hq, T, past + T] (input 10; 7-9 are cos/sin caches and
  // position_ids, unused because RoPE is applied above). GQA still applies causality itself.
  const opt = gqaOptional(g, ctx, spec.numHeads, attentionBias);
  const [attn, presentKey, presentValue] = g.ms(
    'GroupQueryAttention',
    [g.reshape(query, [0, 0, -1]), g.reshape(key, [0, 0, -1]), v, room(past.key), room(past.value), fwd.seqlensK, fwd.totalLength, ...opt.inputs],
    {
      ...opt.attrs,
      num_heads: spec.numHeads,
      kv_num_heads: spec.numKvHeads,
      scale: { float: spec.attnScale },
      local_window_size: sliding ? spec.slidingWindow! : undefined,
      softcap: spec.attnLogitSoftcap ? { float: spec.attnLogitSoftcap } : undefined,
    },
    3,
  );
  const out = linear(g, ctx, attn!, attnName('o_proj'), spec.oBias);
  return { out, presentKey: presentKey!, presentValue: presentValue!, query, key };
}

/**
 * One GroupQueryAttention per KV head (GQA: its G query heads), each over that head's own buffer,
 * so heads of a layer may keep different numbers of entries with no padding anywhere. (One node
 * with the heads as GQA's batch would need one buffer per layer, i.e. padding to its longest head.)
 * Returns the attention output [1, T, Hq·d] and each head's present: [1, 1, n + T, d], or the
 * buffer's own size when it came with room (HeadCache.room), the new entries after the valid ones.
 */
function kvHeadAttention(
  g: Graph,
  ctx: DecoderContext,
  sliding: boolean,
  query: string, // [1, T, Hq, d]
  key: string, // [1, T, H, d]
  v: string, // [1, T, H·d]
  heads: HeadCache[],
): { out: string; presents: HeadCache[] } {
  const { spec } = ctx;
  const H = spec.numKvHeads;
  const G = spec.numHeads / H;
  const d = spec.headDim;
  // each KV head's slice of the new queries, keys and values: one Split node each, not H Slices
  // (decoding runs these nodes every token, and on CUDA every node is a launch)
  const split = (x: string) => (H === 1 ? [x] : g.node('Split', [x], { axis: 2, num_outputs: H }, { outputs: H }));
  const qs = split(g.reshape(query, [0, 0, -1])); // H × [1, T, G·d]
  const ks = split(g.reshape(key, [0, 0, -1])); // H × [1, T, d]
  const vs = split(v); // H × [1, T, d]
  const T = g.cast(g.shape(query, 1, 2), 'int32'); // [1]
  let empty: string | undefined;
  let opt: ReturnType<typeof gqaOptional> | undefined;
  const outs: string[] = [];
  const presents: HeadCache[] = [];
  heads.forEach((head, h) => {
    let past: { key: string; value: string };
    let seqlensK: string;
    let total: string;
    if (head.room) {
      // the new tokens go into the buffer's room; every slot after them is garbage nobody reads
      past = head;
      ({ seqlensK, total } = head.room);
    } else {
      // The CUDA kernel writes the new keys/values in place into the past buffer (present aliases
      // past), so the buffer must have room for them: append T empty slots.
      empty ??= g.op('Expand', [g.cast(g.constant(0, 'float32'), ctx.dtype), g.concat([g.constant([1, 1], 'int64'), g.shape(query, 1, 2), g.constant([d], 'int64')], 0)]);
      past = { key: g.concat([head.key, empty], 2), value: g.concat([head.value, empty], 2) };
      const n = g.cast(g.shape(head.key, 2, 3), 'int32');
      seqlensK = g.sub(g.add(n, T), g.constant([1], 'int32'));
      total = g.reshape(g.add(seqlensK, g.constant([1], 'int32')), []);
    }
    opt ??= gqaOptional(g, ctx, G);
    const [attn, pk, pv] = g.ms(
      'GroupQueryAttention',
      [qs[h]!, ks[h]!, vs[h]!, past.key, past.value, seqlensK, total, ...opt.inputs],
      {
        ...opt.attrs,
        num_heads: G,
        kv_num_heads: 1,
        scale: { float: spec.attnScale },
        local_window_size: sliding ? spec.slidingWindow! : undefined,
        softcap: spec.attnLogitSoftcap ? { float: spec.attnLogitSoftcap } : undefined,
      },
      3,
    );
    outs.push(attn!);
    presents.push({ key: pk!, value: pv!, room: head.room });
  });
  return { out: outs.length === 1 ? outs[0]! : g.concat(outs, 2), presents };
}

/** [B, H, T, d]: batch and heads of the past buffer, T new tokens, head dim (shared by all layers of a forward). */
function roomShape(g: Graph, past: string, key: string): string {
  return g.concat([g.shape(past, 0, 2), g.shape(key, 1, 2), g.shape(past, 3, 4)], 0);
}

export function makeMlp(g: Graph, ctx: DecoderContext, layer: number, x: string): string {
  const { spec } = ctx;
  const name = (p: string) => layerName(spec, layer, `mlp.${p}`);
  const gate = linear(g, ctx, x, name('gate_proj'), spec.mlpBias);
  const up = linear(g, ctx, x, name('up_proj'), spec.mlpBias);
  const act = spec.mlpAct === 'silu' ? g.mul(gate, g.op('Sigmoid', [gate])) : g.op('Gelu', [gate], { approximate: 'tanh' });
  return linear(g, ctx, g.mul(act, up), name('down_proj'), spec.mlpBias);
}

/**
 * `attentionBias`: optional [1, Hq, T, past + T] additive bias on this layer's attention logits (KV eviction masks);
 * `past` may be one buffer per KV head (the compressed cache).
 */
export function makeLayer(
  g: Graph,
  ctx: DecoderContext,
  layer: number,
  h: string,
  fwd: ForwardInputs,
  past: LayerPast,
  attentionBias?: string,
): LayerOutputs {
  const { spec } = ctx;
  return g.within(`layers.${layer}`, () => {
    const n = (p: string) => layerName(spec, layer, p);
    const attnInput = makeNorm(g, ctx, h, n('input_layernorm.weight'));
    const attn = makeAttention(g, ctx, layer, attnInput, fwd, past, attentionBias);
    let attnOut = attn.out;
    if (spec.sandwichNorms) attnOut = makeNorm(g, ctx, attnOut, n('post_attention_layernorm.weight'));
    const h1 = g.add(h, attnOut);
    const mlpIn = makeNorm(g, ctx, h1, n(spec.sandwichNorms ? 'pre_feedforward_layernorm.weight' : 'post_attention_layernorm.weight'));
    let mlpOut = makeMlp(g, ctx, layer, mlpIn);
    if (spec.sandwichNorms) mlpOut = makeNorm(g, ctx, mlpOut, n('post_feedforward_layernorm.weight'));
    return {
      hidden: g.add(h1, mlpOut),
      attnInput,
      presentKey: attn.presentKey,
      presentValue: attn.presentValue,
      query: attn.query,
      key: attn.key,
      heads: attn.heads,
    };
  });
}

export function makeLmHead(g: Graph, ctx: DecoderContext, h: string): string {
  const { spec } = ctx;
  const normed = makeNorm(g, ctx, h, `${prefixOf(spec)}norm.weight`);
  const table = spec.tieWordEmbeddings
    ? weight(ctx, `${prefixOf(spec)}embed_tokens.weight`, { transpose: true })
    : weight(ctx, 'lm_head.weight', { transpose: true });
  let logits = g.cast(g.matmul(normed, table), 'float32');
  if (spec.finalLogitSoftcap) {
    const cap = g.constant(spec.finalLogitSoftcap, 'float32');
    logits = g.mul(g.op('Tanh', [g.div(logits, cap)]), cap);
  }
  return logits;
}

/** GQA length inputs for a forward of `T` new tokens after a past of `pastLen` (int64 scalars). */
export function gqaLengths(g: Graph, pastLen: string, newLen: string): { seqlensK: string; totalLength: string } {
  const total = g.cast(g.add(pastLen, newLen), 'int32');
  return {
    totalLength: total,
    seqlensK: g.reshape(g.sub(total, g.constant(1, 'int32')), [1]),
  };
}
