// `run --dry-run`: what a pipeline would do, without running the model — the recipe's contexts
// and tokens (tokenized for real), the store's disk size, host memory, and a time estimate from
// measured rates (this machine's earlier run in the same folder, else BENCHMARKS.md's).
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { resolveModel } from '../hub/index.js';
import { openModel } from '../model/load.js';
import { balancedParts, openCorpus, runRecipe, resolveRecipeOptions, type RecipeOptions } from '../data/index.js';
import { resolveDatasetFile } from '../hub/index.js';
import { estimateStoreBytes, type AttnInputDtype } from '../features/index.js';
import { modelPrompts } from './prompts.js';
import { UserError } from '../util/errors.js';

/**
 * Reference rates (BENCHMARKS.md), scaled to other models by parameter count (extraction) or by
 * layers x D x G (training, whose cost is the gate projections).
 */
export const REFERENCE_RATES = {
  /** 2-core CPU VM, data/default-model: 104,290 tokens in 51.5 s; 4 layers x 5,000 steps in 58.5 s */
  cpu: { params: 4.2e6, extractTokPerS: 2025, trainSPer5000: 58.5, trainUnits: 4 * 256 * 2 },
  /** one H200, Qwen3-8B shape: 3,854 context tokens/s; 5,000 steps of 36 layers in 2.5 min */
  cuda: { params: 8.2e9, extractTokPerS: 3854, trainSPer5000: 150, trainUnits: 36 * 4096 * 4 },
} as const;

export interface PlanInput {
  model: string;
  revision?: string;
  template?: string;
  data: string;
  textField?: string;
  excludeDocs?: string[];
  recipe: Partial<RecipeOptions>;
  hiddenDtype?: AttnInputDtype;
  extractDevice: 'cpu' | 'cuda' | 'webgpu';
  trainDevice: 'cpu' | 'cuda' | 'webgpu';
  steps: number;
  batch: number;
  /** bytes one training group may hold */
  memoryBudget: number;
  /** the run's output folder: an earlier run.json there gives measured rates */
  out: string;
  /** extract workers (run --gpus/--workers): report the tokens of each part of the split */
  parts?: number;
}

export interface RunPlan {
  model: { id: string; params: number; layers: number; scoredLayers: number; D: number; H: number; G: number; dtype: string };
  contexts: number;
  tokens: number;
  largestContext: number;
  /** contexts already in <out>/features */
  alreadyExtracted: number;
  /** with parts: the tokens each part extracts (the split of extract --shard, balanced by tokens) */
  partTokens?: number[];
  disk: { storeBytes: number };
  memory: { extractHostBytes: number; trainBytes: number; trainGroups: number };
  time: { extractSeconds: number; trainSeconds: number; source: string };
}

/** Parameters of a decoder from its config (embeddings, attention, MLP). */
function paramCount(s: { hiddenSize: number; numLayers: number; numHeads: number; numKvHeads: number; headDim: number; intermediateSize: number; vocabSize: number }): number {
  const attn = 2 * s.hiddenSize * s.numHeads * s.headDim + 2 * s.hiddenSize * s.numKvHeads * s.headDim;
  return s.numLayers * (attn + 3 * s.hiddenSize * s.intermediateSize) + s.vocabSize * s.hiddenSize;
}

