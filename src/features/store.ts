// Opening a feature store for writing: creates it, or resumes a crashed / interrupted run.
//
// Resume rules: the manifest pins the identity (model, recipe, extraction flags); a run with
// a different identity is refused rather than mixed in. Shards listed in the manifest are
// done; anything else under shards/ (temp files of a crashed writer, or a shard renamed just
// before the crash but never recorded) is deleted so it gets extracted again.
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError, fileError } from '../util/errors.js';
import {
  identityDiff,
  identityHash,
  manifestPath,
  normalizeShards,
  readManifest,
  readManifestIfAny,
  recordShard,
  shardAbsPath,
  withShard,
  writeManifest,
} from './manifest.js';
import { newManifestLock, withManifestLock } from './manifest-lock.js';
import { openShardWriter, type ShardWriter } from './shard-writer.js';
import {
  LOCK_NAME,
  MANIFEST_FORMAT,
  MANIFEST_NAME,
  MANIFEST_VERSION,
  SHARDS_DIR,
  partSplitOf,
  type FeatureManifest,
  type PartInfo,
  type ShardEntry,
  type ShardInfo,
  type ShardMeta,
  type StoreIdentity,
  storeFormOf,
} from './types.js';

export interface StoreInit extends StoreIdentity {
  tool: { name: string; version: string };
  part?: PartInfo | null;
  plannedContexts?: number | null;
}

export interface OpenStoreOptions {
  /**
   * A listed shard that is missing or has the wrong size is an error by default (the disk
   * lost data after it was recorded). With this set it is dropped from the manifest instead
   * and extracted again.
   */
  dropBadShards?: boolean;
}

export type { ShardMeta } from './types.js';

export interface FeatureStore {
  readonly dir: string;
  /** current manifest (a fresh copy after every change) */
  readonly manifest: FeatureManifest;
  /** context ids already extracted */
  readonly completed: ReadonlySet<string>;
  /** files deleted while opening (temp files, unrecorded shards), relative to dir */
  readonly removed: string[];
  /** shards dropped while opening because dropBadShards was set: "file: problem" */
  readonly dropped: string[];
  /** A writer for one context, with D/H/layers/dtype from the manifest (`contextTokens`: its length, in a subsampled store). */
  openShard(contextId: string, contextTokens?: number): Promise<ShardWriter>;
  /**
   * The lock that every thread writing this store's manifest holds meanwhile: shard writers
   * record their shard themselves (recordShard in manifest.ts) as soon as it is on disk.
   */
  readonly manifestLock: SharedArrayBuffer;
  /** Records a finished shard in the manifest (atomically). */
  addShard(info: ShardInfo, meta: ShardMeta): Promise<void>;
  /** Takes note of a shard that a writer has already recorded in the manifest (nothing is written). */
  shardRecorded(info: ShardInfo, meta: ShardMeta): void;
  /** Marks the store complete (or not), writes the manifest and releases the lock. */
  finish(complete?: boolean): Promise<FeatureManifest>;
  /** Releases the lock without touching the manifest (after an error). */
  release(): Promise<void>;
}

const TEMP_MARK = '.tmp-';

export function isTempName(name: string): boolean {
  return name.startsWith('.') && name.includes(TEMP_MARK);
}

/** Temp files we put in a store's root: the manifest's atomic writes, and training graphs of older versions. */
function ownRootTemp(name: string): boolean {
  return name.startsWith(`.${MANIFEST_NAME}${TEMP_MARK}`) || /^\.train-\d+\.tmp-\d+\.onnx$/.test(name);
}

/**
 * Opens `dir` for extraction with identity `init`, creating the store when there is none.
 * Holds a lock file until finish()/release(), so two extractors never share a store.
 */
export async function openStore(dir: string, init: StoreInit, options: OpenStoreOptions = {}): Promise<FeatureStore> {
  checkInit(init);
  await fs.mkdir(path.join(dir, SHARDS_DIR), { recursive: true });
  const releaseLock = await acquireLock(dir);
  try {
    return await openLocked(dir, init, options, releaseLock);
  } catch (e) {
    await releaseLock();
    throw e;
  }
}

function checkInit(init: StoreInit): void {
  if (init.extract.hiddenDtype !== init.hiddenDtype) {
    throw new Error(`store identity: extract.hiddenDtype ${init.extract.hiddenDtype} differs from hiddenDtype ${init.hiddenDtype}`);
  }
  const { scoredLayers, numLayers } = init.model;
  if (!scoredLayers.length || scoredLayers.some((l) => !Number.isInteger(l) || l < 0 || l >= numLayers)) {
    throw new Error(`store identity: scoredLayers ${JSON.stringify(scoredLayers)} must be layer numbers below numLayers=${numLayers}`);
  }
}

