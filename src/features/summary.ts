// Sizes of a feature store: what an existing one holds (for `--json` output and the training
// memory estimate) and what a planned extraction will need on disk.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../util/errors.js';
import { readManifest } from './manifest.js';
import { storeFormOf, type AttnInputDtype, type PartInfo, type StoreForm } from './types.js';
import { HELD_OUT_EVERY } from './keep.js';
import { DTYPE_BYTES } from '../util/dtype.js';

export interface StoreSummary {
  dir: string;
  complete: boolean;
  modelId: string;
  D: number;
  H: number;
  layers: number[];
  hiddenDtype: AttnInputDtype;
  /** the hidden form and kept fraction */
  form: StoreForm;
  part: PartInfo | null;
  plannedContexts: number | null;
  contexts: number;
  tokens: number;
  /** total size of the shard files */
  bytes: number;
  /** largest context, in tokens */
  maxContextTokens: number;
  /** one layer's data over all contexts: what training a layer holds in memory */
  perLayer: { hiddenBytes: number; scoreBytes: number; bytes: number };
  sets: Record<string, { contexts: number; tokens: number }>;
}

export async function storeSummary(storeDir: string): Promise<StoreSummary> {
  const m = await readManifest(storeDir);
  const sets: StoreSummary['sets'] = {};
  let maxContextTokens = 0;
  for (const s of m.shards) {
    const set = (sets[s.set] ??= { contexts: 0, tokens: 0 });
    set.contexts++;
    set.tokens += s.tokens;
    maxContextTokens = Math.max(maxContextTokens, s.tokens);
  }
  const tokens = m.totals.tokens;
  const form = storeFormOf(m);
  const hiddenBytes = tokens * m.model.D * DTYPE_BYTES[m.hiddenDtype] + (form.quantBlock ? tokens * (m.model.D / form.quantBlock) * 4 : 0);
  const scoreBytes = tokens * m.model.H * 4;
  return {
    dir: storeDir,
    complete: m.complete,
    modelId: m.model.id,
    D: m.model.D,
    H: m.model.H,
    layers: [...m.model.scoredLayers],
    hiddenDtype: m.hiddenDtype,
    form,
    part: m.part,
    plannedContexts: m.plannedContexts,
    contexts: m.totals.contexts,
    tokens,
    bytes: m.totals.bytes,
    maxContextTokens,
    perLayer: { hiddenBytes, scoreBytes, bytes: hiddenBytes + scoreBytes },
    sets,
  };
}

export interface StoreSizeInput {
  tokens: number;
  /** number of scored layers */
  layers: number;
  D: number;
  H: number;
  hiddenDtype: AttnInputDtype;
  /** 8-bit forms: channels per fp32 scale */
  quantBlock?: number;
  /** subsampled stores: fraction of the non-held-out positions kept (a row also carries an int32 position) */
  keepFraction?: number;
  /** number of shards (contexts); default 1 */
  contexts?: number;
}

/** Bytes of one stored row (token) of one layer in a store form. */
export function bytesPerRow(input: Pick<StoreSizeInput, 'D' | 'H' | 'hiddenDtype' | 'quantBlock' | 'keepFraction'>): number {
  const scales = input.quantBlock ? (input.D / input.quantBlock) * 4 : 0;
  const position = input.keepFraction !== undefined && input.keepFraction < 1 ? 4 : 0;
  return input.D * DTYPE_BYTES[input.hiddenDtype] + input.H * 4 + scales + position;
}

/** Rows kept per token of a context: the held-out 1 % always, and `fraction` of the others. */
export function keptRowsPerToken(fraction = 1): number {
  return fraction >= 1 ? 1 : 1 / HELD_OUT_EVERY + fraction * (1 - 1 / HELD_OUT_EVERY);
}

/**
 * Arrow framing, measured on real shards and rounded up: per file, and per record batch
 * (its metadata, plus up to one page of padding that aligns the hidden values).
 */
const FILE_OVERHEAD = 2048;
const BATCH_OVERHEAD = 512 + 4096;

/** Bytes the shard files will take (data plus Arrow framing; the manifest is negligible). */
export function estimateStoreBytes(input: StoreSizeInput): number {
  const contexts = input.contexts ?? 1;
  const data = Math.ceil(input.tokens * keptRowsPerToken(input.keepFraction)) * input.layers * bytesPerRow(input);
  return data + contexts * (FILE_OVERHEAD + input.layers * BATCH_OVERHEAD);
}

export interface DiskCheck {
  /** bytes available to this user on the filesystem holding dir */
  free: number;
  needed: number;
  /** needed plus safety margin */
  required: number;
}

export interface DiskCheckOptions {
  /** extra fraction of bytesNeeded kept free (default 0.02) */
  marginFraction?: number;
  /** extra bytes kept free (default 1 GiB) */
  marginBytes?: number;
}

/** Throws a UserError when the filesystem of `dir` (or its nearest existing parent) lacks room. */
export async function checkDiskSpace(dir: string, bytesNeeded: number, options: DiskCheckOptions = {}): Promise<DiskCheck> {
  const existing = await nearestExisting(path.resolve(dir));
  const st = await fs.statfs(existing);
  const free = Number(st.bavail) * Number(st.bsize);
  const required = Math.ceil(bytesNeeded * (1 + (options.marginFraction ?? 0.02)) + (options.marginBytes ?? 2 ** 30));
  if (bytesNeeded > 0 && free < required) {
    throw new UserError(
      `${dir}: not enough disk space for the features: they need about ${fmtBytes(bytesNeeded)} (${fmtBytes(required)} with margin), ` +
        `only ${fmtBytes(free)} is free; free some space, choose another output directory, or extract fewer tokens/layers`,
    );
  }
  return { free, needed: bytesNeeded, required };
}

async function nearestExisting(p: string): Promise<string> {
  for (let cur = p; ; cur = path.dirname(cur)) {
    try {
      await fs.stat(cur);
      return cur;
    } catch (e: any) {
      if (e?.code !== 'ENOENT' || path.dirname(cur) === cur) throw e;
    }
  }
}

export function fmtBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}
