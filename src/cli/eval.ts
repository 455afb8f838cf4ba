// `fastkvzip eval`: KV kept vs quality for trained gates, the KVzip oracle, SnapKV, a recent
// window and random eviction, on held-out documents. Writes eval.json, eval.md, quality.svg.
import { Command, Option } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { addDeviceOptions, deviceFrom, floatArg, intArg, positiveInt, printJson } from './common.js';
import { readDocList } from './extract.js';
import { loadConfig, listPresets } from '../config.js';
import { parseRopeOverride } from '../model/rope-override.js';
import { evaluate, EVAL_CACHE_MODES, EVAL_DEFAULTS, type EvalCacheMode, type EvalOptions } from '../eval/evaluate.js';
import { EVICTION_LEVELS, PUBLIC_WINDOW, type EvictionLevel } from '../eval/eviction.js';
import { SCORER_NAMES, type ScorerName } from '../eval/scorers.js';
import { formatEvalTables, writeEvalOutputs } from '../eval/report.js';
import { UserError, UsageError } from '../util/errors.js';
import { claimOutputs, recordOutputs } from '../util/owned-files.js';

/** What eval writes into --out (writeEvalOutputs). */
const EVAL_FILES = ['eval.json', 'eval.md', 'quality.svg'];
import type { ComputeDType } from '../onnx/weights.js';

export function parseRatios(v: string): number[] {
  const out = v.split(',').map((x) => x.trim()).filter(Boolean).map((x) => floatArg(x, '--ratios'));
  if (out.length === 0) throw new UsageError('--ratios: give at least one ratio, e.g. 1,0.5,0.3');
  for (const r of out) if (!(r > 0 && r <= 1)) throw new UsageError(`--ratios: ${r} is not in (0, 1]`);
  return out;
}

export function parseScorers(v: string): ScorerName[] {
  const out = v.split(',').map((x) => x.trim()).filter(Boolean);
  for (const s of out) if (!SCORER_NAMES.includes(s as ScorerName)) throw new UsageError(`--scorers: unknown scorer "${s}" (choose from ${SCORER_NAMES.join(', ')})`);
  return out as ScorerName[];
}

