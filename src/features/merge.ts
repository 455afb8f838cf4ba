// Merging the stores of a `--shard i/n` extraction run on several hosts into one.
//
// How: copy (rsync/scp) every host's store directory to one machine, then
//   fastkvzip merge-features --out merged  part0 part1 …   (mergeStores(out, [part0, part1, …]))
// All inputs must have the same identity (model, recipe, extraction flags) and be complete.
// Shard files are hard-linked into out/shards (no extra disk space; the inputs stay valid and
// can be deleted afterwards), or copied when out is on another filesystem or mode is 'copy'.
// The merged manifest lists the shards in the canonical context order (their recipe index)
// and is written last, so an interrupted merge leaves no manifest and can simply be rerun.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { UserError, fileError } from '../util/errors.js';
import { tempPathFor } from '../util/atomic.js';
import { fsyncDir, identityDiff, manifestPath, normalizeShards, readManifest, readManifestIfAny, shardAbsPath, writeManifest } from './manifest.js';
import { isTempName, shardSizeProblem } from './store.js';
import { verifyStore } from './verify.js';
import { MANIFEST_FORMAT, MANIFEST_VERSION, SHARDS_DIR, describeForm, partSplitOf, storeFormOf, type FeatureManifest, type ShardEntry } from './types.js';

export interface MergeOptions {
  /** 'link' (default): hard links, falling back to copies across filesystems; 'copy': always copy */
  mode?: 'link' | 'copy';
  /** accept inputs whose extraction has not finished (the result is then marked incomplete) */
  allowIncomplete?: boolean;
  /** tool name/version recorded in the merged manifest (default: the first input's) */
  tool?: { name: string; version: string };
  /** check every input shard (sha256 and layout) before anything is written; a bad one fails the merge */
  verify?: boolean;
}

export async function mergeStores(outDir: string, inputDirs: string[], options: MergeOptions = {}): Promise<FeatureManifest> {
  if (inputDirs.length === 0) throw new UserError('merge: no input stores given');
  const outAbs = path.resolve(outDir);
  for (const dir of inputDirs) {
    if (path.resolve(dir) === outAbs) throw new UserError(`merge: the output ${outDir} is also an input`);
  }
  const outStat = await fs.stat(outDir).catch(() => null);
  if (outStat && !outStat.isDirectory()) throw new UserError(`--out ${outDir}: is a file, not a folder`);
  const inputs = await Promise.all(inputDirs.map(async (dir) => ({ dir, m: await readManifest(dir) })));

  const first = inputs[0]!;
  const firstForm = describeForm(storeFormOf(first.m));
  for (const { dir, m } of inputs) {
    const form = describeForm(storeFormOf(m));
    if (form !== firstForm) throw fileError(manifestPath(dir), `holds ${form} features, ${manifestPath(first.dir)} holds ${firstForm}; cannot merge stores of different forms`);
    if (m.identityHash !== first.m.identityHash) {
      throw fileError(manifestPath(dir), `differs from ${manifestPath(first.dir)}: ${identityDiff(first.m, m) ?? 'identity hash differs'}; cannot merge features of different runs`);
    }
    if (!m.complete && !options.allowIncomplete) throw fileError(manifestPath(dir), 'extraction is not complete (finish or resume it first)');
  }
  const parts = checkParts(inputs);

  // Union of the shard lists; a context present twice must be the very same file.
  const byId = new Map<string, { entry: ShardEntry; dir: string }>();
  const byIndex = new Map<number, string>();
  for (const { dir, m } of inputs) {
    for (const entry of m.shards) {
      const problem = await shardSizeProblem(dir, entry);
      if (problem) throw fileError(shardAbsPath(dir, entry), problem);
      const seen = byId.get(entry.contextId);
      if (seen) {
        if (seen.entry.sha256 !== entry.sha256) {
          throw fileError(shardAbsPath(dir, entry), `context ${entry.contextId} is also in ${seen.dir} with different content`);
        }
        continue;
      }
      const clash = byIndex.get(entry.index);
      if (clash !== undefined) throw fileError(shardAbsPath(dir, entry), `context index ${entry.index} is used by both ${clash} and ${entry.contextId}`);
      byId.set(entry.contextId, { entry, dir });
      byIndex.set(entry.index, entry.contextId);
    }
  }

  if (await readManifestIfAny(outDir)) throw fileError(manifestPath(outDir), 'already exists; merge into a new directory');
  if (options.verify) {
    for (const { dir } of inputs) {
      const report = await verifyStore(dir);
      if (!report.ok) {
        const more = report.problems.length > 1 ? ` (and ${report.problems.length - 1} more problem(s) in this store)` : '';
        throw new UserError(`${path.join(dir, report.problems[0]!)}${more}; nothing was merged`, 1);
      }
    }
  }
  const outShards = path.join(outDir, SHARDS_DIR);
  await fs.mkdir(outShards, { recursive: true });
  for (const name of await fs.readdir(outShards)) {
    if (isTempName(name)) await fs.rm(path.join(outShards, name), { force: true }); // left by an interrupted merge
  }
  for (const { entry, dir } of byId.values()) {
    await placeFile(shardAbsPath(dir, entry), shardAbsPath(outDir, entry), options.mode ?? 'link');
  }
  await fsyncDir(outShards);

  const { shards, totals } = normalizeShards([...byId.values()].map((v) => v.entry));
  const allComplete = inputs.every((i) => i.m.complete);
  const planned = inputs.map((i) => i.m.plannedContexts);
  const merged: FeatureManifest = {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    tool: options.tool ?? first.m.tool,
    model: first.m.model,
    recipe: first.m.recipe,
    extract: first.m.extract,
    hiddenDtype: first.m.hiddenDtype,
    identityHash: first.m.identityHash,
    part: null,
    plannedContexts: parts.allPresent && planned.every((p) => p !== null) ? planned.reduce((a, p) => a! + p!, 0) : null,
    shards,
    totals,
    createdAt: inputs.map((i) => i.m.createdAt).sort()[0]!,
    updatedAt: new Date().toISOString(),
    complete: allComplete && parts.allPresent,
  };
  await writeManifest(outDir, merged);
  return merged;
}

