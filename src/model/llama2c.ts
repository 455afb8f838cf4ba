// `fastkvzip convert-llama2c`: a llama2.c checkpoint + tokenizer -> a Hugging Face Llama folder
// (config.json, model.safetensors, tokenizer.json, tokenizer_config.json) that openModel loads.
// The folder is built beside the target and renamed into place, so a failed run leaves nothing.
import { existsSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../util/errors.js';
import { writeJsonAtomic } from '../util/atomic.js';
import { writeSafetensors } from './safetensors/index.js';
import { llama2cTensors, readLlama2cHeader, type Llama2cHeader } from './llama2c-checkpoint.js';
import { llama2cToHfTokenizer, readLlama2cTokenizer } from './llama2c-tokenizer.js';

export { readLlama2cHeader, rotaryRowOrder, type Llama2cHeader } from './llama2c-checkpoint.js';
export { readLlama2cTokenizer, llama2cToHfTokenizer, type Llama2cVocab } from './llama2c-tokenizer.js';

export interface ConvertLlama2cResult {
  config: Record<string, unknown>;
  /** number of tensors written to model.safetensors */
  tensors: number;
  vocab: number;
}

/** The files a conversion writes; an existing output folder holding only these may be replaced. */
const OUTPUT_FILES = new Set(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);

/** run.c's fixed numbers: rmsnorm eps 1e-5, RoPE base 10000, BOS 1, EOS 2. */
export function llama2cHfConfig(h: Llama2cHeader): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: h.dim,
    intermediate_size: h.hiddenDim,
    num_hidden_layers: h.nLayers,
    num_attention_heads: h.nHeads,
    num_key_value_heads: h.nKvHeads,
    head_dim: h.headDim,
    vocab_size: h.vocabSize,
    max_position_embeddings: h.seqLen,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    rope_scaling: null,
    hidden_act: 'silu',
    attention_bias: false,
    attention_dropout: 0,
    mlp_bias: false,
    tie_word_embeddings: h.sharedClassifier,
    torch_dtype: 'float32',
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: null,
    initializer_range: 0.02,
    pretraining_tp: 1,
    use_cache: true,
  };
}

function checkOutDir(outDir: string): void {
  if (!existsSync(outDir)) return;
  if (!statSync(outDir).isDirectory()) throw new UserError(`${outDir}: exists and is not a folder`);
  const foreign = readdirSync(outDir).filter((f) => !OUTPUT_FILES.has(f));
  if (foreign.length > 0) {
    throw new UserError(`${outDir}: exists and holds other files (${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', …' : ''}); choose a new or empty folder`);
  }
}

/** Convert `modelBin` (legacy llama2.c export) and `tokenizerBin` into an HF Llama folder at `outDir`. */
export async function convertLlama2c(modelBin: string, tokenizerBin: string, outDir: string): Promise<ConvertLlama2cResult> {
  const out = path.resolve(outDir);
  const header = readLlama2cHeader(path.resolve(modelBin));
  const vocab = readLlama2cTokenizer(path.resolve(tokenizerBin), header.vocabSize);
  const { tokenizerJson, tokenizerConfig } = llama2cToHfTokenizer(vocab, path.resolve(tokenizerBin), header.seqLen);
  const config = llama2cHfConfig(header);
  checkOutDir(out);

  const stamp = `${process.pid}-${Date.now()}`;
  const tmp = path.join(path.dirname(out), `.${path.basename(out)}.tmp-${stamp}`);
  const weights = llama2cTensors(path.resolve(modelBin), header);
  try {
    await writeSafetensors(path.join(tmp, 'model.safetensors'), weights.tensors, { format: 'pt' });
    await writeJsonAtomic(path.join(tmp, 'config.json'), config);
    await writeJsonAtomic(path.join(tmp, 'tokenizer.json'), tokenizerJson);
    await writeJsonAtomic(path.join(tmp, 'tokenizer_config.json'), tokenizerConfig);
    if (existsSync(out)) {
      // Swap a previous conversion out, then drop it: readers never see a half-written folder.
      const old = path.join(path.dirname(out), `.${path.basename(out)}.old-${stamp}`);
      renameSync(out, old);
      renameSync(tmp, out);
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(tmp, out);
    }
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  } finally {
    weights.close();
  }
  return { config, tensors: weights.tensors.length, vocab: header.vocabSize };
}