async function openLocked(dir: string, init: StoreInit, options: OpenStoreOptions, releaseLock: () => Promise<void>): Promise<FeatureStore> {
  const hash = identityHash(init);
  const now = new Date().toISOString();
  let manifest = await readManifestIfAny(dir);
  const shardsDir = path.join(dir, SHARDS_DIR);
  // A store left with no context (e.g. a first run that failed on a wrong flag) holds nothing
  // to protect: a corrected command starts it afresh instead of being refused.
  if (manifest && manifest.identityHash !== hash && manifest.shards.length === 0) manifest = null;
  const removed: string[] = [];
  const dropped: string[] = [];

  if (manifest) {
    if (manifest.identityHash !== hash) {
      const diff = identityDiff(manifest, init) ?? 'identity hash differs';
      throw fileError(
        manifestPath(dir),
        `this store holds features of another model/recipe/extraction (${diff}); use a new output directory or delete this one`,
      );
    }
    // the part's index and count must match; where they came from (flag, scheduler) may change
    const partKey = (p: PartInfo | null | undefined) => (p ? `${p.index}/${p.count}` : null);
    const samePart = partKey(manifest.part) === partKey(init.part);
    if (!samePart) {
      throw fileError(manifestPath(dir), `this store is part ${fmtPart(manifest.part)}, not ${fmtPart(init.part ?? null)}; use one output directory per --shard`);
    }
    if (manifest.part && init.part && partSplitOf(manifest.part) !== partSplitOf(init.part)) {
      throw fileError(manifestPath(dir), `this part ${fmtPart(manifest.part)} took its contexts by ${partSplitOf(manifest.part)} (an earlier fastkvzip); parts are now ${partSplitOf(init.part)} by tokens, and the other parts of this split would not fit it: extract every part again into new folders (or delete this one)`);
    }
    // Listed shards must still be there, whole.
    const kept: ShardEntry[] = [];
    for (const entry of manifest.shards) {
      const problem = await shardSizeProblem(dir, entry);
      if (!problem) kept.push(entry);
      else if (options.dropBadShards) {
        dropped.push(`${entry.file}: ${problem}`);
        await fs.rm(shardAbsPath(dir, entry), { force: true });
      } else {
        throw fileError(shardAbsPath(dir, entry), `${problem}; the store is damaged (rerun with the option to drop bad shards, or delete the store)`);
      }
    }
    manifest = { ...manifest, ...normalizeShards(kept), tool: init.tool, part: init.part ?? null, plannedContexts: init.plannedContexts ?? manifest.plannedContexts };
    if (dropped.length) manifest.complete = false;
  } else {
    const strays = (await fs.readdir(shardsDir)).filter((n) => n.endsWith('.arrow') && !isTempName(n));
    if (strays.length) throw fileError(dir, `has shard files (${strays[0]}, …) but no ${MANIFEST_NAME}; refusing to guess what they are`);
    // Only an empty folder (or our own leftovers) becomes a store: never mix in the user's files.
    const foreign = [
      ...(await fs.readdir(dir)).filter((n) => n !== SHARDS_DIR && n !== LOCK_NAME && n !== MANIFEST_NAME && !ownRootTemp(n)),
      ...(await fs.readdir(shardsDir)).filter((n) => !isTempName(n)).map((n) => `${SHARDS_DIR}/${n}`),
    ];
    if (foreign.length) throw new UserError(`${dir}: is not empty (${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', …' : ''}) and holds no feature store; choose an empty or new --out`, 1);
    manifest = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      tool: init.tool,
      model: init.model,
      recipe: init.recipe,
      extract: init.extract,
      hiddenDtype: init.hiddenDtype,
      identityHash: hash,
      part: init.part ?? null,
      plannedContexts: init.plannedContexts ?? null,
      shards: [],
      totals: { contexts: 0, tokens: 0, bytes: 0 },
      createdAt: now,
      updatedAt: now,
      complete: false,
    };
  }

  // Leftovers of a crashed run: temp files anywhere in the store, unrecorded shards.
  const listed = new Set(manifest.shards.map((s) => s.file));
  for (const name of await fs.readdir(shardsDir)) {
    const rel = `${SHARDS_DIR}/${name}`;
    if (isTempName(name) || (name.endsWith('.arrow') && !listed.has(rel))) {
      await fs.rm(path.join(shardsDir, name), { force: true });
      removed.push(rel);
    }
  }
  for (const name of await fs.readdir(dir)) {
    if (ownRootTemp(name)) {
      await fs.rm(path.join(dir, name), { force: true });
      removed.push(name);
    }
  }

  manifest.updatedAt = now;
  await writeManifest(dir, manifest);

  let current: FeatureManifest = manifest;
  const manifestLock = newManifestLock();
  const completed = new Set(current.shards.map((s) => s.contextId));
  let released = false;
  const release = async () => {
    if (!released) {
      released = true;
      await releaseLock();
    }
  };
  const ensureOpen = () => {
    if (released) throw new Error(`feature store ${dir} was already finished/released`);
  };

  return {
    dir,
    get manifest() {
      return structuredClone(current);
    },
    completed,
    removed,
    dropped,
    manifestLock,
    async openShard(contextId, contextTokens) {
      ensureOpen();
      return openShardWriter(dir, contextId, {
        D: current.model.D,
        H: current.model.H,
        layers: current.model.scoredLayers,
        hiddenDtype: current.hiddenDtype,
        ...shardFormOptions(current),
        modelId: current.model.id,
        contextTokens,
      });
    },
    async addShard(info, meta) {
      ensureOpen();
      current = await recordShard(dir, info, meta, manifestLock);
      completed.add(info.contextId);
    },
    shardRecorded(info, meta) {
      ensureOpen();
      current = withShard(current, info, meta);
      completed.add(info.contextId);
    },
    async finish(complete = true) {
      ensureOpen();
      current = await withManifestLock(manifestLock, async () => {
        // the file is the record: a writer may have recorded shards whose callbacks never ran (a failed run)
        const byId = new Map([...current.shards, ...(await readManifest(dir)).shards].map((e) => [e.contextId, e]));
        const next: FeatureManifest = { ...current, ...normalizeShards([...byId.values()]), complete, updatedAt: new Date().toISOString() };
        await writeManifest(dir, next);
        return next;
      });
      for (const e of current.shards) completed.add(e.contextId);
      await release();
      return structuredClone(current);
    },
    release,
  };
}

