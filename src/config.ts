// Pipeline presets (configs/*.json): a model, a corpus and recipe, and the extract/train/export
// settings, so `fastkvzip run --config <name>` needs nothing else. A preset may extend another.
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fileError, UserError } from './util/errors.js';
import type { RecipeOptions } from './data/index.js';
import type { HiddenDtype } from './features/types.js';

export const PACKAGE_ROOT = fileURLToPath(new URL('..', import.meta.url));
export const CONFIG_DIR = path.join(PACKAGE_ROOT, 'configs');

export interface PipelineConfig {
  /** where it was loaded from */
  source: string;
  name: string;
  model: string;
  revision?: string;
  template?: string;
  data: string;
  textField?: string;
  /** JSON file of document ids to leave out */
  excludeDocs?: string;
  recipe: Partial<RecipeOptions>;
  extract: { prefillChunk: number; scoreChunk: number; device?: string; threads?: number; hiddenDtype?: HiddenDtype; quantBlock?: number; keepFraction?: number; keepSeed?: number };
  train: { steps: number; batch: number; lr: number; momentum: number; seed: number; rank: number; sinks: number; device?: string; threads?: number };
  export: { formats: ('pt' | 'safetensors' | 'onnx')[] };
}

const isObj = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = isObj(v) && isObj(base[k]) ? merge(base[k] as Record<string, unknown>, v) : v;
  return out;
}

/** `name` (a preset in configs/) or a path to a JSON file. */
export function configPath(nameOrPath: string): string {
  if (nameOrPath.endsWith('.json') || nameOrPath.includes('/')) return path.resolve(nameOrPath);
  return path.join(CONFIG_DIR, `${nameOrPath}.json`);
}

export function listPresets(): string[] {
  return ['default', 'ci', 'qwen3-8b', 'qwen3-14b', 'qwen2.5-7b-instruct-1m', 'gemma-3-12b-it', 'llama-3.1-8b-instruct'];
}

function readRaw(file: string, seen: string[] = []): Record<string, unknown> {
  if (!existsSync(file)) throw new UserError(`${file}: no such config (presets: ${listPresets().join(', ')})`);
  if (seen.includes(file)) throw fileError(file, `"extends" loops: ${[...seen, file].join(' -> ')}`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw fileError(file, `not valid JSON (${(e as Error).message})`);
  }
  if (!isObj(raw)) throw fileError(file, 'not a JSON object');
  const { extends: parent, $comment: _c, ...rest } = raw;
  if (typeof parent === 'string') return merge(readRaw(configPath(parent), [...seen, file]), rest);
  return rest;
}

/** Paths in presets are relative to the package root when they exist there (so `run` works from any folder). */
function resolveLocal(v: string | undefined): string | undefined {
  if (!v || path.isAbsolute(v)) return v;
  const p = path.join(PACKAGE_ROOT, v);
  return existsSync(p) ? p : v;
}

export function loadConfig(nameOrPath: string): PipelineConfig {
  const file = configPath(nameOrPath);
  const c = readRaw(file);
  const need = (k: string) => {
    if (c[k] === undefined) throw fileError(file, `missing "${k}"`);
    return c[k];
  };
  const extract = (c.extract ?? {}) as PipelineConfig['extract'];
  const train = (c.train ?? {}) as PipelineConfig['train'];
  return {
    source: file,
    name: path.basename(file, '.json'),
    model: resolveLocal(String(need('model')))!,
    revision: c.revision as string | undefined,
    template: c.template as string | undefined,
    data: resolveLocal(String(need('data')))!,
    textField: c.textField as string | undefined,
    excludeDocs: resolveLocal(c.excludeDocs as string | undefined),
    recipe: (c.recipe ?? {}) as Partial<RecipeOptions>,
    extract: { ...{ prefillChunk: 16000, scoreChunk: 2000 }, ...extract },
    train: { ...{ steps: 5000, batch: 1000, lr: 0.2, momentum: 0.9, seed: 0, rank: 16, sinks: 16 }, ...train },
    export: { formats: ['pt'], ...((c.export ?? {}) as object) } as PipelineConfig['export'],
  };
}
