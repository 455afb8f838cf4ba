// Hugging Face config.json -> ModelSpec: every architecture quirk the graph builder needs,
// decided in one place. Adding a Mistral-like variant means adding one entry to FAMILIES.
import { readFileSync, existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileError } from '../util/errors.js';

export type Family = 'llama' | 'mistral' | 'qwen2' | 'qwen3' | 'gemma3';
export type LayerKind = 'full' | 'sliding';
export type TorchDType = 'float32' | 'float16' | 'bfloat16';

export interface RopeSpec {
  /** rotary base */
  theta: number;
  /** 'default' | 'linear' | 'llama3' | 'yarn' */
  type: string;
  factor?: number;
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositions?: number;
  betaFast?: number;
  betaSlow?: number;
  /** yarn's attention_factor (scales cos/sin) */
  attentionFactor?: number;
  /** fraction of head_dim that rotates (partial_rotary_factor) */
  partialFactor: number;
}

export interface ModelSpec {
  family: Family;
  architecture: string;
  modelType: string;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  rmsNormEps: number;
  maxPositions: number;
  tieWordEmbeddings: boolean;
  torchDtype: TorchDType;
  /** per layer: full (global) or sliding-window attention */
  layerKinds: LayerKind[];
  slidingWindow: number | null;
  /** rope for full layers, and for sliding layers (Gemma-3 uses its own base there) */
  rope: RopeSpec;
  ropeLocal: RopeSpec;
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  /** per-head RMSNorm on q and k before RoPE (Qwen3, Gemma-3) */
  qkNorm: boolean;
  /** RMSNorm multiplies by (offset + weight): 1 for Gemma, 0 otherwise */
  normOffset: 0 | 1;
  /** Gemma: norms after attention and after the MLP, and a separate norm before the MLP */
  sandwichNorms: boolean;
  /** embedding output multiplied by this (Gemma: sqrt(hidden_size)); null for none */
  embedScale: number | null;
  mlpAct: 'silu' | 'gelu_tanh';
  /** softmax scale for model attention */
  attnScale: number;
  finalLogitSoftcap: number | null;
  attnLogitSoftcap: number | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** layers that are scored, captured and gated (Gemma-3: global layers only) */
  scoredLayers: number[];
  /** weight name prefix before "layers." / "embed_tokens" (e.g. "model." or "language_model.model.") */
  weightPrefix: string;
  /**
   * Qwen2.5-1M's dual_chunk_attention_config.chunk_size: DCA is not implemented (neither by
   * transformers, which the public extraction runs), and up to this many positions it is plain
   * full attention, so longer contexts are refused; null when the config has none
   */
  dualChunkSize: number | null;
}

interface FamilyQuirks {
  family: Family;
  qkvBias: (c: any) => boolean;
  /** o_proj bias (Qwen2 has q/k/v biases only, whatever attention_bias says) */
  oBias: (c: any) => boolean;
  qkNorm: boolean;
  normOffset: 0 | 1;
  sandwichNorms: boolean;
  embedScaled: boolean;
  /** throws on an activation the family's MLP does not have */
  mlpAct: (c: any) => 'silu' | 'gelu_tanh';
  /** Gemma-3 style: only global layers are scored */
  scoreGlobalOnly: boolean;
  /** the family's layer kinds when config.json has no layer_types (null: all full) */
  layerKinds: (c: any, numLayers: number, slidingWindow: number | null) => LayerKind[] | null;
  /** sliding layers rotate with their own base (rope_local_base_freq) */
  localRope: boolean;
  /** softmax scale from query_pre_attn_scalar rather than head_dim */
  queryPreAttnScalar: boolean;
  /** tie_word_embeddings when config.json does not say */
  tiedByDefault: boolean;
  /** transformers' config-class defaults for fields a sparse config.json leaves out */
  configDefaults: Record<string, unknown>;
  /** `use_sliding_window: true` changes this family's math in a way not implemented: why (refused) */
  refuseUseSlidingWindow: string | null;
}

/** transformers' Gemma3TextConfig defaults for the fields read here (token ids excluded: the wrapper's own win). */
const GEMMA3_TEXT_DEFAULTS = {
  vocab_size: 262_208,
  hidden_size: 2304,
  intermediate_size: 9216,
  num_hidden_layers: 26,
  num_attention_heads: 8,
  num_key_value_heads: 4,
  head_dim: 256,
  max_position_embeddings: 131_072,
  rms_norm_eps: 1e-6,
  rope_theta: 1_000_000,
  rope_local_base_freq: 10_000,
  query_pre_attn_scalar: 256,
  sliding_window: 4096,
  sliding_window_pattern: 6,
};

