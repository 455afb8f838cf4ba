// Pipeline presets (configs/*.json): a model, a corpus and recipe, and the extract/train/export
// settings, so `fastkvzip run --config <name>` needs nothing else. A preset may extend another.
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fileError, UserError, UsageError } from './util/errors.js';
import type { RecipeOptions } from './data/index.js';
import type { AttnInputDtype } from './features/types.js';

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
  extract: {
    prefillChunk: number;
    scoreChunk: number;
    device?: string;
    threads?: number;
    hiddenDtype?: AttnInputDtype;
    quantBlock?: number;
    keepFraction?: number;
    keepSeed?: number;
    /** "none" or "yarn:<factor>:<original positions>" (src/model/rope-override.ts) */
    ropeOverride?: string;
    allowLongContexts?: boolean;
  };
  train: { steps: number; batch: number; lr: number; momentum: number; seed: number; rank: number; sinks: number; device?: string; threads?: number };
  export: { formats: ('pt' | 'safetensors' | 'onnx')[]; license?: string };
}

/** What a value of a config key must be. */
type Kind = 'string' | 'bool' | 'int>0' | 'int>=0' | 'count' | 'number>0' | 'momentum' | 'device' | 'hiddenDtype' | 'formats' | 'fraction';

/** Every key a config file may hold (besides "extends" and "$comment"), by section. */
export const CONFIG_SCHEMA: Record<string, Kind | Record<string, Kind>> = {
  model: 'string',
  revision: 'string',
  template: 'string',
  data: 'string',
  textField: 'string',
  excludeDocs: 'string',
  recipe: {
    minDocTokens: 'int>0',
    maxDocTokens: 'int>0',
    tenKCount: 'count',
    catCount: 'count',
    catMinTokens: 'int>0',
    catSeparator: 'string',
    catAfterTenK: 'bool',
    publicCatQuirks: 'bool',
    maxTokens: 'count',
    stripDocuments: 'bool',
    useSourceTokenCounts: 'bool',
  },
  extract: { prefillChunk: 'int>0', scoreChunk: 'int>0', device: 'device', threads: 'int>=0', hiddenDtype: 'hiddenDtype', quantBlock: 'int>0', keepFraction: 'fraction', keepSeed: 'int>=0', ropeOverride: 'string', allowLongContexts: 'bool' },
  train: { steps: 'int>0', batch: 'int>0', lr: 'number>0', momentum: 'momentum', seed: 'int>=0', rank: 'int>0', sinks: 'int>0', device: 'device', threads: 'int>=0' },
  export: { formats: 'formats', license: 'string' },
};

/** Levenshtein distance, for "did you mean". */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)] as number[]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
    }
  }
  return d[a.length]![b.length]!;
}

/** The valid key closest to `key`. */
export function closest(key: string, valid: string[]): string {
  return valid.reduce((best, k) => (distance(key, k) < distance(key, best) ? k : best), valid[0]!);
}

function checkValue(kind: Kind, v: unknown): string | null {
  const int = (x: unknown) => typeof x === 'number' && Number.isInteger(x);
  switch (kind) {
    case 'string':
      return typeof v === 'string' ? null : 'a string';
    case 'bool':
      return typeof v === 'boolean' ? null : 'true or false';
    case 'int>0':
      return int(v) && (v as number) > 0 ? null : 'a positive integer';
    case 'int>=0':
      return int(v) && (v as number) >= 0 ? null : 'a non-negative integer';
    case 'count':
      return (int(v) && (v as number) >= 0) || v === 'all' ? null : 'a non-negative integer or "all"';
    case 'number>0':
      return typeof v === 'number' && Number.isFinite(v) && v > 0 ? null : 'a positive number';
    case 'momentum':
      return typeof v === 'number' && v >= 0 && v < 1 ? null : 'a number in [0, 1)';
    case 'device':
      return v === 'cpu' || v === 'cuda' || v === 'webgpu' ? null : 'one of cpu, cuda, webgpu';
    case 'hiddenDtype':
      return v === 'float16' || v === 'bfloat16' || v === 'int8' || v === 'float8e4m3' ? null : 'float16, bfloat16, int8 or float8e4m3';
    case 'fraction':
      return typeof v === 'number' && v > 0 && v <= 1 ? null : 'a number in (0, 1]';
    case 'formats':
      return Array.isArray(v) && v.length > 0 && v.every((f) => f === 'pt' || f === 'safetensors' || f === 'onnx') ? null : 'a non-empty list of pt, safetensors, onnx';
  }
}

