// Open a local model folder and check, before any heavy work starts, that it holds everything
// the architecture needs: config.json, safetensors weights with the right names and shapes, and
// (unless told otherwise) a tokenizer. Every problem is one line naming the file.
import { existsSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { fileError } from '../util/errors.js';
import { loadModelConfig, type ModelSpec } from './config.js';
import { applyRopeOverride, type RopeOverride } from './rope-override.js';
import { expectedWeights } from './expected-weights.js';
import { openSafetensors, type SafetensorsIndex } from './safetensors/index.js';
import { loadTokenizer, type Tokenizer } from './tokenizer.js';

export interface OpenedModel {
  dir: string;
  spec: ModelSpec;
  weights: SafetensorsIndex;
  tokenizer: Tokenizer | null;
  /** the RoPE the model runs with instead of its config's (null: its own) */
  ropeOverride: RopeOverride | null;
}

export interface OpenModelOptions {
  /** run the model with this RoPE instead of its config's (applied to `spec`) */
  ropeOverride?: RopeOverride | null;
  /** fail when tokenizer.json is missing (default true); when false, a present one is still loaded */
  requireTokenizer?: boolean;
}

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16']);

/**
 * Where the decoder's weights live differs between checkpoints of one family: Gemma-3 multimodal
 * files saved by older transformers use "language_model.model.", newer ones "model.language_model.".
 * Trust the file over the config's guess.
 */
function detectWeightPrefix(spec: ModelSpec, weights: SafetensorsIndex): string {
  const candidates = [spec.weightPrefix, 'model.', 'language_model.model.', 'model.language_model.'];
  return candidates.find((p) => weights.has(`${p}embed_tokens.weight`)) ?? spec.weightPrefix;
}

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

export function openModel(dir: string, opts: OpenModelOptions = {}): OpenedModel {
  const abs = path.resolve(dir);
  if (!existsSync(abs)) throw fileError(abs, 'missing (not a model folder)');
  if (!statSync(abs).isDirectory()) throw fileError(abs, 'not a folder (a model folder holds config.json, tokenizer.json and *.safetensors)');

  const ropeOverride = opts.ropeOverride ?? null;
  let spec = applyRopeOverride(loadModelConfig(abs), ropeOverride);
  const weights = openSafetensors(abs);
  const prefix = detectWeightPrefix(spec, weights);
  if (prefix !== spec.weightPrefix) spec = { ...spec, weightPrefix: prefix };

  const missing: string[] = [];
  for (const want of expectedWeights(spec)) {
    if (!weights.has(want.name)) {
      missing.push(want.name);
      continue;
    }
    const got = weights.info(want.name);
    if (got.shape.length !== want.shape.length || got.shape.some((d, i) => d !== want.shape[i])) {
      throw fileError(got.file, `tensor "${want.name}" has shape ${fmt(got.shape)} but config.json implies ${fmt(want.shape)}`);
    }
    if (!FLOAT_DTYPES.has(got.dtype)) {
      throw fileError(got.file, `tensor "${want.name}" is ${got.dtype}; only F32/F16/BF16 weights are supported (no quantized checkpoints)`);
    }
  }
  if (missing.length > 0) {
    const more = missing.length > 1 ? ` (and ${missing.length - 1} more)` : '';
    throw fileError(weights.source, `missing tensor "${missing[0]}"${more} needed by ${spec.architecture || spec.modelType} per config.json`);
  }

  const requireTokenizer = opts.requireTokenizer ?? true;
  const hasTokenizer = existsSync(path.join(abs, 'tokenizer.json'));
  const tokenizer = requireTokenizer || hasTokenizer ? loadTokenizer(abs) : null;
  // Only the special ids are checked against the embedding: some tokenizers carry a few ids past
  // config.json's vocab_size that text never produces (Gemma-3-1B: <image_soft_token> = 262144).
  for (const [what, id] of [['bos', tokenizer?.bosTokenId], ['eos', tokenizer?.eosTokenId], ['pad', tokenizer?.padTokenId]] as const) {
    if (tokenizer && typeof id === 'number' && id >= spec.vocabSize) {
      throw fileError(tokenizer.file, `${what} token id ${id} is outside config.json's vocab_size ${spec.vocabSize}`);
    }
  }
  return { dir: abs, spec, weights, tokenizer, ropeOverride };
}
