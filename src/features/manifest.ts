// manifest.json of a feature store: reading with validation, atomic writing, and the identity
// hash that keeps features of different models / recipes / extraction flags from ever mixing.
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { fileError } from '../util/errors.js';
import { tempPathFor } from '../util/atomic.js';
import { withManifestLock } from './manifest-lock.js';
import {
  ATTN_INPUT_DTYPES,
  MANIFEST_FORMAT,
  MANIFEST_NAME,
  MANIFEST_VERSION,
  SHARDS_DIR,
  type FeatureManifest,
  type JsonValue,
  type ShardEntry,
  type ShardInfo,
  type ShardMeta,
  type StoreIdentity,
} from './types.js';

/** JSON with object keys sorted at every level, so equal values give equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) out[key] = sortKeys(v);
    }
    return out;
  }
  return value;
}

/**
 * The part of a manifest that must match between runs sharing a store. The model's
 * `revision` is left out: the resolved `commit` already pins the weights, and "main" vs
 * its sha must not look like different models.
 */
export function identityOf(id: StoreIdentity): JsonValue {
  const { revision: _revision, ...model } = id.model;
  return sortKeys({ model, recipe: id.recipe, extract: id.extract, hiddenDtype: id.hiddenDtype }) as JsonValue;
}

export function identityHash(id: StoreIdentity): string {
  return createHash('sha256').update(canonicalJson(identityOf(id))).digest('hex');
}

/** First path where two identities differ, e.g. `model.commit: "abc" vs "def"` (null if equal). */
export function identityDiff(a: StoreIdentity, b: StoreIdentity): string | null {
  return firstDiff(identityOf(a), identityOf(b), '');
}

function firstDiff(a: unknown, b: unknown, at: string): string | null {
  const isObj = (v: unknown) => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isObj(a) && isObj(b)) {
    const keys = [...new Set([...Object.keys(a as object), ...Object.keys(b as object)])].sort();
    for (const k of keys) {
      const d = firstDiff((a as any)[k], (b as any)[k], at ? `${at}.${k}` : k);
      if (d) return d;
    }
    return null;
  }
  if (canonicalJson(a) === canonicalJson(b)) return null;
  const show = (v: unknown) => (v === undefined ? '(absent)' : truncate(JSON.stringify(v), 80));
  return `${at || '(root)'}: ${show(a)} vs ${show(b)}`;
}

