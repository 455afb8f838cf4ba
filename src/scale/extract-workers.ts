// `extract --gpus all|0,1,… | --workers n`: one `extract --shard k/n` process per device, each
// writing its own part store under <out>.parts/, merged into <out> at the end (hard links: no
// extra disk). A rerun resumes every part where it stopped; a finished merge is not redone.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { availableParallelism } from 'node:os';
import { mergeStores, readManifestIfAny, type FeatureManifest } from '../features/index.js';
import { createProgress } from '../util/progress.js';
import { resolveRecipeOptions, type RecipeOptions } from '../data/index.js';
import { UserError, fileError } from '../util/errors.js';
import { describeSlot, type WorkerSlot } from './gpus.js';
import { runWorkers, type WorkerJob } from './workers.js';

export interface ExtractWorkersOptions {
  /** the extract command line without --out/--json/--quiet/--device/--device-id/--threads/--gpus/--workers/--shard */
  args: string[];
  slots: WorkerSlot[];
  out: string;
  /** CPU threads per worker (0: the host's cores divided among the CPU workers) */
  threads: number;
  /** for the progress bar: tokens the whole run may extract */
  plannedTokens: number;
  quiet?: boolean;
  plainProgress?: boolean;
  log?: (line: string) => void;
  /** the flag that hands a worker its part (default --shard; `run`'s workers take --extract-part) */
  partFlag?: string;
  /** progress-bar label (default "extract") */
  label?: string;
}

export interface WorkerPartSummary {
  part: string;
  device: string;
  dir: string;
  contexts: { done: number; thisRun: number };
  tokens: { thisRun: number; total: number };
  seconds: number;
  tokensPerSecond: number;
  setupSeconds: number;
}

export interface ExtractWorkersSummary {
  store: string;
  parts: string;
  workers: WorkerPartSummary[];
  /** true when <out> already held this merge (a rerun of a finished job) */
  alreadyMerged: boolean;
  totals: FeatureManifest['totals'];
  complete: boolean;
  seconds: number;
  tokensPerSecond: number;
}

/** Where the parts of an n-worker run go: <out>.parts/part-<k>-of-<n>. */
export function partDirs(out: string, n: number): string[] {
  const root = `${path.resolve(out)}.parts`;
  return Array.from({ length: n }, (_, k) => path.join(root, `part-${k}-of-${n}`));
}

/** CPU threads for each of `cpuWorkers` processes sharing this host (at least 1). */
export function threadsPerWorker(requested: number, cpuWorkers: number, cores = availableParallelism()): number {
  if (requested > 0 || cpuWorkers === 0) return requested;
  return Math.max(1, Math.floor(cores / cpuWorkers));
}