/**
 * Problems of a merged config: unknown keys (with the closest valid one) and bad values, each
 * named by its dotted path. Empty when the config is valid.
 */
export function validateConfig(c: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const walk = (obj: Record<string, unknown>, schema: Record<string, Kind | Record<string, Kind>>, prefix: string) => {
    for (const [k, v] of Object.entries(obj)) {
      const at = prefix + k;
      const want = schema[k];
      if (want === undefined) {
        problems.push(`unknown key "${at}" (did you mean "${prefix}${closest(k, Object.keys(schema))}"?)`);
      } else if (typeof want === 'object') {
        if (!isObj(v)) problems.push(`"${at}" must be an object`);
        else walk(v, want, `${at}.`);
      } else {
        const bad = checkValue(want, v);
        if (bad) problems.push(`"${at}" must be ${bad} (got ${JSON.stringify(v)})`);
      }
    }
  };
  walk(c, CONFIG_SCHEMA, '');
  return problems;
}

/** Every dotted key `--set` accepts, e.g. "train.steps". */
export function configKeys(): string[] {
  return Object.entries(CONFIG_SCHEMA).flatMap(([k, v]) => (typeof v === 'object' ? Object.keys(v).map((s) => `${k}.${s}`) : [k]));
}

/**
 * `--set key=value` overrides: the value is JSON when it parses (numbers, true/false, lists),
 * else a string; a list may also be written comma-separated (export.formats=pt,onnx).
 */
export function parseOverride(arg: string): { key: string; value: unknown } {
  const eq = arg.indexOf('=');
  if (eq <= 0) throw new UsageError(`--set ${arg}: expected key=value, e.g. train.steps=50`);
  const key = arg.slice(0, eq).trim();
  const raw = arg.slice(eq + 1);
  const keys = configKeys();
  if (!keys.includes(key)) throw new UsageError(`--set ${arg}: unknown key "${key}" (did you mean "${closest(key, keys)}"?)`);
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    value = raw;
  }
  if (key === 'export.formats' && typeof value === 'string') value = value.split(',').map((x) => x.trim()).filter(Boolean);
  const [section, sub] = key.split('.');
  const kind = sub ? (CONFIG_SCHEMA[section!] as Record<string, Kind>)[sub]! : (CONFIG_SCHEMA[section!] as Kind);
  if (kind === 'string' && typeof value !== 'string') value = raw;
  const bad = checkValue(kind, value);
  if (bad) throw new UsageError(`--set ${arg}: "${key}" must be ${bad}`);
  return { key, value };
}

/** Apply overrides to a raw (unresolved) config object. */
function applyOverrides(c: Record<string, unknown>, overrides: { key: string; value: unknown }[]): Record<string, unknown> {
  let out = c;
  for (const { key, value } of overrides) {
    const [section, sub] = key.split('.');
    out = merge(out, sub ? { [section!]: { [sub]: value } } : { [section!]: value });
  }
  return out;
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

export function loadConfig(nameOrPath: string, overrides: { key: string; value: unknown }[] = []): PipelineConfig {
  const file = configPath(nameOrPath);
  const fromFile = readRaw(file);
  const problems = validateConfig(fromFile);
  if (problems.length) throw fileError(file, problems.join('; '));
  const c = applyOverrides(fromFile, overrides);
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
    recipe: Object.fromEntries(Object.entries((c.recipe ?? {}) as Record<string, unknown>).map(([k, v]) => [k, v === 'all' ? Infinity : v])) as Partial<RecipeOptions>,
    extract: { ...{ prefillChunk: 16000, scoreChunk: 2000 }, ...extract },
    train: { ...{ steps: 5000, batch: 1000, lr: 0.2, momentum: 0.9, seed: 0, rank: 16, sinks: 16 }, ...train },
    export: { formats: ['pt'], ...((c.export ?? {}) as object) } as PipelineConfig['export'],
  };
}
