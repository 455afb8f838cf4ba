// Tiny random-weight models held in memory, for graph self-consistency tests that do not
// need the Python goldens (those live in test/fixtures and are compared in other tests).
import { parseModelConfig, type ModelSpec } from '../../src/model/config.js';
import type { TensorSource } from '../../src/onnx/weights.js';
import { expectedWeights } from '../../src/model/expected-weights.js';

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

export function randomModel(name: keyof typeof TINY_CONFIGS, seed = 1): { spec: ModelSpec; source: TensorSource } {
  const spec = parseModelConfig(TINY_CONFIGS[name], `${name}/config.json`);
  const rand = seededRandom(seed);
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const { name: n, shape } of expectedWeights(spec)) {
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