function truncate(s: string, n: number): string {
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

export function manifestPath(storeDir: string): string {
  return path.join(storeDir, MANIFEST_NAME);
}

/** Context ids become file names: keep them to a safe, portable alphabet. */
export function checkContextId(contextId: string): void {
  if (!/^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$/.test(contextId)) {
    throw new Error(`context id ${JSON.stringify(contextId)} is not a safe file name (letters, digits, . _ -; not starting with . or -)`);
  }
}

export function shardRelPath(contextId: string): string {
  checkContextId(contextId);
  return `${SHARDS_DIR}/${contextId}.arrow`;
}

export function shardAbsPath(storeDir: string, entry: { file: string }): string {
  return path.join(storeDir, ...entry.file.split('/'));
}

/** The manifest of `storeDir`, or null when it has none. Throws fileError on a malformed one. */
export async function readManifestIfAny(storeDir: string): Promise<FeatureManifest | null> {
  const file = manifestPath(storeDir);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (e: any) {
    if (e?.code === 'ENOENT') return null;
    throw fileError(file, `cannot read: ${e?.message ?? e}`);
  }
  let json: any;
  try {
    json = JSON.parse(text);
  } catch (e: any) {
    throw fileError(file, `not valid JSON (${e?.message ?? e})`);
  }
  validateManifest(file, json);
  return json as FeatureManifest;
}

export async function readManifest(storeDir: string): Promise<FeatureManifest> {
  const m = await readManifestIfAny(storeDir);
  if (!m) throw fileError(manifestPath(storeDir), 'missing: not a fastkvzip feature store');
  return m;
}

function validateManifest(file: string, m: any): void {
  const bad = (problem: string) => fileError(file, problem);
  if (m === null || typeof m !== 'object') throw bad('not a JSON object');
  if (m.format !== MANIFEST_FORMAT) throw bad(`format is ${JSON.stringify(m.format)}, expected "${MANIFEST_FORMAT}"`);
  if (m.version !== MANIFEST_VERSION) throw bad(`version ${m.version} is not supported (this tool reads version ${MANIFEST_VERSION})`);
  for (const key of ['model', 'recipe', 'extract', 'tool', 'totals'] as const) {
    if (m[key] === null || typeof m[key] !== 'object') throw bad(`"${key}" is missing or not an object`);
  }
  if (!ATTN_INPUT_DTYPES.includes(m.hiddenDtype)) throw bad(`hiddenDtype ${JSON.stringify(m.hiddenDtype)} must be one of ${ATTN_INPUT_DTYPES.map((d) => `"${d}"`).join(', ')}`);
  const quant = m.hiddenDtype === 'int8' || m.hiddenDtype === 'float8e4m3';
  const block = m.extract.quantBlock;
  if (quant && !(Number.isInteger(block) && block > 0 && Number.isInteger(m.model?.D) && m.model.D % block === 0)) throw bad(`extract.quantBlock ${JSON.stringify(block)} must divide the hidden size for a ${m.hiddenDtype} store`);
  if (!quant && block !== undefined) throw bad(`extract.quantBlock is set but hiddenDtype ${m.hiddenDtype} is not an 8-bit form`);
  const keep = m.extract.keepFraction;
  if (keep !== undefined && !(typeof keep === 'number' && keep > 0 && keep < 1 && Number.isInteger(m.extract.keepSeed))) throw bad(`extract.keepFraction ${JSON.stringify(keep)} must be in (0, 1) with an integer extract.keepSeed`);
  const model = m.model;
  for (const key of ['D', 'H', 'G', 'numLayers'] as const) {
    if (!Number.isInteger(model[key]) || model[key] <= 0) throw bad(`model.${key} must be a positive integer`);
  }
  if (!Array.isArray(model.scoredLayers) || model.scoredLayers.length === 0 || !model.scoredLayers.every((l: unknown) => Number.isInteger(l))) {
    throw bad('model.scoredLayers must be a non-empty list of layer numbers');
  }
  if (typeof m.identityHash !== 'string') throw bad('identityHash is missing');
  if (!Array.isArray(m.shards)) throw bad('"shards" is not a list');
  const seen = new Set<string>();
  m.shards.forEach((s: any, i: number) => {
    const where = `shards[${i}]`;
    if (s === null || typeof s !== 'object') throw bad(`${where} is not an object`);
    if (typeof s.contextId !== 'string') throw bad(`${where}.contextId is missing`);
    try {
      checkContextId(s.contextId);
    } catch (e: any) {
      throw bad(`${where}: ${e.message}`);
    }
    if (seen.has(s.contextId)) throw bad(`context ${s.contextId} is listed twice`);
    seen.add(s.contextId);
    if (s.file !== shardRelPath(s.contextId)) throw bad(`${where}.file must be "${shardRelPath(s.contextId)}"`);
    for (const key of ['index', 'tokens', 'bytes'] as const) {
      if (!Number.isInteger(s[key]) || s[key] < 0) throw bad(`${where}.${key} must be a non-negative integer`);
    }
    if (keep !== undefined && !(Number.isInteger(s.contextTokens) && s.contextTokens >= s.tokens)) throw bad(`${where}.contextTokens must be an integer >= tokens in a subsampled store`);
    if (typeof s.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(s.sha256)) throw bad(`${where}.sha256 is not a sha256 hex digest`);
  });
  if (identityHash(m) !== m.identityHash) throw bad('identityHash does not match the model/recipe/extract fields (the manifest was edited by hand?)');
}

/** Sorts shards into the canonical order and recomputes totals. */
export function normalizeShards(shards: ShardEntry[]): { shards: ShardEntry[]; totals: FeatureManifest['totals'] } {
  const sorted = [...shards].sort((a, b) => a.index - b.index || (a.contextId < b.contextId ? -1 : a.contextId > b.contextId ? 1 : 0));
  const totals = { contexts: sorted.length, tokens: 0, bytes: 0 };
  for (const s of sorted) {
    totals.tokens += s.tokens;
    totals.bytes += s.bytes;
  }
  return { shards: sorted, totals };
}

/** `m` with the shard of `info` recorded (replacing an earlier entry of its context). */
export function withShard(m: FeatureManifest, info: ShardInfo, meta: ShardMeta): FeatureManifest {
  checkContextId(info.contextId);
  if (info.file !== shardRelPath(info.contextId)) throw new Error(`record shard: file ${info.file} does not belong to context ${info.contextId}`);
  if (!Number.isInteger(meta.index) || meta.index < 0) throw new Error(`record shard: index ${meta.index} must be a non-negative integer`);
  const clash = m.shards.find((s) => s.index === meta.index && s.contextId !== info.contextId);
  if (clash) throw new Error(`record shard: index ${meta.index} is already used by context ${clash.contextId}`);
  const entry: ShardEntry = {
    contextId: info.contextId,
    index: meta.index,
    set: meta.set,
    docIds: [...meta.docIds],
    tokens: info.tokens,
    ...(info.contextTokens !== undefined ? { contextTokens: info.contextTokens } : {}),
    file: info.file,
    bytes: info.bytes,
    sha256: info.sha256,
  };
  const others = m.shards.filter((s) => s.contextId !== info.contextId);
  return { ...m, ...normalizeShards([...others, entry]), updatedAt: new Date().toISOString() };
}

/**
 * Records a finished shard in `storeDir`'s manifest.json (read, add, atomic write) under the
 * store's manifest lock: what a shard writer does the moment its shard is on disk.
 */
export async function recordShard(storeDir: string, info: ShardInfo, meta: ShardMeta, lock: SharedArrayBuffer): Promise<FeatureManifest> {
  return withManifestLock(lock, async () => {
    const next = withShard(await readManifest(storeDir), info, meta);
    await writeManifest(storeDir, next);
    return next;
  });
}

/** Atomic and durable: temp file, fsync, rename, fsync of the directory. */
export async function writeManifest(storeDir: string, manifest: FeatureManifest): Promise<void> {
  const target = manifestPath(storeDir);
  const tmp = tempPathFor(target);
  const fh = await fs.open(tmp, 'w');
  try {
    await fh.writeFile(JSON.stringify(manifest, null, 2) + '\n');
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.rename(tmp, target);
  await fsyncDir(storeDir);
}

/** Makes a rename inside `dir` survive a power loss (a no-op where directories cannot be opened). */
export async function fsyncDir(dir: string): Promise<void> {
  let fh: fs.FileHandle | undefined;
  try {
    fh = await fs.open(dir, 'r');
    await fh.sync();
  } catch {
    // Windows and some network filesystems refuse this; the rename itself is still atomic.
  } finally {
    await fh?.close();
  }
}
