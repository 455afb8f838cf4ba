// The Hugging Face tensor names and shapes a ModelSpec's architecture needs (weights are
// stored [out_features, in_features], as torch.nn.Linear keeps them).
import type { ModelSpec } from './config.js';

export interface ExpectedWeight {
  name: string;
  shape: number[];
}

/** lm_head sits beside the decoder: "model." -> "lm_head.weight", "language_model.model." -> "language_model.lm_head.weight". */
export function lmHeadName(weightPrefix: string): string {
  if (weightPrefix === 'model.language_model.') return 'lm_head.weight';
  return `${weightPrefix.replace(/(^|\.)model\.$/, '$1')}lm_head.weight`;
}

export function expectedWeights(spec: ModelSpec): ExpectedWeight[] {
  const p = spec.weightPrefix;
  const D = spec.hiddenSize;
  const q = spec.numHeads * spec.headDim;
  const kv = spec.numKvHeads * spec.headDim;
  const I = spec.intermediateSize;
  const out: ExpectedWeight[] = [{ name: `${p}embed_tokens.weight`, shape: [spec.vocabSize, D] }];
  for (let i = 0; i < spec.numLayers; i++) {
    const l = `${p}layers.${i}.`;
    const add = (name: string, ...shape: number[]) => out.push({ name: l + name, shape });
    add('input_layernorm.weight', D);
    add('self_attn.q_proj.weight', q, D);
    add('self_attn.k_proj.weight', kv, D);
    add('self_attn.v_proj.weight', kv, D);
    add('self_attn.o_proj.weight', D, q);
    if (spec.qkvBias) {
      add('self_attn.q_proj.bias', q);
      add('self_attn.k_proj.bias', kv);
      add('self_attn.v_proj.bias', kv);
    }
    if (spec.oBias) add('self_attn.o_proj.bias', D);
    if (spec.qkNorm) {
      add('self_attn.q_norm.weight', spec.headDim);
      add('self_attn.k_norm.weight', spec.headDim);
    }
    add('post_attention_layernorm.weight', D);
    if (spec.sandwichNorms) {
      add('pre_feedforward_layernorm.weight', D);
      add('post_feedforward_layernorm.weight', D);
    }
    add('mlp.gate_proj.weight', I, D);
    add('mlp.up_proj.weight', I, D);
    add('mlp.down_proj.weight', D, I);
    if (spec.mlpBias) {
      add('mlp.gate_proj.bias', I);
      add('mlp.up_proj.bias', I);
      add('mlp.down_proj.bias', D);
    }
  }
  out.push({ name: `${p}norm.weight`, shape: [D] });
  if (!spec.tieWordEmbeddings) out.push({ name: lmHeadName(p), shape: [spec.vocabSize, D] });
  return out;
}
