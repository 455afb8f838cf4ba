// File naming, the exportGates entry point, and the README model card.
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { exportGates } from '../../src/export/index.js';
import { gateFileName, gateFolderName, gateRelativePath } from '../../src/export/naming.js';
import { renderModelCard, type CardSummary } from '../../src/export/model-card.js';
import { readGatePt } from '../../src/export/read-gate-pt.js';
import { makeGateSet, tempDir } from './helpers.js';

const { dir, cleanup } = tempDir('card');
afterAll(cleanup);

describe('gate file naming', () => {
  it('follows the public layout', () => {
    expect(gateFileName({ G: 4, r: 16, S: 16 })).toBe('q4_dim16_sink16.pt');
    expect(gateFileName({ G: 7, r: 8, S: 0 }, 'safetensors')).toBe('q7_dim8_sink0.safetensors');
    expect(gateFolderName('Qwen/Qwen3-8B')).toBe('qwen3-8b');
    expect(gateFolderName('Qwen/Qwen2.5-7B-Instruct-1M')).toBe('qwen2.5-7b-instruct-1m');
    expect(gateFolderName('/models/Llama-3.1-8B-Instruct/')).toBe('llama-3.1-8b-instruct');
    expect(gateFolderName('gemma-3-12b-it')).toBe('gemma-3-12b-it');
    expect(gateRelativePath('Qwen/Qwen3-8B', { G: 4, r: 16, S: 16 })).toBe('qwen3-8b/q4_dim16_sink16.pt');
    expect(() => gateFolderName('/')).toThrow(/cannot name a gate folder/);
  });
});

const summary: CardSummary = {
  device: 'cuda (NVIDIA H200)',
  steps: 5000,
  batch: 1000,
  lr: 0.2,
  seed: 0,
  seconds: 701.4,
  tokens: { total: 1_000_000, train: 990_000, test: 10_000 },
  layers: [
    { layer: 5, testLoss: 0.12345, testAcc: 0.9123, trainLoss: 0.11, trainAcc: 0.92, recall30: 0.8512 },
    { layer: 11, testLoss: 0.2, testAcc: 0.8, trainLoss: 0.19, trainAcc: 0.81, recall30: 0.75 },
  ],
  options: { momentum: 0.9, evalEvery: 50, maxTokens: null },
};

