// The `train --out` folder and the store it reads: whose files are there, whether the shards
// are the ones the manifest recorded, and where the temporary training graphs go.
import { promises as fs, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { sha256File, type FeatureManifest, type ShardEntry } from '../features/index.js';
import { shardSizeProblem } from '../features/store.js';
import { shardAbsPath } from '../features/manifest.js';
import { writeJsonAtomic } from '../util/atomic.js';
import { UserError, fileError } from '../util/errors.js';

/** Marks a folder as a training run's and pins the run identity (what resume compares). */
export const TRAIN_MARK = '.fastkvzip-train.json';
/** Temporary graphs and hard links to the shards, deleted after each group. */
export const TRAIN_TMP = '.train-tmp';
/** Every name a training run writes into --out: the only names --overwrite may delete. */
const OUR_NAMES = ['gates.safetensors', 'summary.json', 'log.jsonl', 'loss.svg', 'acc.svg', 'curves.json', 'checkpoints', TRAIN_MARK, TRAIN_TMP];
const LOCK = '.lock';

export type VerifyLevel = 'full' | 'size';

/**
 * Refuse an --out that holds another run's or foreign files unless `overwrite`, in which case
 * only our own names are deleted. Then (re)write the marker with this run's identity.
 */
export async function claimTrainOut(out: string, identity: string, overwrite: boolean): Promise<void> {
  const markFile = path.join(out, TRAIN_MARK);
  let mark: { identity?: string } | null = null;
  try {
    mark = JSON.parse(await fs.readFile(markFile, 'utf8'));
  } catch {
    mark = null;
  }
  const entries = readdirSync(out).filter((n) => n !== LOCK);
  if (mark?.identity === identity) return;
  if (entries.length > 0 && !overwrite) {
    const what = mark
      ? 'holds gates and checkpoints of another training run (different store or options)'
      : `is not empty (${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', …' : ''}) and is not a fastkvzip train folder`;
    throw new UserError(`${out}: ${what}; pass --overwrite to replace it, or choose another --out`, 1);
  }
  for (const name of OUR_NAMES) await fs.rm(path.join(out, name), { recursive: true, force: true });
  await writeJsonAtomic(markFile, { format: 'fastkvzip-train', identity });
}

/**
 * Every shard training reads must be the one the manifest recorded: present, the recorded size,
 * and (level "full") the recorded sha256, so flipped bytes never train silently.
 */
export async function verifyShards(storeDir: string, shards: ShardEntry[], level: VerifyLevel, onProgress?: (done: number, bytes: number) => void): Promise<void> {
  let bytes = 0;
  for (let i = 0; i < shards.length; i++) {
    const s = shards[i]!;
    const file = shardAbsPath(storeDir, s);
    const problem = await shardSizeProblem(storeDir, s);
    if (problem) throw new UserError(`${file}: ${problem} (listed in ${path.join(storeDir, 'manifest.json')}); the store is damaged: re-run extract into it to redo this context`, 1);
    if (level === 'full') {
      const sha = await sha256File(file);
      if (sha !== s.sha256) throw new UserError(`${file}: sha256 is ${sha.slice(0, 16)}…, the manifest records ${s.sha256.slice(0, 16)}…; the shard is corrupt (re-run extract into the store to redo it)`, 1);
    }
    bytes += s.bytes;
    onProgress?.(i + 1, bytes);
  }
}

/**
 * Folder for the training graph of one group. ONNX Runtime reads external data only from the
 * model's own folder (symlinks resolved), so the shards are hard-linked beside the graph under
 * --out: the store is never written to and may be read-only. Across file systems (no hard
 * links) the graph goes into the store root as before, when the store is writable.
 */
export interface GraphPlace {
  /** where the graph of group `gi` goes */
  graphPath(gi: number): string;
  /** deletes everything placed (links, graphs) */
  cleanup(): Promise<void>;
}

export async function trainGraphFolder(out: string, storeDir: string, shards: ShardEntry[]): Promise<GraphPlace> {
  const dir = path.join(out, TRAIN_TMP);
  await fs.rm(dir, { recursive: true, force: true }); // ours, left by an interrupted run
  await fs.mkdir(path.join(dir, 'shards'), { recursive: true });
  try {
    for (const s of shards) await fs.link(shardAbsPath(storeDir, s), path.join(dir, 'shards', path.basename(s.file)));
    return { graphPath: (gi) => path.join(dir, `group-${gi}.onnx`), cleanup: () => fs.rm(dir, { recursive: true, force: true }) };
  } catch (e) {
    await fs.rm(dir, { recursive: true, force: true });
    const code = (e as NodeJS.ErrnoException).code ?? '';
    if (!['EXDEV', 'EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EMLINK'].includes(code)) throw e;
    try {
      await fs.access(storeDir, fs.constants?.W_OK ?? 2);
    } catch {
      throw fileError(storeDir, `is read-only and on another file system than --out ${out} (${code}): ONNX Runtime needs the training graph beside the shards; put --out on the store's file system`);
    }
    // the graph refers to shards/<name>, so it must sit in the store root itself
    const graphPath = (gi: number) => path.join(storeDir, `.train-${process.pid}.tmp-${gi}.onnx`);
    const placed = new Set<string>();
    return {
      graphPath: (gi) => {
        placed.add(graphPath(gi));
        return graphPath(gi);
      },
      cleanup: async () => {
        for (const f of placed) await fs.rm(f, { force: true });
      },
    };
  }
}

/** A store whose extraction has not finished trains on what is there, but say so. */
export function incompleteWarning(storeDir: string, m: FeatureManifest): string | null {
  if (m.complete) return null;
  const planned = m.plannedContexts !== null ? ` of ${m.plannedContexts} planned` : '';
  return `warning: ${storeDir}: extraction is not complete (${m.shards.length} context(s)${planned}); training on what is there (resume extract to finish it)`;
}
