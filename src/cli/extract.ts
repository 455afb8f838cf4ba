// `fastkvzip extract`: corpus -> KVzip scores + attention inputs -> Arrow feature store.
import { Command, Option } from 'commander';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { addDeviceOptions, deviceFrom, floatArg, intArg, positiveInt, printJson } from './common.js';
import { extract, EXTRACT_DEFAULTS } from '../kvzip/extract.js';
import { DEFAULT_RECIPE, DEFAULT_HUB_DATA, type RecipeOptions } from '../data/index.js';
import { UserError, UsageError } from '../util/errors.js';
import { reuseFreedHostMemory } from '../util/host-malloc.js';
import type { ComputeDType } from '../onnx/weights.js';
import type { AttnInputDtype, PartInfo } from '../features/index.js';
import { extractWithWorkers, plannedTokens, resolveAutoShard, SHARD_COUNT_ENV } from '../scale/index.js';
import { dropOptions, typedArgs, workerSlotsFrom } from './worker-args.js';
import { parseRopeOverride, QWEN3_PUBLIC_YARN } from '../model/rope-override.js';

/** Document ids from a JSON file: an array, or an object with a "heldout" / "documents" array. */
export function readDocList(file: string): string[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UserError(`${file}: cannot read a JSON list of document ids (${(e as Error).message})`);
  }
  const list = Array.isArray(raw) ? raw : ((raw as { heldout?: unknown }).heldout ?? (raw as { documents?: unknown }).documents);
  if (!Array.isArray(list) || !list.every((x) => typeof x === 'string')) throw new UserError(`${file}: expected an array of document ids (or {"heldout": [...]})`);
  return list;
}

export function parseShard(v: string): PartInfo | 'auto' {
  if (v === 'auto') return 'auto';
  const m = /^(\d+)\/(\d+)$/.exec(v);
  if (!m) throw new UsageError(`--shard must look like i/n, e.g. 0/4, or be "auto" (got "${v}")`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1 || index >= count) throw new UsageError(`--shard ${v}: need 0 <= i < n`);
  return { index, count, source: { scheduler: 'flag', vars: { '--shard': v } } };
}

const countArg = (name: string) => (v: string) => (v === 'all' ? Infinity : intArg(v, name));

export function addRecipeOptions(cmd: Command): Command {
  return cmd
    .option('--data <spec>', 'corpus: sotu, hub:<org/name/path/file.parquet>, or a local parquet/jsonl/txt file or folder', DEFAULT_HUB_DATA)
    .option('--text-field <name>', 'text column/field of parquet and jsonl corpora', 'text')
    .option('--exclude-docs <file>', 'JSON file listing document ids to leave out (an array, or {"heldout": [...]})')
    .option('--max-tokens <n>', 'total context-token budget (contexts are whole documents: the last one may take the total past it)', countArg('--max-tokens'), DEFAULT_RECIPE.maxTokens)
    .option('--min-doc-tokens <n>', 'keep documents with at least this many tokens', (v) => positiveInt(v, '--min-doc-tokens'), DEFAULT_RECIPE.minDocTokens)
    .option('--max-doc-tokens <n>', '... and fewer than this many', (v) => positiveInt(v, '--max-doc-tokens'), DEFAULT_RECIPE.maxDocTokens)
    .option('--ten-k-count <n|all>', 'contexts of the one-document set', countArg('--ten-k-count'), DEFAULT_RECIPE.tenKCount)
    .option('--cat-count <n|all>', 'contexts of the concatenated set', countArg('--cat-count'), DEFAULT_RECIPE.catCount)
    .option('--cat-min-tokens <n>', 'tokens per concatenated context', (v) => positiveInt(v, '--cat-min-tokens'), DEFAULT_RECIPE.catMinTokens)
    .option('--cat-after-ten-k', 'start the concatenated set after the documents of the one-document set (the public code re-uses them)', false)
    .option('--public-cat-quirks', 'reproduce the public cat loop exactly (leading separator, dropped document)', false);
}

