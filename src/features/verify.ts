// Full check of a feature store: every listed shard exists, has the recorded size and sha256,
// and is an Arrow file whose layout (layers, D, H, dtype, rows) matches the manifest.
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { readManifest, shardAbsPath } from './manifest.js';
import { recordBatchBlock } from './blocks.js';
import { checkLayoutAgainstManifest, openShardFile, shardLayout } from './reader.js';
import { isTempName, shardSizeProblem } from './store.js';
import { SHARDS_DIR, type FeatureManifest, type ShardEntry } from './types.js';

export interface VerifyOptions {
  /** compute sha256 of every shard (reads everything; default true) */
  checksums?: boolean;
  /** called after each shard with (done, total) */
  onProgress?: (done: number, total: number) => void;
}

export interface VerifyReport {
  ok: boolean;
  shards: number;
  bytes: number;
  /** "shards/x.arrow: problem" lines; empty when ok */
  problems: string[];
  /** files under shards/ that the manifest does not list (temp files, leftovers) */
  unlisted: string[];
  complete: boolean;
}

export async function verifyStore(storeDir: string, options: VerifyOptions = {}): Promise<VerifyReport> {
  const m = await readManifest(storeDir);
  const problems: string[] = [];
  let bytes = 0;
  let done = 0;
  for (const entry of m.shards) {
    const problem = await shardProblem(storeDir, m, entry, options.checksums ?? true);
    if (problem) problems.push(`${entry.file}: ${problem}`);
    else bytes += entry.bytes;
    options.onProgress?.(++done, m.shards.length);
  }
  if (m.plannedContexts !== null && m.complete && m.shards.length !== m.plannedContexts) {
    problems.push(`manifest.json: marked complete with ${m.shards.length} contexts, ${m.plannedContexts} planned`);
  }
  const listed = new Set(m.shards.map((s) => s.file));
  let names: string[] = [];
  try {
    names = await fs.readdir(path.join(storeDir, SHARDS_DIR));
  } catch {
    names = [];
  }
  const unlisted = names.map((n) => `${SHARDS_DIR}/${n}`).filter((rel) => !listed.has(rel) && (rel.endsWith('.arrow') || isTempName(path.basename(rel))));
  return { ok: problems.length === 0, shards: m.shards.length, bytes, problems, unlisted, complete: m.complete };
}

async function shardProblem(storeDir: string, m: FeatureManifest, entry: ShardEntry, checksums: boolean): Promise<string | null> {
  const sizeProblem = await shardSizeProblem(storeDir, entry);
  if (sizeProblem) return sizeProblem;
  const file = shardAbsPath(storeDir, entry);
  if (checksums) {
    const sha = await sha256File(file);
    if (sha !== entry.sha256) return `sha256 is ${sha}, the manifest records ${entry.sha256}`;
  }
  try {
    const { handle, reader } = await openShardFile(file);
    try {
      checkLayoutAgainstManifest(file, shardLayout(file, reader.schema), m);
      if (reader.numRecordBatches !== m.model.scoredLayers.length) {
        return `${reader.numRecordBatches} record batches, expected ${m.model.scoredLayers.length}`;
      }
      // metadata of every batch: layer tag, row count, buffer sizes (bodies are not read)
      for (let i = 0; i < reader.numRecordBatches; i++) await recordBatchBlock(file, handle, reader, m, entry, i);
    } finally {
      await handle.close();
    }
  } catch (e: any) {
    return String(e?.message ?? e).replace(`${file}: `, '');
  }
  return null;
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 22 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
