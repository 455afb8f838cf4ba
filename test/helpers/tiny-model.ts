// Tiny model folders (config.json + random safetensors + a tiny tokenizer) for tests.
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { parseModelConfig } from '../../src/model/config.js';
import { expectedWeights } from '../../src/model/expected-weights.js';
import { writeSafetensors, type TensorToWrite } from '../../src/model/safetensors/index.js';
import { f32ToBf16Bits } from '../../src/util/half.js';
import { writeTinyTokenizer } from './tiny-tokenizer.js';

export type TinyFamily = 'qwen3' | 'llama' | 'qwen2' | 'gemma3' | 'gemma3-wrapper';

/** Small but structurally real configs (2 layers, GQA 4:2, head_dim 8). */
export function tinyConfig(family: TinyFamily): Record<string, unknown> {
  const base = {
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 8,
    vocab_size: 64,
    rms_norm_eps: 1e-6,
    max_position_embeddings: 256,
    torch_dtype: 'bfloat16',
  };
  switch (family) {
    case 'qwen3':
      return { architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', ...base, tie_word_embeddings: true, rope_theta: 1e6 };
    case 'qwen2':
      return { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', ...base, tie_word_embeddings: false };
    case 'llama':
      return { architectures: ['LlamaForCausalLM'], model_type: 'llama', ...base, tie_word_embeddings: false };
    case 'gemma3':
      return { architectures: ['Gemma3ForCausalLM'], model_type: 'gemma3_text', ...base, sliding_window: 16, sliding_window_pattern: 2 };
    case 'gemma3-wrapper':
      return {
        architectures: ['Gemma3ForConditionalGeneration'],
        model_type: 'gemma3',
        torch_dtype: 'bfloat16',
        text_config: { model_type: 'gemma3_text', ...base, sliding_window: 16, sliding_window_pattern: 2 },
        vision_config: { model_type: 'siglip_vision_model', hidden_size: 8 },
      };
  }
}

export interface TinyModelOptions {
  config?: Record<string, unknown>;
  /** tensors to leave out */
  omit?: string[];
  /** tensors to write with another shape */
  reshape?: Record<string, number[]>;
  /** split the weights into this many shards with an index (default 1: model.safetensors) */
  shards?: number;
  tokenizer?: boolean;
  /** replace the weight prefix the config implies (e.g. to mimic newer Gemma-3 checkpoints) */
  weightPrefix?: string;
}

/** Deterministic pseudo-random bf16 data. */
function randomBf16(n: number, seed: number): Uint16Array {
  let s = seed >>> 0 || 1;
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = f32ToBf16Bits(((s >>> 0) / 2 ** 32 - 0.5) * 0.1);
  }
  return out;
}

export async function writeTinyModel(dir: string, family: TinyFamily, opts: TinyModelOptions = {}): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const config = opts.config ?? tinyConfig(family);
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  const spec = parseModelConfig(config);
  const from = spec.weightPrefix;
  const rename = (name: string) => (opts.weightPrefix && name.startsWith(from) ? opts.weightPrefix + name.slice(from.length) : name);
  const tensors: TensorToWrite[] = expectedWeights(spec)
    .filter((w) => !opts.omit?.includes(w.name))
    .map((w, i) => {
      const shape = opts.reshape?.[w.name] ?? w.shape;
      return { name: rename(w.name), dtype: 'BF16' as const, shape, data: randomBf16(shape.reduce((a, b) => a * b, 1), i + 1) };
    });
  const shards = opts.shards ?? 1;
  if (shards === 1) {
    await writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  } else {
    const weightMap: Record<string, string> = {};
    for (let s = 0; s < shards; s++) {
      const name = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
      const part = tensors.filter((_, i) => i % shards === s);
      for (const t of part) weightMap[t.name] = name;
      await writeSafetensors(path.join(dir, name), part, { format: 'pt' });
    }
    writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }, null, 2));
  }
  if (opts.tokenizer ?? true) writeTinyTokenizer(dir);
}
