// Tiny random-weight models held in memory, for graph self-consistency tests that do not
// need the Python goldens (those live in test/fixtures and are compared in other tests).
import { parseModelConfig, type ModelSpec } from '../../src/model/config.js';
import type { TensorSource } from '../../src/onnx/weights.js';

export function seededRandom(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) / 4294967296) * 2 - 1;
  };
}

export const TINY_CONFIGS: Record<string, Record<string, unknown>> = {
  qwen3: {
    model_type: 'qwen3', architectures: ['Qwen3ForCausalLM'], hidden_size: 48, num_hidden_layers: 2, num_attention_heads: 4,
    num_key_value_heads: 2, head_dim: 16, intermediate_size: 64, vocab_size: 97, rms_norm_eps: 1e-6, rope_theta: 10000,
    tie_word_embeddings: true, max_position_embeddings: 512,
  },
  gemma3: {
    model_type: 'gemma3_text', architectures: ['Gemma3ForCausalLM'], hidden_size: 32, num_hidden_layers: 3, num_attention_heads: 4,
    num_key_value_heads: 2, head_dim: 16, intermediate_size: 48, vocab_size: 97, rms_norm_eps: 1e-6, rope_theta: 1e6,
    rope_local_base_freq: 10000, rope_scaling: { rope_type: 'linear', factor: 8 }, query_pre_attn_scalar: 24, sliding_window: 5,
    layer_types: ['sliding_attention', 'full_attention', 'sliding_attention'], max_position_embeddings: 512,
  },
};

/** HF weight names and shapes for a spec (mirrors what the decoder reads). */
export function weightShapes(spec: ModelSpec): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const D = spec.hiddenSize;
  const q = spec.numHeads * spec.headDim;
  const kv = spec.numKvHeads * spec.headDim;
  const p = spec.weightPrefix;
  m.set(`${p}embed_tokens.weight`, [spec.vocabSize, D]);
  for (let l = 0; l < spec.numLayers; l++) {
    const n = (s: string) => `${p}layers.${l}.${s}`;
    m.set(n('input_layernorm.weight'), [D]);
    m.set(n('self_attn.q_proj.weight'), [q, D]);
    m.set(n('self_attn.k_proj.weight'), [kv, D]);
    m.set(n('self_attn.v_proj.weight'), [kv, D]);
    m.set(n('self_attn.o_proj.weight'), [D, q]);
    if (spec.qkvBias) {
      m.set(n('self_attn.q_proj.bias'), [q]);
      m.set(n('self_attn.k_proj.bias'), [kv]);
      m.set(n('self_attn.v_proj.bias'), [kv]);
    }
    if (spec.qkNorm) {
      m.set(n('self_attn.q_norm.weight'), [spec.headDim]);
      m.set(n('self_attn.k_norm.weight'), [spec.headDim]);
    }
    m.set(n('post_attention_layernorm.weight'), [D]);
    if (spec.sandwichNorms) {
      m.set(n('pre_feedforward_layernorm.weight'), [D]);
      m.set(n('post_feedforward_layernorm.weight'), [D]);
    }
    m.set(n('mlp.gate_proj.weight'), [spec.intermediateSize, D]);
    m.set(n('mlp.up_proj.weight'), [spec.intermediateSize, D]);
    m.set(n('mlp.down_proj.weight'), [D, spec.intermediateSize]);
  }
  m.set(`${p}norm.weight`, [D]);
  if (!spec.tieWordEmbeddings) m.set('lm_head.weight', [spec.vocabSize, D]);
  return m;
}

export function randomModel(name: keyof typeof TINY_CONFIGS, seed = 1): { spec: ModelSpec; source: TensorSource } {
  const spec = parseModelConfig(TINY_CONFIGS[name], `${name}/config.json`);
  const rand = seededRandom(seed);
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [n, shape] of weightShapes(spec)) {
    const size = shape.reduce((a, b) => a * b, 1);
    const isNorm = n.endsWith('norm.weight');
    const data = new Float32Array(size).map(() => (isNorm ? (spec.normOffset ? 0 : 1) + 0.2 * rand() : 0.4 * rand()));
    tensors.set(n, { shape, data });
  }
  const source: TensorSource = {
    has: (n) => tensors.has(n),
    shape: (n) => tensors.get(n)!.shape,
    readF32: (n) => {
      const t = tensors.get(n);
      if (!t) throw new Error(`no tensor ${n}`);
      return t.data.slice();
    },
  };
  return { spec, source };
}
