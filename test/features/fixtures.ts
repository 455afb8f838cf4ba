// Small synthetic feature stores for the feature-store tests.
import { mkdtemp, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { openStore, type FeatureStore, type StoreInit } from '../../src/features/store.js';
import type { AttnInputDtype } from '../../src/features/types.js';

export const D = 16;
export const H = 2;
export const LAYERS = [0, 2, 3];

export interface ContextSpec {
  id: string;
  index: number;
  set: string;
  tokens: number;
}

export const CONTEXTS: ContextSpec[] = [
  { id: 'c0000-10k', index: 0, set: '10k', tokens: 5 },
  { id: 'c0001-10k', index: 1, set: '10k', tokens: 7 },
  { id: 'c0002-10k-cat', index: 2, set: '10k-cat', tokens: 11 },
];

export async function tempDir(prefix = 'fkz-features-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export function identity(hiddenDtype: AttnInputDtype = 'bfloat16', over: { commit?: string; chunk?: number } = {}): StoreInit {
  return {
    tool: { name: 'fastkvzip', version: '0.1.0' },
    model: {
      id: 'Qwen/Qwen3-Tiny',
      revision: 'main',
      commit: over.commit ?? 'a'.repeat(40),
      configHash: 'b'.repeat(64),
      family: 'qwen3',
      D,
      H,
      G: 2,
      scoredLayers: LAYERS,
      numLayers: 4,
    },
    recipe: {
      dataset: 'HuggingFaceFW/fineweb-edu',
      file: 'sample/10BT/000_00000.parquet',
      minTokens: 10000,
      maxTokens: 30000,
      sets: [
        { name: '10k', count: 29 },
        { name: '10k-cat', count: 5, minTokens: 100000, joiner: '\n\n' },
      ],
      repeatPrompt: '\n\nRepeat the previous context exactly.',
    },
    extract: {
      prefillChunk: 16000,
      scoreChunk: over.chunk ?? 2000,
      device: 'cpu',
      modelDtype: 'bfloat16',
      hiddenDtype,
      scoreDtype: 'float32',
    },
    hiddenDtype,
  };
}

/** Deterministic content: every (context, layer) gets distinct bits and scores. */
export function layerData(ctx: ContextSpec, layer: number): { hidden: Uint16Array; scoresHT: Float32Array } {
  const T = ctx.tokens;
  let s = (ctx.index + 1) * 7919 + layer * 104729;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
  const hidden = new Uint16Array(T * D);
  for (let i = 0; i < hidden.length; i++) hidden[i] = next() & 0xffff;
  const scoresHT = new Float32Array(H * T);
  for (let i = 0; i < scoresHT.length; i++) scoresHT[i] = (next() % 1000) / 1000;
  return { hidden, scoresHT };
}

/** [H, T] -> [T, H] */
export function transpose(scoresHT: Float32Array, T: number): Float32Array {
  const out = new Float32Array(T * H);
  for (let h = 0; h < H; h++) for (let t = 0; t < T; t++) out[t * H + h] = scoresHT[h * T + t]!;
  return out;
}

export async function writeContext(store: FeatureStore, ctx: ContextSpec): Promise<void> {
  const w = await store.openShard(ctx.id);
  for (const layer of store.manifest.model.scoredLayers) {
    const { hidden, scoresHT } = layerData(ctx, layer);
    await w.writeLayer(layer, hidden, scoresHT);
  }
  const info = await w.close();
  await store.addShard(info, { index: ctx.index, set: ctx.set, docIds: [`doc-${ctx.index}`] });
}

/** A finished store holding `contexts`. */
export async function writeStore(dir: string, hiddenDtype: AttnInputDtype = 'bfloat16', contexts = CONTEXTS, init?: StoreInit): Promise<void> {
  const store = await openStore(dir, init ?? identity(hiddenDtype));
  for (const ctx of contexts) await writeContext(store, ctx);
  await store.finish();
}
