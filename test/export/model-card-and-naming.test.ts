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
    expect(card.startsWith('---\nbase_model: google/gemma-3-1b-it\n')).toBe(true);
    expect(card).toContain('| model revision | `0123abcd` |');
    expect(card).toContain('| steps | 5000 |');
    expect(card).toContain('| learning rate | 0.2 |');
    expect(card).toContain('| momentum | 0.9 |');
    expect(card).not.toContain('maxTokens');
    expect(card).toContain('| training time | 11.7 min |');
    expect(card).toContain('| device | cuda (NVIDIA H200) |');
    expect(card).toContain('| context tokens (train / held-out) | 1000000 (990000 / 10000) |');
    expect(card).toContain('- dataset: HuggingFaceFW/fineweb-edu');
    expect(card).toContain('| gate | model layer | loss | accuracy | train loss | train accuracy | recall@30% |');
    expect(card).toContain('| 0 | 5 | 0.1235 | 91.2 % | 0.1100 | 92.0 % | 85.1 % |');
    expect(card).toContain('| mean |  | 0.1617 | 85.6 % | 0.1500 | 86.5 % | 80.1 % |');
    expect(card).toContain('hf_hub_download("me/gates", "gemma-3-1b-it/q2_dim4_sink3.pt")');
    expect(card).toContain('Gate(index=i, input_dim=16, output_dim=4, nhead=2, ngroup=2, dtype=sd["q_proj.weight"].dtype, sink=3)');
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