export async function planRun(o: PlanInput): Promise<RunPlan> {
  const resolved = await resolveModel(o.model, { revision: o.revision, weights: false });
  const model = openModel(resolved.dir, { requireTokenizer: true });
  const { spec, tokenizer } = model;
  if (!tokenizer) throw new UserError(`${resolved.dir}: tokenizer.json is required for extraction`);
  const { encode } = modelPrompts(tokenizer, spec, resolved.repoId ?? o.model, o.template);
  const recipe = resolveRecipeOptions(o.recipe);
  const corpus = openCorpus(o.data, { textField: o.textField, excludeIds: o.excludeDocs, resolveHubFile: async (repo: string, file: string) => (await resolveDatasetFile(repo, file, {})).path });
  let contexts = 0;
  let tokens = 0;
  let largest = 0;
  const sizes: { counted: number; tokens: number }[] = [];
  for await (const ctx of runRecipe(corpus, { encode }, recipe, {}).contexts) {
    contexts++;
    tokens += ctx.tokenIds.length;
    largest = Math.max(largest, ctx.tokenIds.length);
    sizes.push({ counted: ctx.countedTokens, tokens: ctx.tokenIds.length });
  }
  let partTokens: number[] | undefined;
  if (o.parts && o.parts > 1) {
    const part = balancedParts(sizes.map((c) => c.counted), o.parts);
    partTokens = Array.from({ length: o.parts }, (_, k) => sizes.reduce((a, c, i) => a + (part[i] === k ? c.tokens : 0), 0));
  }
  const hiddenDtype: AttnInputDtype = o.hiddenDtype ?? (spec.torchDtype === 'bfloat16' ? 'bfloat16' : 'float16');
  const L = spec.scoredLayers.length;
  const D = spec.hiddenSize;
  const H = spec.numKvHeads;
  const G = spec.numHeads / spec.numKvHeads;
  const perToken = L * (D * 2 + H * 4); // stored features + fp32 scores
  const params = paramCount(spec);

  let alreadyExtracted = 0;
  const manifest = path.join(o.out, 'features', 'manifest.json');
  if (existsSync(manifest)) {
    try {
      alreadyExtracted = (JSON.parse(readFileSync(manifest, 'utf8')).shards ?? []).length;
    } catch {
      // unreadable: extraction will say so
    }
  }

  // training holds each group's features twice (shards + their per-layer join), as train.ts sizes groups
  const perLayerTrain = 2 * tokens * (D * 2 + H * 4);
  const groupSize = Math.max(1, Math.min(L, Math.floor(o.memoryBudget / Math.max(1, perLayerTrain))));
  const trainGroups = Math.ceil(L / groupSize);

  const time = estimateTime(o, { params, tokens, units: L * D * G });
  return {
    model: { id: resolved.repoId ?? path.basename(resolved.dir), params, layers: spec.numLayers, scoredLayers: L, D, H, G, dtype: spec.torchDtype },
    contexts,
    tokens,
    largestContext: largest,
    alreadyExtracted,
    ...(partTokens ? { partTokens } : {}),
    disk: { storeBytes: estimateStoreBytes({ tokens, layers: L, D, H, hiddenDtype, contexts }) },
    memory: { extractHostBytes: largest * perToken, trainBytes: Math.min(o.memoryBudget, perLayerTrain * groupSize), trainGroups },
    time,
  };
}

function estimateTime(o: PlanInput, s: { params: number; tokens: number; units: number }): RunPlan['time'] {
  const previous = path.join(o.out, 'run.json');
  if (existsSync(previous)) {
    try {
      const r = JSON.parse(readFileSync(previous, 'utf8'));
      const tokPerS = r.extract?.tokensPerSecond;
      const trainS = r.train?.seconds;
      if (tokPerS > 0 && trainS > 0 && r.train?.steps > 0) {
        return {
          extractSeconds: s.tokens / tokPerS,
          trainSeconds: (trainS * o.steps * o.batch) / (r.train.steps * r.train.batch),
          source: `rates measured by the earlier run in ${previous}`,
        };
      }
    } catch {
      // fall through to the reference rates
    }
  }
  const ex = REFERENCE_RATES[o.extractDevice === 'cpu' ? 'cpu' : 'cuda'];
  const tr = REFERENCE_RATES[o.trainDevice === 'cpu' ? 'cpu' : 'cuda'];
  return {
    extractSeconds: s.tokens / (ex.extractTokPerS * (ex.params / s.params)),
    trainSeconds: tr.trainSPer5000 * (s.units / tr.trainUnits) * (o.steps / 5000) * (o.batch / 1000),
    source: `BENCHMARKS.md rates (${o.extractDevice === 'cpu' ? '2-core CPU' : 'one H200'} extraction, ${o.trainDevice === 'cpu' ? '2-core CPU' : 'one H200'} training) scaled to this model; rough`,
  };
}