export function recipeFrom(o: Record<string, unknown>): Partial<RecipeOptions> {
  return {
    maxTokens: o.maxTokens as number,
    minDocTokens: o.minDocTokens as number,
    maxDocTokens: o.maxDocTokens as number,
    tenKCount: o.tenKCount as number,
    catCount: o.catCount as number,
    catMinTokens: o.catMinTokens as number,
    catAfterTenK: o.catAfterTenK as boolean,
    publicCatQuirks: o.publicCatQuirks as boolean,
  };
}

export function extractCommand(): Command {
  const cmd = new Command('extract')
    .description('run the frozen model over a corpus and store attention inputs + exact KVzip scores (resumable)')
    .requiredOption('--model <dir|repo>', 'local HF model folder or hub repo id')
    .option('--revision <rev>', 'hub revision (branch, tag or commit)')
    .requiredOption('--out <dir>', 'feature store directory');
  addRecipeOptions(cmd)
    .option('--prefill-chunk <n>', 'longest prefill chunk', (v) => positiveInt(v, '--prefill-chunk'), EXTRACT_DEFAULTS.prefillChunk)
    .option('--score-chunk <n>', 'reconstruction chunk', (v) => positiveInt(v, '--score-chunk'), EXTRACT_DEFAULTS.scoreChunk)
    .option('--template <name>', 'chat template from configs/templates.json (default: chosen from the model)')
    .option('--rope-override <spec>', `run the model with another RoPE: none, or yarn:<factor>:<original positions> (${QWEN3_PUBLIC_YARN} is the public extraction's Qwen3 setup: max positions 131,072); recorded in the store`, 'none')
    .option('--allow-long-contexts', "score contexts needing more positions than the model was trained on (refused by default: RoPE extrapolates and the scores are not the model's)", false)
    .addOption(
      new Option('--hidden-dtype <dtype>', 'stored attention-input dtype (default: the model dtype, exact public parity); int8 / float8e4m3: 8-bit codes with fp32 scales, half the size (quantised in the KVzip graph; FASTKVZIP_QUANT=host: by the shard writers, same bytes)').choices(['float16', 'bfloat16', 'int8', 'float8e4m3']),
    )
    .option('--quant-block <n>', '8-bit dtypes: channels per scale (default: the hidden size, one scale per token)', (v) => positiveInt(v, '--quant-block'))
    .option('--keep-fraction <p>', "store this seeded uniform fraction of each context's token positions (the held-out 1 % always kept; default 1)", (v) => floatArg(v, '--keep-fraction'))
    .option('--keep-seed <n>', 'seed of --keep-fraction', (v) => intArg(v, '--keep-seed'))
    .option('--shard <i/n|auto>', `extract part i of n, the contexts split so that every part gets about the same tokens (merge the stores afterwards); auto: i and n from the scheduler (Slurm job array, Kubernetes Indexed Job with --shard-count or ${SHARD_COUNT_ENV}, RANK/WORLD_SIZE)`, parseShard)
    .option('--shard-count <n>', 'with --shard auto: the part count (the completions of a Kubernetes Indexed Job; elsewhere a check)', (v) => positiveInt(v, '--shard-count'))
    .option('--gpus <all|i,j,...>', 'one worker process per listed GPU (a GPU listed twice runs two), each extracting its part into <out>.parts/, merged into --out at the end; all: the GPUs of CUDA_VISIBLE_DEVICES or nvidia-smi -L')
    .option('--workers <n>', 'n worker processes on --device (the CPU: threads split among them), parts merged as with --gpus', (v) => positiveInt(v, '--workers'))
    .option('--no-resume', 'refuse to continue an existing store')
    .option('--ignore-disk-check', 'start even when the disk looks too small')
    .option('--writers <n>', 'shards written in parallel in the background (each holds one context\'s features in RAM; default: up to 3 by CPU count)', (v) => positiveInt(v, '--writers'))
    .option('--runners <n>', 'ONNX Runtime sessions running contexts at once, each in a worker thread with its own copy of the weights on the device (2 overlaps output copies with device work; default 1)', (v) => positiveInt(v, '--runners'))
    .option('--quiet', 'no progress display')
    .option('--json', 'print a JSON summary on stdout');
  addDeviceOptions(cmd);
  return cmd.action(async (o, self: Command) => {
    const slots = workerSlotsFrom(o, self);
    if (slots) {
      const summary = await extractWithWorkers({
        args: ['extract', ...dropOptions(typedArgs(self), self, WORKER_SET_FLAGS)],
        slots,
        out: o.out,
        threads: o.threads,
        plannedTokens: plannedTokens(recipeFrom(o)),
        quiet: o.quiet,
      });
      if (o.json) printJson(summary);
      else process.stdout.write(`extracted with ${summary.workers.length} workers: ${summary.totals.contexts} contexts, ${summary.totals.tokens} tokens in ${summary.seconds.toFixed(1)} s (${Math.round(summary.tokensPerSecond)} tok/s this run); store: ${path.relative(process.cwd(), summary.store) || '.'}, parts: ${path.relative(process.cwd(), summary.parts)}\n`);
      return;
    }
    if (o.shardCount !== undefined && o.shard !== 'auto') throw new UsageError('--shard-count goes with --shard auto');
    const shard: PartInfo | undefined = o.shard === 'auto' ? resolveAutoShard(process.env, o.shardCount) : o.shard;
    if (o.shard === 'auto' && !o.quiet) process.stderr.write(`extract: part ${shard!.index}/${shard!.count} from ${shard!.source!.scheduler} (${Object.entries(shard!.source!.vars).map(([k, v]) => `${k}=${v}`).join(', ')})\n`);
    // on CUDA every context returns GBs of attention inputs: re-run with glibc keeping freed blocks
    await reuseFreedHostMemory(o.device === 'cuda');
    const summary = await extract({
      model: o.model,
      revision: o.revision,
      data: o.data,
      textField: o.textField,
      excludeDocs: o.excludeDocs ? readDocList(o.excludeDocs) : undefined,
      out: o.out,
      device: deviceFrom(o),
      dtype: o.dtype as ComputeDType | undefined,
      hiddenDtype: o.hiddenDtype as AttnInputDtype | undefined,
      quantBlock: o.quantBlock,
      keepFraction: o.keepFraction,
      keepSeed: o.keepSeed,
      recipe: recipeFrom(o),
      prefillChunk: o.prefillChunk,
      scoreChunk: o.scoreChunk,
      template: o.template,
      ropeOverride: parseRopeOverride(o.ropeOverride),
      allowLongContexts: o.allowLongContexts,
      shard,
      resume: o.resume,
      ignoreDisk: o.ignoreDiskCheck,
      writers: o.writers,
      runners: o.runners,
      quiet: o.quiet,
    });
    if (o.json) printJson({ ...summary, recipe: { ...summary.recipe, contexts: undefined } });
    else process.stdout.write(`extracted ${summary.contexts.thisRun} context(s), ${summary.tokens.thisRun} tokens in ${summary.seconds.toFixed(1)} s (${Math.round(summary.tokensPerSecond)} tok/s; runs ${summary.time.run.toFixed(1)} s, waiting for ${summary.time.writers} shard writer(s) ${summary.time.waitForWriter.toFixed(1)} s); store: ${path.relative(process.cwd(), summary.store) || '.'} (${summary.contexts.done} contexts, ${summary.tokens.total} tokens)\n`);
  });
}

/** Flags the worker processes get set for them (everything else is passed on as typed). */
const WORKER_SET_FLAGS = ['--gpus', '--workers', '--out', '--json', '--quiet', '--device', '--device-id', '--threads', '--shard', '--shard-count'];