/** The shard writer's options for a store's form (8-bit scales, kept positions). */
export function shardFormOptions(id: StoreIdentity): { quantBlock?: number; keep?: { fraction: number; seed: number } } {
  const form = storeFormOf(id);
  return { ...(form.quantBlock ? { quantBlock: form.quantBlock } : {}), ...(form.keep ? { keep: form.keep } : {}) };
}

function fmtPart(part: PartInfo | null): string {
  return part ? `${part.index + 1}/${part.count}` : '(whole run)';
}

/** Cheap check used when opening: the file exists and has the recorded size. */
export async function shardSizeProblem(dir: string, entry: ShardEntry): Promise<string | null> {
  try {
    const st = await fs.stat(shardAbsPath(dir, entry));
    if (!st.isFile()) return 'not a regular file';
    if (st.size !== entry.bytes) return `size is ${st.size} bytes, the manifest records ${entry.bytes}`;
    return null;
  } catch (e: any) {
    if (e?.code === 'ENOENT') return 'missing';
    return `cannot stat: ${e?.message ?? e}`;
  }
}

// ---- lock -------------------------------------------------------------------------------

interface LockInfo {
  pid: number;
  host: string;
  since: string;
}

/** Creates dir/.lock exclusively; takes over a lock left by a dead process on this host. */
export async function acquireLock(dir: string): Promise<() => Promise<void>> {
  const lockPath = path.join(dir, LOCK_NAME);
  const mine: LockInfo = { pid: process.pid, host: os.hostname(), since: new Date().toISOString() };
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await fs.writeFile(lockPath, JSON.stringify(mine) + '\n', { flag: 'wx' });
      return async () => {
        await fs.rm(lockPath, { force: true });
      };
    } catch (e: any) {
      if (e?.code !== 'EEXIST') throw fileError(lockPath, `cannot create lock file: ${e?.message ?? e}`);
    }
    let holder: LockInfo | null = null;
    try {
      holder = JSON.parse(await fs.readFile(lockPath, 'utf8'));
    } catch {
      holder = null; // unreadable: half-written by a crashed process
    }
    const stale = holder === null || (holder.host === mine.host && !processAlive(holder.pid));
    if (!stale) {
      throw new UserError(
        `${dir}: in use by process ${holder!.pid} on ${holder!.host} since ${holder!.since} (delete ${lockPath} if that process is gone)`,
        1,
      );
    }
    await fs.rm(lockPath, { force: true });
  }
  throw fileError(lockPath, 'could not take the lock (another process keeps creating it)');
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e: any) {
    return e?.code === 'EPERM';
  }
}