export async function extractWithWorkers(o: ExtractWorkersOptions): Promise<ExtractWorkersSummary> {
  const log = o.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const t0 = Date.now();
  const n = o.slots.length;
  checkOut(o.out);
  const dirs = partDirs(o.out, n);
  const cpuWorkers = o.slots.filter((s) => s.device === 'cpu').length;
  const threads = threadsPerWorker(o.threads, cpuWorkers);
  const jobs: WorkerJob[] = o.slots.map((slot, k) => ({
    label: `part ${k}/${n} ${describeSlot(slot)}`,
    args: [
      ...o.args,
      o.partFlag ?? '--shard', `${k}/${n}`,
      '--out', dirs[k]!,
      '--device', slot.device,
      ...(slot.deviceId !== null ? ['--device-id', String(slot.deviceId)] : []),
      '--threads', String(threads),
      '--quiet',
      '--json',
    ],
  }));
  log(`extract: ${n} worker(s) (${o.slots.map(describeSlot).join(', ')}${cpuWorkers ? `, ${threads} CPU thread(s) each` : ''}), parts in ${path.dirname(dirs[0]!)}`);
  const progress = createProgress({ label: o.label ?? 'extract', total: o.plannedTokens, unit: 'tok', quiet: o.quiet, plain: o.plainProgress });
  // synchronous reads: the once-a-second poll never overlaps itself
  const poll = () => {
    let tokens = 0;
    let contexts = 0;
    for (const d of dirs) {
      try {
        const m = JSON.parse(readFileSync(path.join(d, 'manifest.json'), 'utf8')) as FeatureManifest;
        tokens += m.totals.tokens;
        contexts += m.totals.contexts;
      } catch {
        // not written yet, or being replaced
      }
    }
    if (tokens > o.plannedTokens) progress.setTotal(tokens);
    progress.update(tokens, { contexts, workers: n });
  };
  let results;
  try {
    results = await runWorkers(jobs, { log: (l) => progress.log(l), onTick: poll });
    poll();
  } finally {
    progress.stop();
  }
  const workers: WorkerPartSummary[] = results.map((r, k) => {
    let s: any;
    try {
      s = JSON.parse(r.stdout);
    } catch {
      throw new UserError(`${r.label}: finished without its JSON summary (stdout: ${JSON.stringify(r.stdout.slice(0, 200))})`);
    }
    return {
      part: `${k}/${n}`,
      device: describeSlot(o.slots[k]!),
      dir: dirs[k]!,
      contexts: { done: s.contexts.done, thisRun: s.contexts.thisRun },
      tokens: s.tokens,
      seconds: s.seconds,
      tokensPerSecond: s.tokensPerSecond,
      setupSeconds: s.setupSeconds,
    };
  });

  const merged = await mergeParts(o.out, dirs);
  const seconds = (Date.now() - t0) / 1000;
  const thisRun = workers.reduce((a, w) => a + w.tokens.thisRun, 0);
  log(`extract: merged ${n} part(s) into ${o.out}${merged.already ? ' (already merged: nothing changed)' : ''}: ${merged.m.totals.contexts} contexts, ${merged.m.totals.tokens} tokens`);
  return {
    store: o.out,
    parts: path.dirname(dirs[0]!),
    workers,
    alreadyMerged: merged.already,
    totals: merged.m.totals,
    complete: merged.m.complete,
    seconds,
    tokensPerSecond: thisRun / seconds,
  };
}

/** <out> must be absent, empty, or a store merged from these very parts (a rerun). */
function checkOut(out: string): void {
  if (!existsSync(out)) return;
  if (!statSync(out).isDirectory()) throw new UserError(`--out ${out}: is a file, not a folder`);
  const names = readdirSync(out).filter((x) => x !== 'shards');
  if (names.length && !names.includes('manifest.json')) throw new UserError(`--out ${out}: is not empty (${names.slice(0, 3).join(', ')}) and holds no feature store; choose an empty or new --out`);
}

/** Merges the parts into `out`, or confirms that `out` already is their merge. */
async function mergeParts(out: string, dirs: string[]): Promise<{ m: FeatureManifest; already: boolean }> {
  const existing = await readManifestIfAny(out);
  if (!existing) return { m: await mergeStores(out, dirs, { mode: 'link' }), already: false };
  const parts = await Promise.all(dirs.map((d) => readManifestIfAny(d)));
  const shas = new Set(parts.flatMap((p) => p?.shards.map((s) => s.sha256) ?? []));
  const same =
    existing.part === null &&
    parts.every((p) => p && p.identityHash === existing.identityHash && p.complete) &&
    existing.complete &&
    existing.shards.length === shas.size &&
    existing.shards.every((s) => shas.has(s.sha256));
  if (!same) throw fileError(path.join(out, 'manifest.json'), `already holds a feature store that is not the merge of ${path.dirname(dirs[0]!)}; choose a new --out (or delete it to merge again)`);
  return { m: existing, already: true };
}

/** Tokens a recipe can extract at most (its budget, bounded by its set sizes): the progress total. */
export function plannedTokens(recipe: Partial<RecipeOptions>): number {
  const r = resolveRecipeOptions(recipe);
  const setBound = r.tenKCount * r.maxDocTokens + r.catCount * (r.catMinTokens + r.maxDocTokens);
  return Math.min(Number.isFinite(r.maxTokens) ? r.maxTokens : Infinity, Number.isFinite(setBound) ? setBound : Infinity, 1e9);
}