/** Inputs are either whole runs or distinct parts i/n of one run; reports whether all n are there. */
function checkParts(inputs: { dir: string; m: FeatureManifest }[]): { allPresent: boolean } {
  const withPart = inputs.filter((i) => i.m.part !== null);
  if (withPart.length === 0) return { allPresent: true };
  const count = withPart[0]!.m.part!.count;
  const split = partSplitOf(withPart[0]!.m.part!);
  const seen = new Map<number, string>();
  for (const { dir, m } of inputs) {
    if (!m.part) throw fileError(manifestPath(dir), 'is a whole run while other inputs are --shard parts; cannot merge them');
    if (m.part.count !== count) throw fileError(manifestPath(dir), `is part ${m.part.index + 1}/${m.part.count}, other inputs are parts of ${count}`);
    // parts of two different splits may miss contexts while each looks complete
    if (partSplitOf(m.part) !== split) throw fileError(manifestPath(dir), `is a part split by ${partSplitOf(m.part)}, ${manifestPath(withPart[0]!.dir)} one split by ${split} (an earlier fastkvzip); extract the parts again with one version`);
    const other = seen.get(m.part.index);
    if (other) throw fileError(manifestPath(dir), `is part ${m.part.index + 1}/${count}, and so is ${other}`);
    seen.set(m.part.index, dir);
  }
  return { allPresent: seen.size === count };
}

/** Hard link (or copy) `from` to `to` through a temp name, replacing what a crashed merge left. */
async function placeFile(from: string, to: string, mode: 'link' | 'copy'): Promise<void> {
  const tmp = tempPathFor(to);
  let linked = false;
  if (mode === 'link') {
    try {
      await fs.link(from, tmp);
      linked = true;
    } catch (e: any) {
      if (!['EXDEV', 'EPERM', 'ENOTSUP', 'EOPNOTSUPP'].includes(e?.code)) throw fileError(from, `cannot link into ${path.dirname(to)}: ${e?.message ?? e}`);
    }
  }
  if (!linked) {
    await fs.copyFile(from, tmp);
    const fh = await fs.open(tmp, 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
  await fs.rename(tmp, to);
}
