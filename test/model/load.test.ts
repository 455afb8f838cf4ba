import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync, truncateSync, statSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { openModel } from '../../src/model/load.js';
import { expectedWeights, lmHeadName } from '../../src/model/expected-weights.js';
import { parseModelConfig } from '../../src/model/config.js';
import { UserError } from '../../src/util/errors.js';
import { tinyConfig, writeTinyModel } from '../helpers/tiny-model.js';

let dir: string;
beforeEach(() => {
  dir = path.join(mkdtempSync(path.join(tmpdir(), 'fkz-load-')), 'model');
});
afterEach(() => rmSync(path.dirname(dir), { recursive: true, force: true }));

/** The error must be a one-line UserError that names `file`. */
function expectFileError(fn: () => unknown, file: string, problem: RegExp) {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(UserError);
  const msg = (err as Error).message;
  expect(msg.startsWith(`${file}: `), msg).toBe(true);
  expect(msg).toMatch(problem);
  expect(msg).not.toContain('\n');
}

describe('expectedWeights', () => {
  it('knows each family’s tensors', () => {
    const names = (f: Parameters<typeof tinyConfig>[0]) => expectedWeights(parseModelConfig(tinyConfig(f))).map((w) => w.name);
    const qwen3 = names('qwen3');
    expect(qwen3).toContain('model.layers.1.self_attn.q_norm.weight');
    expect(qwen3).not.toContain('lm_head.weight'); // tied
    expect(qwen3).not.toContain('model.layers.0.self_attn.q_proj.bias');
    const qwen2 = names('qwen2');
    expect(qwen2).toContain('model.layers.0.self_attn.k_proj.bias');
    expect(qwen2).not.toContain('model.layers.0.self_attn.o_proj.bias');
    expect(qwen2).toContain('lm_head.weight');
    const llama = names('llama');
    expect(llama).not.toContain('model.layers.0.self_attn.q_norm.weight');
    expect(llama.length).toBe(1 + 2 * 9 + 1 + 1);
    const gemma = names('gemma3-wrapper');
    expect(gemma).toContain('language_model.model.layers.0.pre_feedforward_layernorm.weight');
    expect(gemma).toContain('language_model.model.layers.1.post_feedforward_layernorm.weight');
    expect(gemma).not.toContain('language_model.lm_head.weight'); // Gemma ties by default
    const spec = parseModelConfig(tinyConfig('llama'));
    const q = expectedWeights(spec).find((w) => w.name === 'model.layers.0.self_attn.k_proj.weight')!;
    expect(q.shape).toEqual([2 * 8, 32]);
    expect(lmHeadName('model.')).toBe('lm_head.weight');
    expect(lmHeadName('language_model.model.')).toBe('language_model.lm_head.weight');
  });
});

