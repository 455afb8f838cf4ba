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
}

/**
 * Per-head cache lengths of one layer (the compressed cache, src/onnx/compressed-graph.ts): the
 * past is [1, H, P, d] right-padded per head, head h holding `lens[h]` valid entries.
 */
export interface HeadLengths {
  /** [H] int32 valid past entries per head */
  lens: string;
  /** [H] int32 = lens + T - 1 (GQA's seqlens_k per head) */
  seqlensK: string;
  /**
   * one new token (decoding): run all heads in one GQA node with the KV heads as its batch, each
   * reading its own seqlens_k (ORT allows batch > 1 after a past only for single-token steps)
   */
  singleToken?: boolean;
}

export interface LayerOutputs {
  hidden: string;
  /** output of the input RMSNorm: what feeds Q/K/V (the gate's input) */
  attnInput: string;
  presentKey: string;
  presentValue: string;
  /** post-norm, post-RoPE queries [B, T, Hq, d] and keys [B, T, H, d] (for KVzip scoring) */
  query: string;
  key: string;
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
  past: { key: string; value: string },
  attentionBias?: string,
  headLengths?: HeadLengths,
): { out: string; presentKey: string; presentValue: string; query: string; key: string } {
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
  if (headLengths) {
    const attend = headLengths.singleToken ? headsAsBatchAttention : perHeadAttention;
    const { out, presentKey, presentValue } = attend(g, ctx, sliding, query, key, v, past, headLengths);
    return { out: linear(g, ctx, out, attnName('o_proj'), spec.oBias), presentKey, presentValue, query, key };
  }
  // The CUDA kernel writes the new keys/values in place into the past buffer (present aliases
  // past), so the buffer must already have room for them: append T empty slots. The CPU kernel
  // reads the valid past length from seqlens_k, so both give present = [past ⧺ new].
  const room =
    fwd.room === 'gqa'
      ? (x: string) => x
      : (() => {
          fwd.emptySlotsShape ??= roomShape(g, past.key, key);
          const empty = g.op('Expand', [g.cast(g.constant(0, 'float32'), ctx.dtype), fwd.emptySlotsShape]);
          return (x: string) => g.concat([x, empty], 2);
        })();
  // Optional additive bias on Q·Kᵀ [1, Hq, T, past + T] (input 10; 7-9 are cos/sin caches and
  // position_ids, unused because RoPE is applied above). GQA still applies causality itself.
  const biasInputs = attentionBias ? ['', '', '', attentionBias] : [];
  const [attn, presentKey, presentValue] = g.ms(
    'GroupQueryAttention',
    [g.reshape(query, [0, 0, -1]), g.reshape(key, [0, 0, -1]), v, room(past.key), room(past.value), fwd.seqlensK, fwd.totalLength, ...biasInputs],
    {
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
 * One GroupQueryAttention per KV head (its G query heads), each over its own valid past
 * `lens[h]` sliced out of the right-padded buffer, so heads of a layer may keep different numbers
 * of entries and padding is never attended to. (GQA's per-batch seqlens would do this in one node
 * with the heads as the batch, but ORT refuses batch > 1 for a multi-token chunk after a past.)
 * Returns the attention output [1, T, Hq·d] and the present cache [1, H, P + T, d], head h valid
 * in [0, lens[h] + T) and zero after.
 */
function perHeadAttention(
  g: Graph,
  ctx: DecoderContext,
  sliding: boolean,
  query: string, // [1, T, Hq, d]
  key: string, // [1, T, H, d]
  v: string, // [1, T, H·d]
  past: { key: string; value: string }, // [1, H, P, d]
  lens: HeadLengths,
): { out: string; presentKey: string; presentValue: string } {
  const { spec } = ctx;
  const H = spec.numKvHeads;
  const G = spec.numHeads / H;
  const d = spec.headDim;
  const q3 = g.reshape(query, [0, 0, -1]); // [1, T, Hq·d]
  const k3 = g.reshape(key, [0, 0, -1]); // [1, T, H·d]
  const emptyShape = g.concat([g.constant([1, 1], 'int64'), g.shape(query, 1, 2), g.constant([d], 'int64')], 0);
  const empty = g.op('Expand', [g.cast(g.constant(0, 'float32'), ctx.dtype), emptyShape]);
  const padded = g.shape(past.key, 2, 3); // [1] int64: P
  const outs: string[] = [];
  const keys: string[] = [];
  const values: string[] = [];
  for (let h = 0; h < H; h++) {
    const len = g.cast(g.slice(lens.lens, [h], [h + 1], [0]), 'int64'); // [1]
    const mine = (x: string) => g.concat([g.sliceVec(x, g.concat([g.constant([h], 'int64'), g.constant([0], 'int64')], 0), g.concat([g.constant([h + 1], 'int64'), len], 0), [1, 2]), empty], 2);
    const seqlensK = g.slice(lens.seqlensK, [h], [h + 1], [0]); // [1] int32
    const total = g.reshape(g.add(seqlensK, g.constant(1, 'int32')), []);
    const [attn, pk, pv] = g.ms(
      'GroupQueryAttention',
      [g.slice(q3, [h * G * d], [(h + 1) * G * d], [2]), g.slice(k3, [h * d], [(h + 1) * d], [2]), g.slice(v, [h * d], [(h + 1) * d], [2]), mine(past.key), mine(past.value), seqlensK, total],
      {
        num_heads: G,
        kv_num_heads: 1,
        scale: { float: spec.attnScale },
        local_window_size: sliding ? spec.slidingWindow! : undefined,
        softcap: spec.attnLogitSoftcap ? { float: spec.attnLogitSoftcap } : undefined,
      },
      3,
    );
    // right-pad head h's present [1, 1, lens[h] + T, d] to the layer's P + T
    const pads = g.concat([g.constant([0, 0, 0, 0, 0, 0], 'int64'), g.sub(padded, len), g.constant([0], 'int64')], 0);
    outs.push(attn!);
    keys.push(g.op('Pad', [pk!, pads]));
    values.push(g.op('Pad', [pv!, pads]));
  }
  return { out: g.concat(outs, 2), presentKey: g.concat(keys, 1), presentValue: g.concat(values, 1) };
}

/**
 * Decoding (T = 1): GroupQueryAttention with the KV heads as the batch (B = H, one KV head and G
 * query heads each), every head reading its valid past length from seqlens_k. The new entry lands
 * at slot lens[h] of head h; the present is [1, H, P + 1, d], right-padded like the past.
 */
function headsAsBatchAttention(
  g: Graph,
  ctx: DecoderContext,
  sliding: boolean,
  query: string, // [1, 1, Hq, d]
  key: string, // [1, 1, H, d]
  v: string, // [1, 1, H·d]
  past: { key: string; value: string }, // [1, H, P, d]
  lens: HeadLengths,
): { out: string; presentKey: string; presentValue: string } {
  const { spec } = ctx;
  const H = spec.numKvHeads;
  const G = spec.numHeads / H;
  const d = spec.headDim;
  // [1, 1, H·w] -> [H, 1, w]: with one token this is a reshape, no transpose
  const batched = (x: string, w: number) => g.reshape(x, [H, 1, w]);
  // [1, H, P, d] -> [H, 1, P, d] by an explicit shape: -1 cannot be inferred when P = 0
  const pastShape = g.concat([g.constant([H, 1], 'int64'), g.shape(past.key, 2, 4)], 0);
  const empty = g.op('Expand', [g.cast(g.constant(0, 'float32'), ctx.dtype), g.constant([H, 1, 1, d], 'int64')]);
  const room = (x: string) => g.concat([g.reshape(x, pastShape), empty], 2);
  const total = g.reshape(g.add(g.cast(g.shape(past.key, 2, 3), 'int32'), g.constant([1], 'int32')), []);
  const [attn, presentKey, presentValue] = g.ms(
    'GroupQueryAttention',
    [batched(query, G * d), batched(key, d), batched(v, d), room(past.key), room(past.value), lens.seqlensK, total],
    {
      num_heads: G,
      kv_num_heads: 1,
      scale: { float: spec.attnScale },
      local_window_size: sliding ? spec.slidingWindow! : undefined,
      softcap: spec.attnLogitSoftcap ? { float: spec.attnLogitSoftcap } : undefined,
    },
    3,
  );
  const unbatch = (x: string) => g.reshape(x, g.concat([g.constant([1, H], 'int64'), g.shape(x, 2, 4)], 0));
  return { out: g.reshape(attn!, [1, 1, spec.numHeads * d]), presentKey: unbatch(presentKey!), presentValue: unbatch(presentValue!) };
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
 * `headLengths`: per-head valid lengths of a right-padded past (the compressed cache).
 */
export function makeLayer(
  g: Graph,
  ctx: DecoderContext,
  layer: number,
  h: string,
  fwd: ForwardInputs,
  past: { key: string; value: string },
  attentionBias?: string,
  headLengths?: HeadLengths,
): LayerOutputs {
  const { spec } = ctx;
  return g.within(`layers.${layer}`, () => {
    const n = (p: string) => layerName(spec, layer, p);
    const attnInput = makeNorm(g, ctx, h, n('input_layernorm.weight'));
    const attn = makeAttention(g, ctx, layer, attnInput, fwd, past, attentionBias, headLengths);
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
