// The chat template and reconstruction prompts of a model, tokenized the way the public code
// does it (each piece on its own, no special tokens added): shared by extract and eval.
import { templateFor, reconstructionPrompts, type ChatTemplate, type ReconstructionPrompts } from '../data/index.js';
import type { Tokenizer } from '../model/tokenizer.js';
import type { ModelSpec } from '../model/config.js';
import type { KvzipPrompts } from './inputs.js';

export interface ModelPrompts {
  template: ChatTemplate;
  reconstruction: ReconstructionPrompts;
  ids: KvzipPrompts;
  encode: (text: string) => number[];
}

/** `templateName` picks a template from configs/templates.json; otherwise it is chosen from the model. */
export function modelPrompts(tokenizer: Tokenizer, spec: ModelSpec, modelId: string, templateName?: string): ModelPrompts {
  const encode = (text: string) => tokenizer.encode(text, { addSpecialTokens: false });
  const template = templateFor(templateName ? { template: templateName } : { modelType: spec.modelType, modelName: modelId }, {
    bosToken: tokenizer.bosTokenId !== null ? (tokenizer.tokenString(tokenizer.bosTokenId) ?? '') : '',
    hasToken: (t) => tokenizer.tokenId(t) !== undefined,
  });
  const reconstruction = reconstructionPrompts();
  return {
    template,
    reconstruction,
    encode,
    ids: {
      prefixIds: encode(template.prefix),
      postfixIds: encode(template.postfix),
      repeatFirstIds: encode(reconstruction.repeatFirst),
      repeatNextIds: encode(reconstruction.repeatNext),
      prevPostfixTokens: reconstruction.prevPostfixTokens,
    },
  };
}
