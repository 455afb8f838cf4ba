import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadTemplateConfig, reconstructionPrompts, templateFor } from '../../src/data/templates.js';
import { UserError } from '../../src/util/errors.js';
import { lenmlModelsDir, lenmlTokenizer, tempDir } from './helpers.js';

const INSTRUCTION = 'Given the context, answer to the following question or request without explanation.\n\n';

function lenmlFile(name: 'qwen3' | 'llama3' | 'gemma3', file: string): any {
  return JSON.parse(readFileSync(path.join(lenmlModelsDir(name), file), 'utf8'));
}

function addedTokens(name: 'llama3' | 'gemma3'): Map<string, number> {
  const json = lenmlFile(name, 'tokenizer.json');
  return new Map((json.added_tokens as { content: string; id: number; special: boolean }[]).filter((t) => t.special).map((t) => [t.content, t.id]));
}

describe('chat templates', () => {
  it('Qwen3 prefix and postfix tokenize into the real special tokens', () => {
    const tok = lenmlTokenizer('qwen3');
    const t = templateFor('qwen3');
    expect(t.name).toBe('qwen3');
    const prefix = tok.encode(t.prefix);
    expect(prefix[0]).toBe(151644); // <|im_start|>
    expect(prefix.filter((id) => id === 151644)).toHaveLength(2);
    expect(prefix.filter((id) => id === 151645)).toHaveLength(1); // <|im_end|> closes the system turn
    expect(prefix.slice(0, 3)).toEqual([151644, tok.encode('system')[0], tok.encode('\n')[0]]);
    expect(tok.decode(prefix)).toBe(t.prefix);
    // <|im_end|> \n <|im_start|> assistant \n <think> \n\n </think> \n\n
    expect(tok.encode(t.postfix)).toEqual([151645, 198, 151644, 77091, 198, 151667, 271, 151668, 271]);
  });

  it('matches what the models\' own chat templates render (system + user turn + generation prompt)', () => {
    const question = 'Some context.\n\nRepeat the previous context exactly.';
    const qwenChat = lenmlFile('qwen3', 'tokenizer_config.json').chat_template as string;
    expect(qwenChat).toContain("'<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n'");
    expect(qwenChat).toContain("{{- '<think>\\n\\n</think>\\n\\n' }}");
    const qwen3 = templateFor('qwen3');
    expect(qwen3.prefix + question + qwen3.postfix).toBe(
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' +
        `<|im_start|>user\n${INSTRUCTION}${question}<|im_end|>\n` +
        '<|im_start|>assistant\n<think>\n\n</think>\n\n',
    );

    const llamaChat = lenmlFile('llama3', 'tokenizer_config.json').chat_template as string;
    expect(llamaChat).toContain("'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>'");
    expect(llamaChat).toContain("'<|start_header_id|>assistant<|end_header_id|>\n\n'");
    const header = (role: string) => `<|start_header_id|>${role}<|end_header_id|>\n\n`;
    const llama = templateFor('llama3');
    expect(llama.prefix + question + llama.postfix).toBe(
      '<|begin_of_text|>' + header('system') + 'You are a helpful assistant.<|eot_id|>' +
        header('user') + `${INSTRUCTION}${question}`.trim() + '<|eot_id|>' + header('assistant'),
    );

    const gemmaChat = lenmlFile('gemma3', 'tokenizer_config.json').chat_template as string;
    expect(gemmaChat).toContain("'<start_of_turn>' + role + '\n'");
    expect(gemmaChat).toContain("'<start_of_turn>model\n'");
    const gemma = templateFor('gemma3');
    expect(gemma.prefix + question + gemma.postfix).toBe(
      `<bos><start_of_turn>user\n${INSTRUCTION}${question}<end_of_turn>\n<start_of_turn>model\n`,
    );
  });

  it('uses only special tokens the Llama-3 and Gemma-3 tokenizers define', () => {
    const llama = addedTokens('llama3');
    expect(['<|begin_of_text|>', '<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>'].map((t) => llama.get(t))).toEqual([
      128000, 128006, 128007, 128009,
    ]);
    const gemma = addedTokens('gemma3');
    expect(['<bos>', '<start_of_turn>', '<end_of_turn>'].map((t) => gemma.get(t))).toEqual([2, 105, 106]);
    const config = loadTemplateConfig();
    for (const name of ['llama3', 'llama3-public']) {
      for (const token of config.templates[name].requiredTokens!) expect(llama.has(token)).toBe(true);
    }
    for (const token of config.templates.gemma3.requiredTokens!) expect(gemma.has(token)).toBe(true);
  });

  it('keeps the public code\'s exact strings as explicit variants', () => {
    expect(templateFor('llama3-public').postfix).toBe('\n\n<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n');
    expect(templateFor('llama3-public').prefix).toContain('You are a helpful assistant<|eot_id|>');
    expect(templateFor('gemma3-public').prefix).toBe(`<bos><start_of_turn>user\nYou are a helpful assistant.\n\n${INSTRUCTION}`);
    expect(templateFor('qwen').postfix).toBe('<|im_end|>\n<|im_start|>assistant\n');
  });

  it('picks a template from model type, family or model name, else the fallback', () => {
    const pick = (q: Parameters<typeof templateFor>[0]) => templateFor(q).name;
    expect(pick('qwen3')).toBe('qwen3');
    expect(pick({ modelType: 'qwen3_moe' })).toBe('qwen3');
    expect(pick({ modelType: 'qwen2' })).toBe('qwen');
    expect(pick({ modelName: 'Qwen/Qwen2.5-7B-Instruct-1M' })).toBe('qwen');
    expect(pick({ modelType: 'qwen3', modelName: 'Qwen/Qwen3-4B-Instruct-2507' })).toBe('qwen');
    expect(pick({ modelType: 'qwen3', modelName: 'Qwen/Qwen3-8B' })).toBe('qwen3');
    expect(pick('llama')).toBe('llama3');
    expect(pick({ modelName: 'meta-llama/Llama-3.1-8B-Instruct' })).toBe('llama3');
    expect(pick({ modelType: 'gemma3_text' })).toBe('gemma3');
    expect(pick('mistral')).toBe('fallback');
    expect(pick({ template: 'gemma3-public', modelType: 'qwen3' })).toBe('gemma3-public');
    expect(() => templateFor({ template: 'nope' })).toThrow(UserError);
  });

  it('passes over a template whose special tokens the tokenizer lacks', () => {
    const vocab = new Set(['<s>', '</s>']);
    const t = templateFor({ modelType: 'llama', modelName: 'TinyLlama/TinyLlama-1.1B' }, { hasToken: (x) => vocab.has(x), bosToken: '<s>' });
    expect(t).toEqual({ name: 'fallback', prefix: `<s>${INSTRUCTION}`, postfix: '\n\nAnswer: ' });
    expect(templateFor('fallback').prefix).toBe(INSTRUCTION); // no BOS token given
  });

  it('holds the reconstruction prompts of docs/method.md §1.2', () => {
    expect(reconstructionPrompts()).toEqual({
      repeatFirst: '\n\nRepeat the previous context exactly.',
      repeatNext: '\n\nRepeat the part of the previous context exactly, starting with ',
      prevPostfixTokens: 8,
    });
  });

  it('reads another templates file and rejects a broken one with its name', () => {
    const { dir, cleanup } = tempDir();
    try {
      const good = JSON.parse(readFileSync(loadTemplateConfig().source, 'utf8'));
      good.instruction = 'Other.\n';
      const goodFile = path.join(dir, 'good.json');
      writeFileSync(goodFile, JSON.stringify(good));
      const config = loadTemplateConfig(goodFile);
      expect(templateFor('qwen', { config }).prefix.endsWith('<|im_start|>user\nOther.\n')).toBe(true);
      const badFile = path.join(dir, 'bad.json');
      writeFileSync(badFile, JSON.stringify({ ...good, fallback: 'missing' }));
      expect(() => loadTemplateConfig(badFile)).toThrow(/bad\.json: "fallback" must name a template/);
    } finally {
      cleanup();
    }
  });
});