const silu = (c: any) => {
  if (c.hidden_act && c.hidden_act !== 'silu') throw new Error(`unsupported hidden_act "${c.hidden_act}"`);
  return 'silu' as const;
};
const allFull = () => null;
const LLAMA_LIKE = {
  oBias: (c: any) => !!c.attention_bias,
  qkNorm: false,
  normOffset: 0,
  sandwichNorms: false,
  embedScaled: false,
  mlpAct: silu,
  scoreGlobalOnly: false,
  layerKinds: allFull,
  localRope: false,
  queryPreAttnScalar: false,
  tiedByDefault: false,
  configDefaults: {},
  refuseUseSlidingWindow: null,
} as const;
const FAMILIES: Record<string, FamilyQuirks> = {
  llama: { ...LLAMA_LIKE, family: 'llama', qkvBias: (c) => !!c.attention_bias, refuseUseSlidingWindow: 'is true' },
  mistral: {
    ...LLAMA_LIKE,
    family: 'mistral',
    qkvBias: () => false,
    // sliding_window set: every layer slides
    layerKinds: (_c, n, window) => (window ? Array(n).fill('sliding') : null),
  },
  qwen2: {
    ...LLAMA_LIKE,
    family: 'qwen2',
    qkvBias: () => true,
    oBias: () => false,
    // use_sliding_window: the layers from max_window_layers on slide
    layerKinds: (c, n, window) => (c.use_sliding_window && window ? Array.from({ length: n }, (_, i) => (i >= (c.max_window_layers ?? n) ? 'sliding' : 'full')) : null),
  },
  qwen3: { ...LLAMA_LIKE, family: 'qwen3', qkvBias: (c) => !!c.attention_bias, qkNorm: true, refuseUseSlidingWindow: 'is true (Qwen3 sliding-window layers)' },
  gemma3_text: {
    family: 'gemma3',
    qkvBias: (c) => !!c.attention_bias,
    oBias: (c) => !!c.attention_bias,
    qkNorm: true,
    normOffset: 1,
    sandwichNorms: true,
    embedScaled: true,
    mlpAct: (c) => {
      const act = c.hidden_activation ?? c.hidden_act ?? 'gelu_pytorch_tanh';
      if (act !== 'gelu_pytorch_tanh' && act !== 'gelu_tanh') throw new Error(`unsupported Gemma activation ${act}`);
      return 'gelu_tanh';
    },
    scoreGlobalOnly: true,
    // every sliding_window_pattern-th layer is global
    layerKinds: (c, n) => Array.from({ length: n }, (_, i) => ((i + 1) % (c.sliding_window_pattern ?? 6) === 0 ? 'full' : 'sliding')),
    localRope: true,
    queryPreAttnScalar: true,
    tiedByDefault: true,
    // multimodal checkpoints (e.g. google/gemma-3-4b-it) write a sparse text_config
    configDefaults: GEMMA3_TEXT_DEFAULTS,
    refuseUseSlidingWindow: null,
  },
};

/** Multimodal wrappers (Gemma3ForConditionalGeneration) keep the LM config in text_config. */
const WRAPPERS: Record<string, { textModelType: string; weightPrefix: string }> = {
  gemma3: { textModelType: 'gemma3_text', weightPrefix: 'language_model.model.' },
};

export const SUPPORTED_MODEL_TYPES = Object.keys(FAMILIES).concat(Object.keys(WRAPPERS));

function parseDtype(v: unknown): TorchDType {
  if (v === 'bfloat16' || v === 'float16' || v === 'float32') return v;
  if (v === 'float' || v === undefined || v === null) return 'float32';
  if (v === 'half') return 'float16';
  return 'float32';
}

function ropeFrom(params: any, fallbackTheta: number, partialFactor: number): RopeSpec {
  const p = params ?? {};
  const type = p.rope_type ?? p.type ?? 'default';
  const spec: RopeSpec = { theta: p.rope_theta ?? fallbackTheta, type, partialFactor };
  if (type === 'default') return spec;
  if (type === 'linear') return { ...spec, factor: p.factor };
  if (type === 'llama3') {
    return {
      ...spec,
      factor: p.factor,
      lowFreqFactor: p.low_freq_factor,
      highFreqFactor: p.high_freq_factor,
      originalMaxPositions: p.original_max_position_embeddings,
    };
  }
  if (type === 'yarn') {
    return {
      ...spec,
      factor: p.factor,
      originalMaxPositions: p.original_max_position_embeddings,
      betaFast: p.beta_fast ?? 32,
      betaSlow: p.beta_slow ?? 1,
      attentionFactor: p.attention_factor,
    };
  }
  throw new Error(`unsupported rope_scaling type "${type}" (supported: default, linear, llama3, yarn)`);
}

