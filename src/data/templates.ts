// Chat templates (docs/method.md §1.4) and reconstruction prompts (docs/method.md §1.2), read from
// configs/templates.json: strings live in config, code only picks and fills them.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { UserError, fileError } from '../util/errors.js';

export interface ChatTemplate {
  /** key of the entry in the config */
  name: string;
  /** chat header + instruction line; prepended to every context, never evicted */
  prefix: string;
  /** closes a query turn and opens the answer */
  postfix: string;
}

export interface ReconstructionPrompts {
  /** before chunk 0 */
  repeatFirst: string;
  /** before chunk i > 0, followed by the last prevPostfixTokens tokens of chunk i-1 */
  repeatNext: string;
  prevPostfixTokens: number;
}

export interface TemplateEntry {
  description?: string;
  prefix: string;
  postfix: string;
  /** special tokens a tokenizer must know for a match rule to choose this template */
  requiredTokens?: string[];
}

export interface TemplateMatchRule {
  /** case-insensitive regular expression tested on the model name / id */
  namePattern?: string;
  /** HF config model_type values (or our model families) */
  modelTypes?: string[];
  template: string;
}

export interface TemplateConfig {
  /** the file it came from */
  source: string;
  instruction: string;
  reconstruction: ReconstructionPrompts;
  templates: Record<string, TemplateEntry>;
  match: TemplateMatchRule[];
  fallback: string;
}

/** configs/templates.json of this checkout (same relative place from src/ and dist/). */
export const DEFAULT_TEMPLATES_FILE = fileURLToPath(new URL('../../configs/templates.json', import.meta.url));

const cache = new Map<string, TemplateConfig>();

function isString(value: unknown): value is string {
  return typeof value === 'string';
}

function checkConfig(file: string, raw: unknown): TemplateConfig {
  const bad = (problem: string) => fileError(file, problem);
  if (raw === null || typeof raw !== 'object') throw bad('expected a JSON object');
  const c = raw as Record<string, unknown>;
  if (!isString(c.instruction)) throw bad('"instruction" must be a string');
  const r = c.reconstruction as Record<string, unknown> | undefined;
  if (!r || !isString(r.repeatFirst) || !isString(r.repeatNext)) {
    throw bad('"reconstruction" needs string repeatFirst and repeatNext');
  }
  if (!Number.isInteger(r.prevPostfixTokens) || (r.prevPostfixTokens as number) < 0) {
    throw bad('"reconstruction.prevPostfixTokens" must be an integer >= 0');
  }
  const templates = c.templates as Record<string, Record<string, unknown>> | undefined;
  if (!templates || typeof templates !== 'object') throw bad('"templates" must be an object');
  for (const [name, t] of Object.entries(templates)) {
    if (!t || !isString(t.prefix) || !isString(t.postfix)) throw bad(`template "${name}" needs string prefix and postfix`);
    if (t.requiredTokens !== undefined && !(Array.isArray(t.requiredTokens) && t.requiredTokens.every(isString))) {
      throw bad(`template "${name}": requiredTokens must be a list of strings`);
    }
  }
  const match = c.match ?? [];
  if (!Array.isArray(match)) throw bad('"match" must be a list');
  for (const [i, rule] of (match as Record<string, unknown>[]).entries()) {
    if (!rule || !isString(rule.template) || !(rule.template in templates)) {
      throw bad(`match rule ${i} names an unknown template ${JSON.stringify(rule?.template)}`);
    }
    if (rule.namePattern !== undefined) {
      if (!isString(rule.namePattern)) throw bad(`match rule ${i}: namePattern must be a string`);
      try {
        new RegExp(rule.namePattern, 'i');
      } catch (err) {
        throw bad(`match rule ${i}: bad namePattern (${(err as Error).message})`);
      }
    }
    if (rule.modelTypes !== undefined && !(Array.isArray(rule.modelTypes) && rule.modelTypes.every(isString))) {
      throw bad(`match rule ${i}: modelTypes must be a list of strings`);
    }
  }
  if (!isString(c.fallback) || !(c.fallback in templates)) throw bad('"fallback" must name a template');
  return {
    source: file,
    instruction: c.instruction,
    reconstruction: {
      repeatFirst: r.repeatFirst,
      repeatNext: r.repeatNext,
      prevPostfixTokens: r.prevPostfixTokens as number,
    },
    templates: templates as unknown as Record<string, TemplateEntry>,
    match: match as TemplateMatchRule[],
    fallback: c.fallback,
  };
}

/** Read and check a templates file (cached per path). */
export function loadTemplateConfig(file: string = DEFAULT_TEMPLATES_FILE): TemplateConfig {
  const cached = cache.get(file);
  if (cached) return cached;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw fileError(file, `cannot read templates (${(err as Error).message})`);
  }
  const config = checkConfig(file, raw);
  cache.set(file, config);
  return config;
}

export interface TemplateQuery {
  /** explicit template name from the config (wins over everything else) */
  template?: string;
  /** HF config.json model_type, or our model family */
  modelType?: string;
  /** model id or folder name, e.g. "Qwen/Qwen3-8B" */
  modelName?: string;
}

export interface TemplateOptions {
  config?: TemplateConfig;
  /** text of the model's BOS token for {bos_token}; empty when it has none */
  bosToken?: string | null;
  /** vocabulary test: rules whose template needs tokens this tokenizer lacks are passed over */
  hasToken?: (token: string) => boolean;
}

function fill(text: string, config: TemplateConfig, bosToken: string): string {
  return text.split('{instruction}').join(config.instruction).split('{bos_token}').join(bosToken);
}

function build(name: string, config: TemplateConfig, options: TemplateOptions): ChatTemplate {
  const entry = config.templates[name];
  const bos = options.bosToken ?? '';
  return { name, prefix: fill(entry.prefix, config, bos), postfix: fill(entry.postfix, config, bos) };
}

/**
 * The chat template for a model. A plain string is tried as a template name, then as a
 * model_type / family and a model name. Rules of the config are tried in order; no match
 * gives the fallback (BOS / "\n\nAnswer: ").
 */
export function templateFor(query: string | TemplateQuery, options: TemplateOptions = {}): ChatTemplate {
  const config = options.config ?? loadTemplateConfig();
  const q: TemplateQuery = typeof query === 'string'
    ? query in config.templates
      ? { template: query }
      : { modelType: query, modelName: query }
    : query;
  if (q.template !== undefined) {
    if (!(q.template in config.templates)) {
      throw new UserError(`unknown chat template "${q.template}" (${config.source} has: ${Object.keys(config.templates).join(', ')})`);
    }
    return build(q.template, config, options);
  }
  const type = q.modelType?.toLowerCase();
  for (const rule of config.match) {
    const byName = rule.namePattern !== undefined && q.modelName !== undefined && new RegExp(rule.namePattern, 'i').test(q.modelName);
    const byType = type !== undefined && (rule.modelTypes ?? []).some((t) => t.toLowerCase() === type);
    if (!byName && !byType) continue;
    const needed = config.templates[rule.template].requiredTokens ?? [];
    if (options.hasToken && !needed.every((token) => options.hasToken!(token))) continue;
    return build(rule.template, config, options);
  }
  return build(config.fallback, config, options);
}

export function reconstructionPrompts(config: TemplateConfig = loadTemplateConfig()): ReconstructionPrompts {
  return { ...config.reconstruction };
}