describe('openModel', () => {
  it('opens good folders of each family, single file and sharded', async () => {
    await writeTinyModel(dir, 'qwen3');
    const m = openModel(dir);
    expect(m.spec.family).toBe('qwen3');
    expect(m.tokenizer?.eosTokenId).toBe(29);
    expect(m.weights.info('model.layers.0.self_attn.q_proj.weight').shape).toEqual([32, 32]);
    rmSync(dir, { recursive: true });
    await writeTinyModel(dir, 'llama', { shards: 3 });
    const l = openModel(dir);
    expect(l.weights.files.length).toBe(3);
    expect(l.weights.readF32('lm_head.weight').length).toBe(64 * 32);
    rmSync(dir, { recursive: true });
    await writeTinyModel(dir, 'gemma3-wrapper');
    expect(openModel(dir).spec.weightPrefix).toBe('language_model.model.');
  });

  it('follows the weights when a Gemma-3 checkpoint uses the newer "model.language_model." prefix', async () => {
    await writeTinyModel(dir, 'gemma3-wrapper', { weightPrefix: 'model.language_model.' });
    const m = openModel(dir);
    expect(m.spec.weightPrefix).toBe('model.language_model.');
    expect(m.weights.has('model.language_model.layers.0.self_attn.q_norm.weight')).toBe(true);
  });

  it('missing folder / not a folder', async () => {
    expectFileError(() => openModel(dir), dir, /missing/);
    await writeTinyModel(dir, 'qwen3');
    expectFileError(() => openModel(path.join(dir, 'config.json')), path.join(dir, 'config.json'), /not a folder/);
  });

  it('missing config.json', async () => {
    await writeTinyModel(dir, 'qwen3');
    rmSync(path.join(dir, 'config.json'));
    expectFileError(() => openModel(dir), path.join(dir, 'config.json'), /missing/);
  });

  it('corrupt config.json', async () => {
    await writeTinyModel(dir, 'qwen3');
    writeFileSync(path.join(dir, 'config.json'), '{"model_type": "qwen3", ');
    expectFileError(() => openModel(dir), path.join(dir, 'config.json'), /not valid JSON/);
  });

  it('unsupported architecture', async () => {
    await writeTinyModel(dir, 'qwen3');
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], n_embd: 32 }));
    expectFileError(() => openModel(dir), path.join(dir, 'config.json'), /unsupported architecture: model_type "gpt2" \(GPT2LMHeadModel\)/);
  });

  it('no weights', async () => {
    await writeTinyModel(dir, 'qwen3');
    rmSync(path.join(dir, 'model.safetensors'));
    expectFileError(() => openModel(dir), dir, /no weights/);
  });

  it('truncated safetensors', async () => {
    await writeTinyModel(dir, 'qwen3');
    const f = path.join(dir, 'model.safetensors');
    truncateSync(f, statSync(f).size - 100);
    expectFileError(() => openModel(dir), f, /truncated or corrupt: tensor ".+" ends at data byte/);
  });

  it('missing tensor (first one named, the rest counted)', async () => {
    await writeTinyModel(dir, 'qwen3', { omit: ['model.layers.1.self_attn.k_norm.weight', 'model.norm.weight'] });
    expectFileError(
      () => openModel(dir),
      path.join(dir, 'model.safetensors'),
      /missing tensor "model\.layers\.1\.self_attn\.k_norm\.weight" \(and 1 more\) needed by Qwen3ForCausalLM/,
    );
  });

  it('missing lm_head in an untied sharded model names the index', async () => {
    await writeTinyModel(dir, 'llama', { omit: ['lm_head.weight'], shards: 2 });
    expectFileError(() => openModel(dir), path.join(dir, 'model.safetensors.index.json'), /missing tensor "lm_head\.weight"/);
  });

  it('wrong shape names the shard holding it', async () => {
    await writeTinyModel(dir, 'llama', { reshape: { 'model.layers.1.mlp.down_proj.weight': [64, 32] }, shards: 2 });
    const index = JSON.parse(readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
    const shard = path.join(dir, index.weight_map['model.layers.1.mlp.down_proj.weight']);
    expectFileError(
      () => openModel(dir),
      shard,
      /tensor "model\.layers\.1\.mlp\.down_proj\.weight" has shape \[64, 32\] but config\.json implies \[32, 64\]/,
    );
  });

  it('missing tokenizer: an error by default, null when not required', async () => {
    await writeTinyModel(dir, 'qwen3', { tokenizer: false });
    expectFileError(() => openModel(dir), path.join(dir, 'tokenizer.json'), /missing/);
    expect(openModel(dir, { requireTokenizer: false }).tokenizer).toBeNull();
  });

  it('special token ids beyond the embedding', async () => {
    const config = { ...tinyConfig('qwen3'), vocab_size: 29 }; // <bos> = 28 fits, <eos> = 29 does not
    await writeTinyModel(dir, 'qwen3', { config });
    expectFileError(() => openModel(dir), path.join(dir, 'tokenizer.json'), /eos token id 29 is outside config\.json's vocab_size 29/);
  });
});
