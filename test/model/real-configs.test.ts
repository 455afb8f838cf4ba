// The target checkpoints' own config.json files (as published on the hub, committed under
// test/fixtures/configs/), field by field against what the graph builder implements: every
// size, RoPE and attention quirk read, and fields that would change the math refused by name.
import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { FIXTURES } from '../helpers/golden.js';
import { parseModelConfig } from '../../src/model/config.js';
import { applyRopeOverride, parseRopeOverride, QWEN3_PUBLIC_YARN } from '../../src/model/rope-override.js';
import { positionLimit } from '../../src/model/position-limit.js';
import { ropeTables } from '../../src/onnx/rope.js';

const hub = (name: string) => JSON.parse(readFileSync(path.join(FIXTURES, 'configs', `${name}.json`), 'utf8'));
const parse = (name: string, raw = hub(name)) => parseModelConfig(raw, `${name}/config.json`);

describe('the real configs of the target checkpoints', () => {
  it('Qwen3-8B and Qwen3-14B: sizes, q/k norms, RoPE 1e6 over 40,960 positions, all layers scored', () => {
    const s8 = parse('Qwen3-8B');
    expect([s8.hiddenSize, s8.numLayers, s8.numHeads, s8.numKvHeads, s8.headDim, s8.intermediateSize, s8.vocabSize]).toEqual([4096, 36, 32, 8, 128, 12288, 151936]);
    expect(s8.family).toBe('qwen3');
    expect(s8.qkNorm).toBe(true);
    expect(s8.qkvBias).toBe(false);
    expect(s8.rope).toMatchObject({ type: 'default', theta: 1_000_000 });
    expect(s8.maxPositions).toBe(40960);
    expect(s8.tieWordEmbeddings).toBe(false);
    expect(s8.torchDtype).toBe('bfloat16');
    expect(s8.scoredLayers).toEqual(Array.from({ length: 36 }, (_, i) => i));
    expect(s8.dualChunkSize).toBeNull();
    const s14 = parse('Qwen3-14B');
    expect([s14.hiddenSize, s14.numLayers, s14.numHeads, s14.numKvHeads, s14.headDim, s14.intermediateSize]).toEqual([5120, 40, 40, 8, 128, 17408]);
  });

  it('the public Qwen3 setup: YaRN x4 over 32,768 positions, 131,072 in all', () => {
    const o = parseRopeOverride(QWEN3_PUBLIC_YARN)!;
    expect(o).toEqual({ type: 'yarn', factor: 4, originalMaxPositions: 32768, maxPositions: 131072 });
    const s = applyRopeOverride(parse('Qwen3-8B'), o);
    expect(s.rope).toMatchObject({ type: 'yarn', theta: 1_000_000, factor: 4, originalMaxPositions: 32768, betaFast: 32, betaSlow: 1 });
    expect(s.ropeLocal).toEqual(s.rope);
    expect(s.maxPositions).toBe(131072);
    // YaRN's attention factor 0.1 ln 4 + 1 scales cos and sin
    expect(ropeTables(s.rope, s.headDim).attentionScale).toBeCloseTo(0.1 * Math.log(4) + 1, 12);
    expect(parseRopeOverride('none')).toBeNull();
    for (const bad of ['yarn', 'yarn:1:32768', 'yarn:4:-1', 'linear:4:32768', 'yarn:x:1']) expect(() => parseRopeOverride(bad), bad).toThrow(/rope-override/);
    expect(() => applyRopeOverride(parse('gemma-3-12b-it'), o)).toThrow(/gemma3/);
  });

  it('Qwen2.5-7B-Instruct-1M: theta 1e7, 1,010,000 positions, dual chunk attention exact only inside its 262,144-position chunk', () => {
    const s = parse('Qwen2.5-7B-Instruct-1M');
    expect([s.hiddenSize, s.numLayers, s.numHeads, s.numKvHeads, s.headDim, s.intermediateSize, s.vocabSize]).toEqual([3584, 28, 28, 4, 128, 18944, 152064]);
    expect(s.family).toBe('qwen2');
    expect(s.qkvBias).toBe(true);
    expect(s.oBias).toBe(false);
    expect(s.rmsNormEps).toBe(1e-5);
    expect(s.rope).toMatchObject({ type: 'default', theta: 1e7 });
    expect(s.maxPositions).toBe(1_010_000);
    expect(s.layerKinds.every((k) => k === 'full')).toBe(true); // use_sliding_window: false
    expect(s.dualChunkSize).toBe(262144);
    expect(positionLimit(s).positions).toBe(262144);
    expect(positionLimit(s).why).toMatch(/dual chunk attention/);
  });

  it('Llama-3.1-8B-Instruct: llama3 RoPE (theta 5e5, factor 8, 8,192 original positions), 131,072 positions', () => {
    const s = parse('Llama-3.1-8B-Instruct');
    expect([s.hiddenSize, s.numLayers, s.numHeads, s.numKvHeads, s.headDim, s.intermediateSize, s.vocabSize]).toEqual([4096, 32, 32, 8, 128, 14336, 128256]);
    expect(s.rope).toMatchObject({ type: 'llama3', theta: 500000, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 });
    expect(s.maxPositions).toBe(131072);
    expect(s.eosTokenIds).toEqual([128001, 128008, 128009]);
    expect(s.qkvBias || s.oBias || s.mlpBias).toBe(false);
    expect(positionLimit(s).positions).toBe(131072);
  });

  it('gemma-3-12b-it: the multimodal wrapper read through text_config and transformers defaults; 8 global layers scored', () => {
    const s = parse('gemma-3-12b-it');
    expect(s.family).toBe('gemma3');
    expect([s.hiddenSize, s.numLayers, s.numHeads, s.numKvHeads, s.headDim, s.intermediateSize, s.vocabSize]).toEqual([3840, 48, 16, 8, 256, 15360, 262208]);
    expect(s.scoredLayers).toEqual([5, 11, 17, 23, 29, 35, 41, 47]);
    expect(s.slidingWindow).toBe(1024);
    expect(s.rope).toMatchObject({ type: 'linear', factor: 8, theta: 1_000_000 });
    expect(s.ropeLocal).toMatchObject({ type: 'default', theta: 10_000 });
    expect(s.attnScale).toBeCloseTo(256 ** -0.5, 15); // query_pre_attn_scalar 256 (default)
    expect(s.eosTokenIds).toEqual([1, 106]);
    expect(s.weightPrefix).toBe('language_model.model.');
  });

  it('fields that change the math and are not implemented are refused by name', () => {
    const q = hub('Qwen3-8B');
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ...q, use_sliding_window: true, sliding_window: 4096 }, /"use_sliding_window"/],
      [{ ...q, layer_types: Array(36).fill('chunked_attention') }, /"layer_types" contains "chunked_attention"/],
      [{ ...q, rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 32768, mscale: 0.7 } }, /"rope_scaling.mscale"/],
      [{ ...q, rope_scaling: { rope_type: 'longrope', short_factor: [1], long_factor: [1] } }, /rope_scaling.short_factor|longrope/],
      [{ ...q, rope_scaling: { rope_type: 'dynamic', factor: 2 } }, /unsupported rope_scaling type "dynamic"/],
      [{ ...q, quantization_config: { quant_method: 'awq' } }, /"quantization_config"/],
      [{ ...q, attention_chunk_size: 8192 }, /"attention_chunk_size"/],
      [{ ...hub('Qwen2.5-7B-Instruct-1M'), dual_chunk_attention_config: { local_size: 8192 } }, /dual_chunk_attention_config/],
    ];
    for (const [raw, re] of cases) expect(() => parse('x', raw as any), String(re)).toThrow(re);
    // and fields that do not change the math are accepted
    expect(() => parse('x', { ...hub('Llama-3.1-8B-Instruct'), pretraining_tp: 2 })).not.toThrow();
  });
});