describe('model card', () => {
  const gates = makeGateSet({ D: 16, H: 2, G: 2, r: 4, S: 3, layers: [5, 11], modelDtype: 'bfloat16', seed: 41 });
  gates.meta = { model_id: 'google/gemma-3-1b-it', revision: 'main', commit: '0123abcd', recipe: JSON.stringify({ dataset: 'HuggingFaceFW/fineweb-edu', contexts10k: 29, contextsCat: 5 }) };

  it('states the setup, the per-layer results and how to load, from the inputs only', () => {
    const card = renderModelCard(gates, summary, { repoId: 'me/gates' });
    expect(card.startsWith('---\nbase_model: google/gemma-3-1b-it\nlicense: other\n')).toBe(true);
    expect(card).toContain('| model revision | `0123abcd` |');
    expect(card).toContain('| steps | 5000 |');
    expect(card).toContain('| learning rate | 0.2 |');
    expect(card).toContain('| momentum | 0.9 |');
    expect(card).not.toContain('maxTokens');
    expect(card).toContain('| training time | 11.7 min |');
    expect(card).toContain('| device | cuda (NVIDIA H200) |');
    expect(card).toContain('| context tokens (train / held-out) | 1000000 (990000 / 10000) |');
    expect(card).toContain('- dataset: `HuggingFaceFW/fineweb-edu`');
    expect(card).toContain('| gate | model layer | loss | accuracy | train loss | train accuracy | recall@30% |');
    expect(card).toContain('| 0 | 5 | 0.1235 | 91.2 % | 0.1100 | 92.0 % | 85.1 % |');
    expect(card).toContain('| mean |  | 0.1617 | 85.6 % | 0.1500 | 86.5 % | 80.1 % |');
    expect(card).toContain('hf_hub_download("me/gates", "gemma-3-1b-it/q2_dim4_sink3.pt")');
    expect(card).toContain('from kvpress.presses.fastkvzip_press import Weight');
    expect(card).toContain('press.gates = gates');
    expect(card).toContain('pipeline("kv-press-text-generation", model="google/gemma-3-1b-it"');
    expect(card).toContain('Weight(index=i, input_dim=16, output_dim=4, nhead=2, ngroup=2, dtype=sd["q_proj.weight"].dtype, sink=3)');
    expect(card).toContain('model layers [5,11]');
    expect(card).toContain('gates[layer_idx]');
    expect(renderModelCard(gates, summary, { repoId: 'me/gates' })).toBe(card);
  });

  it('falls back to the last evaluation in the gate set and describes safetensors loading', () => {
    const card = renderModelCard(gates, undefined, { format: 'safetensors' });
    const last = gates.metrics!;
    expect(card).toContain(`| 1 | 11 | ${last.loss[2]![1]!.toFixed(4)} | ${(100 * last.acc[2]![1]!).toFixed(1)} % |`);
    expect(card).not.toContain('recall@30%');
    expect(card).toContain('safe_open(path, framework="pt")');
    expect(card).toContain('"gemma-3-1b-it/q2_dim4_sink3.safetensors"');
    const bare = makeGateSet({ D: 4, H: 1, G: 1, r: 2, S: 1, layers: [0], modelDtype: 'float32', metrics: false });
    expect(renderModelCard(bare, undefined, { modelId: 'a/B' })).toContain('No evaluation results were recorded.');
  });

  it('keeps multi-line and pipe-holding values on one markdown line, and shows sizes and the license', () => {
    const g = makeGateSet({ D: 16, H: 2, G: 2, r: 4, S: 3, layers: [0, 1], modelDtype: 'bfloat16', seed: 2 });
    g.meta = { model_id: 'default-model', commit: '', recipe: JSON.stringify({ prefix: 'You are\nhelpful | kind `x`', maxTokens: 100 }) };
    const card = renderModelCard(g, { ...summary, options: { memoryBudget: 8 * 2 ** 30, note: 'a|b\nc' } }, { license: 'apache-2.0' });
    expect(card).toContain('- prefix: `` "You are\\nhelpful | kind `x`" ``');
    expect(card).toContain('- maxTokens: 100');
    expect(card).toContain('| memoryBudget | 8 GiB |');
    expect(card).toContain('| note | `"a\\|b\\nc"` |');
    expect(card).toContain('\nlicense: apache-2.0\n');
    expect(card).not.toContain('base_model:'); // a local folder is no hub model
    expect(card).toContain('# Fast KVzip gates for default-model');
    expect(card).toContain('model="path/to/default-model"');
    // every table row still has the header's cell count
    for (const line of card.split('\n').filter((l) => l.startsWith('| memoryBudget') || l.startsWith('| note'))) expect(line.replace(/\\\|/g, '').split('|')).toHaveLength(4);
  });

  it('describes every format in the folder, the ONNX one with an onnxruntime snippet and no .pt talk', () => {
    const onnxOnly = renderModelCard(gates, summary, { formats: ['onnx'], repoId: 'me/gates' });
    expect(onnxOnly).toContain('library_name: onnx');
    expect(onnxOnly).toContain('`gemma-3-1b-it/q2_dim4_sink3.onnx` (+ `gemma-3-1b-it/q2_dim4_sink3.onnx.data`)');
    expect(onnxOnly).toContain('session = ort.InferenceSession(hf_hub_download("me/gates", "gemma-3-1b-it/q2_dim4_sink3.onnx"))');
    expect(onnxOnly).not.toContain('torch.load');
    expect(onnxOnly).not.toContain('Rounding the projections');
    const all = renderModelCard(gates, summary, { formats: ['pt', 'safetensors', 'onnx'], precisionGap: { dtype: 'bfloat16', tokens: 512, maxAbs: 2.8e-4, meanAbs: 1.1e-5, top30Agreement: 0.999 } });
    for (const h of ['### PyTorch', '### safetensors', '### ONNX']) expect(all).toContain(h);
    expect(all).toContain('at most 2.8e-4 (mean 1.1e-5), and 99.9 %');
    expect(renderModelCard(gates, summary, { formats: ['pt'] })).toContain('was not measured for this export');
  });
});

describe('publicModelId', () => {
  it('keeps hub ids and turns local folders into their names', async () => {
    const { publicModelId } = await import('../../src/export/naming.js');
    expect(publicModelId('Qwen/Qwen3-8B', '0123abcd')).toBe('Qwen/Qwen3-8B');
    expect(publicModelId('/work/x/data/default-model', '')).toBe('default-model');
    expect(publicModelId('models/stories260K/', undefined)).toBe('stories260K');
  });
});

describe('exportGates', () => {
  it('writes <outDir>/<model>/q{G}_dim{r}_sink{S}.<format> and the card', async () => {
    const gates = makeGateSet({ D: 8, H: 2, G: 4, r: 2, S: 2, layers: [0, 1], modelDtype: 'bfloat16', seed: 42 });
    gates.meta = { model_id: 'Qwen/Qwen3-8B' };
    const out = path.join(dir, 'repo');
    const pt = await exportGates(gates, { outDir: out, format: 'pt', card: true, summary });
    expect(pt.relativePath).toBe('qwen3-8b/q4_dim2_sink2.pt');
    expect(pt.file).toBe(path.join(out, 'qwen3-8b', 'q4_dim2_sink2.pt'));
    expect((await readGatePt(pt.file)).G).toBe(4);
    expect(readFileSync(pt.card!, 'utf8')).toContain('# Fast KVzip gates for Qwen/Qwen3-8B');
    const st = await exportGates(gates, { outDir: out, format: 'safetensors' });
    expect(existsSync(st.file)).toBe(true);
    expect(st.card).toBeUndefined();
    await expect(exportGates({ ...gates, meta: {} }, { outDir: out, format: 'pt' })).rejects.toThrow(/model id is unknown/);
  });
});