const MAX_CONFIG_SIZE = 1 << 20;

/** Parse an already-loaded config object. `file` names the source in error messages. */
export function parseModelConfig(raw: any, file = 'config.json'): ModelSpec {
  if (!raw || typeof raw !== 'object') throw fileError(file, 'not a JSON object');
  const wrapper = raw.text_config && Object.hasOwn(WRAPPERS, raw.model_type) ? WRAPPERS[raw.model_type] : undefined;
  const given = wrapper ? { ...raw.text_config, torch_dtype: raw.text_config.torch_dtype ?? raw.torch_dtype ?? raw.dtype } : raw;
  const modelType: string = given.model_type ?? wrapper?.textModelType;
  const quirks = Object.hasOwn(FAMILIES, modelType) ? FAMILIES[modelType] : undefined;
  if (!quirks) {
    throw fileError(
      file,
      `unsupported architecture: model_type "${raw.model_type ?? '(missing)'}"${raw.architectures ? ` (${raw.architectures.join(', ')})` : ''}; supported: ${SUPPORTED_MODEL_TYPES.join(', ')}`,
    );
  }
  const c = { ...quirks.configDefaults, ...given };
  /** sizes and counts: positive integers below a bound no real model reaches (a hostile config must not allocate) */
  const count = (k: string, fallback?: number): number => {
    const v = c[k] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_CONFIG_SIZE) throw fileError(file, `"${k}" must be a positive integer below ${MAX_CONFIG_SIZE} (got ${JSON.stringify(c[k])})`);
    return v;
  };
  const hiddenSize = count('hidden_size');
  const numLayers = count('num_hidden_layers');
  const numHeads = count('num_attention_heads');
  const numKvHeads = count('num_key_value_heads', numHeads);
  if (c.head_dim !== undefined && c.head_dim !== null) count('head_dim');
  if (numHeads % numKvHeads !== 0) throw fileError(file, `num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  const headDim = typeof c.head_dim === 'number' ? c.head_dim : hiddenSize / numHeads;
  const rmsNormEps = typeof c.rms_norm_eps === 'number' ? c.rms_norm_eps : 1e-6;

  // Layer kinds: explicit layer_types, else the family's rule (Gemma's sliding_window_pattern,
  // Mistral's sliding_window, Qwen2's use_sliding_window), else all full.
  let layerKinds: LayerKind[];
  const slidingWindow: number | null = typeof c.sliding_window === 'number' ? c.sliding_window : null;
  if (Array.isArray(c.layer_types)) {
    if (c.layer_types.length !== numLayers) throw fileError(file, `layer_types has ${c.layer_types.length} entries for ${numLayers} layers`);
    layerKinds = c.layer_types.map((t: string) => (t === 'sliding_attention' ? 'sliding' : 'full'));
  } else {
    layerKinds = quirks.layerKinds(c, numLayers, slidingWindow) ?? Array(numLayers).fill('full');
  }
  if (layerKinds.includes('sliding') && !slidingWindow) throw fileError(file, 'sliding-window layers but no "sliding_window" size');

  // RoPE: transformers >= 5 writes rope_parameters (possibly per layer type); older configs
  // have rope_theta + rope_scaling.
  const partial = typeof c.partial_rotary_factor === 'number' ? c.partial_rotary_factor : 1;
  let rope: RopeSpec;
  let ropeLocal: RopeSpec;
  try {
    const rp = c.rope_parameters;
    if (rp && (rp.full_attention || rp.sliding_attention)) {
      rope = ropeFrom(rp.full_attention, c.rope_theta ?? 10000, partial);
      ropeLocal = ropeFrom(rp.sliding_attention ?? rp.full_attention, c.rope_local_base_freq ?? 10000, partial);
    } else if (rp) {
      rope = ropeFrom(rp, c.rope_theta ?? 10000, partial);
      ropeLocal = quirks.localRope ? ropeFrom(null, c.rope_local_base_freq ?? 10000, partial) : rope;
    } else {
      rope = ropeFrom({ ...(c.rope_scaling ?? {}), rope_theta: c.rope_theta ?? 10000 }, 10000, partial);
      ropeLocal = quirks.localRope ? ropeFrom(null, c.rope_local_base_freq ?? 10000, partial) : rope;
    }
  } catch (e) {
    throw fileError(file, (e as Error).message);
  }

  const queryScalar = quirks.queryPreAttnScalar ? (c.query_pre_attn_scalar ?? headDim) : headDim;
  const eos = c.eos_token_id ?? raw.eos_token_id;
  const scoredLayers = layerKinds.map((k, i) => (quirks.scoreGlobalOnly && k !== 'full' ? -1 : i)).filter((i) => i >= 0);

  let mlpAct: 'silu' | 'gelu_tanh';
  try {
    mlpAct = quirks.mlpAct(c);
  } catch (e) {
    throw fileError(file, (e as Error).message);
  }

  refuseUnimplemented(c, quirks, file);
  const dca = c.dual_chunk_attention_config;
  if (dca !== undefined && dca !== null && !(isObject(dca) && Number.isSafeInteger(dca.chunk_size) && dca.chunk_size > 0)) {
    throw fileError(file, '"dual_chunk_attention_config" has no positive integer "chunk_size"');
  }

  return {
    family: quirks.family,
    architecture: (raw.architectures ?? [])[0] ?? '',
    modelType,
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize: count('intermediate_size'),
    vocabSize: count('vocab_size'),
    rmsNormEps,
    maxPositions: c.max_position_embeddings ?? 4096,
    tieWordEmbeddings: raw.tie_word_embeddings ?? c.tie_word_embeddings ?? quirks.tiedByDefault,
    torchDtype: parseDtype(c.torch_dtype ?? c.dtype ?? raw.torch_dtype ?? raw.dtype),
    layerKinds,
    // a window that no layer uses is no window (Qwen2.5 writes sliding_window with use_sliding_window false)
    slidingWindow: layerKinds.includes('sliding') ? slidingWindow : null,
    rope,
    ropeLocal,
    qkvBias: quirks.qkvBias(c),
    oBias: quirks.oBias(c),
    mlpBias: !!c.mlp_bias,
    qkNorm: quirks.qkNorm,
    normOffset: quirks.normOffset,
    sandwichNorms: quirks.sandwichNorms,
    embedScale: quirks.embedScaled ? Math.sqrt(hiddenSize) : null,
    mlpAct,
    attnScale: 1 / Math.sqrt(queryScalar),
    finalLogitSoftcap: c.final_logit_softcapping ?? null,
    attnLogitSoftcap: c.attn_logit_softcapping ?? null,
    bosTokenId: c.bos_token_id ?? raw.bos_token_id ?? null,
    eosTokenIds: eos === undefined || eos === null ? [] : Array.isArray(eos) ? eos : [eos],
    scoredLayers,
    weightPrefix: wrapper?.weightPrefix ?? 'model.',
    dualChunkSize: dca ? dca.chunk_size : null,
  };
}

const isObject = (v: unknown): v is Record<string, any> => !!v && typeof v === 'object' && !Array.isArray(v);

/**
 * Config fields that change the model's math and that the graph builder does not implement:
 * refused by name rather than silently ignored. (Fields that do not change the math, such as
 * pretraining_tp's split matmuls or use_cache, are not listed.)
 */
function refuseUnimplemented(c: any, quirks: FamilyQuirks, file: string): void {
  const refuse = (field: string, why: string) => {
    throw fileError(file, `"${field}" ${why}; fastkvzip does not implement it, and ignoring it would change the model's outputs`);
  };
  if (Array.isArray(c.layer_types)) {
    const bad = c.layer_types.find((t: unknown) => t !== 'full_attention' && t !== 'sliding_attention');
    if (bad !== undefined) refuse('layer_types', `contains ${JSON.stringify(bad)} (supported: full_attention, sliding_attention)`);
  }
  if (quirks.refuseUseSlidingWindow && c.use_sliding_window === true) refuse('use_sliding_window', quirks.refuseUseSlidingWindow);
  if (c.use_bidirectional_attention === true) refuse('use_bidirectional_attention', 'is true (bidirectional attention)');
  if (typeof c.attention_chunk_size === 'number') refuse('attention_chunk_size', `is ${c.attention_chunk_size} (chunked local attention)`);
  if (Array.isArray(c.no_rope_layers)) refuse('no_rope_layers', 'is set (layers without RoPE)');
  if (c.quantization_config) refuse('quantization_config', 'is set (quantized checkpoint)');
  for (const rp of [c.rope_scaling, c.rope_parameters, c.rope_parameters?.full_attention, c.rope_parameters?.sliding_attention]) {
    if (!isObject(rp)) continue;
    for (const k of ['mscale', 'mscale_all_dim', 'short_factor', 'long_factor']) if (rp[k] !== undefined && rp[k] !== null) refuse(`rope_scaling.${k}`, `is set`);
    if (rp.truncate === false) refuse('rope_scaling.truncate', 'is false');
  }
}

/** Read and parse `<dir>/config.json`, with errors that name the file. */
export function loadModelConfig(dir: string): ModelSpec {
  const file = path.join(dir, 'config.json');
  if (!existsSync(file)) throw fileError(file, 'missing (every model folder needs config.json)');
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw fileError(file, `not valid JSON (${(e as Error).message})`);
  }
  return parseModelConfig(raw, file);
}
