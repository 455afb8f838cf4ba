import { it, expect } from 'vitest';
import { parseModelConfig } from '../../src/model/config.js';

// google/gemma-3-4b-it's config.json names few text_config keys; transformers' Gemma3TextConfig
// defaults fill the rest. This used to fail with 'missing or invalid "num_attention_heads"'.
const GEMMA3_4B_IT = {
  architectures: ['Gemma3ForConditionalGeneration'],
  boi_token_index: 255999,
  eoi_token_index: 256000,
  eos_token_id: [1, 106],
  image_token_index: 262144,
  initializer_range: 0.02,
  mm_tokens_per_image: 256,
  model_type: 'gemma3',
  text_config: {
    hidden_size: 2560,
    intermediate_size: 10240,
    model_type: 'gemma3_text',
    num_hidden_layers: 34,
    rope_scaling: { factor: 8.0, rope_type: 'linear' },
    sliding_window: 1024,
  },
  torch_dtype: 'bfloat16',
  transformers_version: '4.50.0.dev0',
  vision_config: { hidden_size: 1152, image_size: 896, intermediate_size: 4304, model_type: 'siglip_vision_model', num_attention_heads: 16, num_hidden_layers: 27, patch_size: 14, vision_use_head: false },
};

it('fills Gemma3TextConfig defaults for a sparse text_config', () => {
  const s = parseModelConfig(GEMMA3_4B_IT);
  expect(s).toMatchObject({
    family: 'gemma3',
    hiddenSize: 2560,
    numLayers: 34,
    numHeads: 8,
    numKvHeads: 4,
    headDim: 256,
    vocabSize: 262208,
    intermediateSize: 10240,
    slidingWindow: 1024,
    tieWordEmbeddings: true,
    torchDtype: 'bfloat16',
    eosTokenIds: [1, 106],
    weightPrefix: 'language_model.model.',
    maxPositions: 131072,
  });
  expect(s.rope).toMatchObject({ theta: 1_000_000, type: 'linear', factor: 8 });
  expect(s.ropeLocal).toMatchObject({ theta: 10_000, type: 'default' });
  expect(s.attnScale).toBeCloseTo(1 / 16);
  expect(s.scoredLayers).toEqual([5, 11, 17, 23, 29]);
});

it('explicit values still win over the defaults', () => {
  const s = parseModelConfig({ ...GEMMA3_4B_IT, text_config: { ...GEMMA3_4B_IT.text_config, num_attention_heads: 16, head_dim: 128, query_pre_attn_scalar: 168 } });
  expect(s.numHeads).toBe(16);
  expect(s.headDim).toBe(128);
  expect(s.attnScale).toBeCloseTo(1 / Math.sqrt(168));
});