export function evalCommand(): Command {
  const cmd = new Command('eval')
    .description('measure KV kept vs quality (reconstruction, retrieval, agreement) for trained gates against KVzip, SnapKV, a recent window and random eviction')
    .addOption(new Option('--config <name|file>', `take model, template, data, gates (runs/<name>) and held-out documents from a preset (${listPresets().join(', ')})`))
    .option('--model <dir|repo>', 'local HF model folder or hub repo id')
    .option('--revision <rev>', 'hub revision')
    .option('--gates <path>', 'gates.safetensors / .pt, or the output folder of `train` or `run`')
    .option('--data <spec>', 'corpus: sotu, hub:<org/name/path/file.parquet>, or a local parquet/jsonl/txt file or folder')
    .option('--text-field <name>', 'text column/field of parquet and jsonl corpora')
    .option('--docs <file>', 'JSON list of document ids to evaluate (an array, or {"heldout": [...]}); with --config: the preset\'s held-out documents')
    .option('--exclude-docs <file>', 'JSON list of document ids to leave out')
    .option('--contexts <n>', 'number of contexts', (v) => positiveInt(v, '--contexts'), EVAL_DEFAULTS.contexts)
    .option('--min-context-tokens <n>', 'skip shorter documents', (v) => positiveInt(v, '--min-context-tokens'), EVAL_DEFAULTS.minContextTokens)
    .option('--max-context-tokens <n>', 'cut documents to this many tokens (before the key-value pairs go in)', (v) => positiveInt(v, '--max-context-tokens'), EVAL_DEFAULTS.maxContextTokens)
    .addOption(new Option('--ratios <list>', 'kept fractions, comma-separated').argParser(parseRatios).default(EVAL_DEFAULTS.ratios, EVAL_DEFAULTS.ratios.join(',')))
    .addOption(new Option('--scorers <list>', `scorers, comma-separated (${SCORER_NAMES.join(',')})`).argParser(parseScorers).default(EVAL_DEFAULTS.scorers, EVAL_DEFAULTS.scorers.join(',')))
    .addOption(new Option('--level <level>', 'eviction budget: one global threshold (pair), per layer, or per head').choices(EVICTION_LEVELS).default(EVAL_DEFAULTS.level))
    .addOption(new Option('--cache <mode>', 'masked: simulate eviction with attention masks (nothing freed); compressed: run every compressed cell through the real compressed cache').choices(EVAL_CACHE_MODES).default('masked'))
    .option('--prefill-chunk <n>', 'prefill chunk (eviction after each)', (v) => positiveInt(v, '--prefill-chunk'), EVAL_DEFAULTS.prefillChunk)
    .option('--window <n>', 'always-kept recent tokens of long contexts', (v) => intArg(v, '--window'), PUBLIC_WINDOW.window)
    .option('--window-ratio <f>', 'always-kept fraction of short contexts', (v) => floatArg(v, '--window-ratio'), PUBLIC_WINDOW.windowRatio)
    .option('--short-context <n>', 'contexts shorter than this use --window-ratio', (v) => positiveInt(v, '--short-context'), PUBLIC_WINDOW.shortContext)
    .option('--score-chunk <n>', 'reconstruction chunk of the KVzip oracle (use the extract setting)', (v) => positiveInt(v, '--score-chunk'))
    .option('--recon-chunk <n>', 'reconstruction measure: tokens per repeat chunk', (v) => positiveInt(v, '--recon-chunk'), EVAL_DEFAULTS.reconChunk)
    .option('--recon-chunks <n>', 'reconstruction measure: evenly spaced chunks per context (0 = all)', (v) => intArg(v, '--recon-chunks'), EVAL_DEFAULTS.reconChunks)
    .option('--kv-pairs <n>', 'synthetic key-value pairs per context (0: no retrieval)', (v) => intArg(v, '--kv-pairs'), EVAL_DEFAULTS.kvPairs)
    .option('--max-new-tokens <n>', 'retrieval answer length limit', (v) => positiveInt(v, '--max-new-tokens'), EVAL_DEFAULTS.maxNewTokens)
    .option('--snap-window <n>', 'SnapKV observation window', (v) => positiveInt(v, '--snap-window'), EVAL_DEFAULTS.snapWindow)
    .option('--snap-kernel <n>', 'SnapKV pooling kernel (odd)', (v) => positiveInt(v, '--snap-kernel'), EVAL_DEFAULTS.snapKernel)
    .option('--template <name>', 'chat template from configs/templates.json')
    .option('--rope-override <spec>', "run the model with another RoPE: none, or yarn:<factor>:<original positions> (default: the preset's, else none)")
    .option('--seed <n>', 'seed (pairs, random scorer)', (v) => intArg(v, '--seed'), EVAL_DEFAULTS.seed)
    .option('--notes <file>', 'markdown appended to eval.md (findings)')
    .option('--out <dir>', 'output folder (eval.json, eval.md, quality.svg; default: runs/eval-<config or model folder>)')
    .option('--quiet', 'no progress display')
    .option('--overwrite', 'replace eval.json/eval.md/quality.svg in --out that fastkvzip did not write or that changed since')
    .option('--json', 'print the report JSON on stdout');
  addDeviceOptions(cmd);
  return cmd.action(async (o) => {
    const preset = o.config ? loadConfig(o.config) : undefined;
    const model = o.model ?? preset?.model;
    if (!model) throw new UsageError('--model is required (or --config <preset>)');
    const data = o.data ?? preset?.data ?? 'sotu';
    const docsFile: string | undefined = o.docs ?? preset?.excludeDocs;
    const scorers = o.scorers as ScorerName[];
    let gatesArg: string | undefined = o.gates;
    if (!gatesArg && preset && scorers.includes('gates')) {
      gatesArg = path.resolve('runs', preset.name);
      if (!existsSync(gatesArg)) throw new UserError(`${gatesArg}: no trained gates for preset "${preset.name}"; train them with \`fastkvzip run --config ${o.config}\` or pass --gates`);
    }
    if (o.snapKernel % 2 !== 1) throw new UsageError(`--snap-kernel must be odd (got ${o.snapKernel})`);
    if (!(o.windowRatio >= 0 && o.windowRatio <= 1)) throw new UsageError(`--window-ratio must be in [0, 1] (got ${o.windowRatio})`);
    const opts: EvalOptions = {
      model,
      revision: o.revision ?? preset?.revision,
      gates: gatesArg,
      data,
      textField: o.textField ?? preset?.textField,
      docs: docsFile ? readDocList(docsFile) : undefined,
      excludeDocs: o.excludeDocs ? readDocList(o.excludeDocs) : undefined,
      contexts: o.contexts,
      minContextTokens: o.minContextTokens,
      maxContextTokens: o.maxContextTokens,
      ratios: o.ratios,
      scorers,
      level: o.level as EvictionLevel,
      cache: o.cache as EvalCacheMode,
      prefillChunk: o.prefillChunk,
      window: { window: o.window, windowRatio: o.windowRatio, shortContext: o.shortContext },
      scoreChunk: o.scoreChunk ?? preset?.extract.scoreChunk ?? EVAL_DEFAULTS.scoreChunk,
      reconChunk: o.reconChunk,
      reconChunks: o.reconChunks,
      kvPairs: o.kvPairs,
      maxNewTokens: o.maxNewTokens,
      snapWindow: o.snapWindow,
      snapKernel: o.snapKernel,
      template: o.template ?? preset?.template,
      ropeOverride: parseRopeOverride(o.ropeOverride ?? preset?.extract.ropeOverride ?? 'none'),
      seed: o.seed,
      device: deviceFrom(o),
      dtype: o.dtype as ComputeDType | undefined,
      command: ['fastkvzip', ...process.argv.slice(2)].join(' '),
      quiet: o.quiet,
    };
    const notes = o.notes ? readNotes(o.notes) : '';
    const out: string = o.out ?? path.join('runs', `eval-${preset?.name ?? path.basename(String(model).replace(/[\\/]+$/, ''))}`);
    // --out is checked before the (long) evaluation, not after it
    await claimOutputs(out, EVAL_FILES, { overwrite: o.overwrite, by: 'eval' });
    const report = await evaluate(opts);
    const files = await writeEvalOutputs(out, report, notes);
    await recordOutputs(out, EVAL_FILES, 'eval');
    if (o.json) printJson(report);
    else process.stdout.write(`${formatEvalTables(report)}\n\nwrote ${files.map((f) => path.relative(process.cwd(), path.resolve(f)) || '.').join(', ')} in ${report.seconds.toFixed(1)} s\n`);
  });
}

function readNotes(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new UserError(`${file}: cannot read the notes (${(e as Error).message})`);
  }
}
