// `fastkvzip run`: extract -> train -> export for a preset, in one output folder, resumable.
import { Command, Option } from 'commander';
import * as path from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import { printJson, intArg, positiveInt } from './common.js';
import { loadConfig, listPresets, configKeys, parseOverride, type PipelineConfig } from '../config.js';
import { planRun, type RunPlan } from '../kvzip/plan.js';
import { fmtBytes } from '../features/index.js';
import { reuseFreedHostMemory } from '../util/host-malloc.js';
import { extract, type ExtractOptions, type ExtractSummary } from '../kvzip/extract.js';
import { parseRopeOverride } from '../model/rope-override.js';
import { train, type TrainSummary } from '../gate/train.js';
import { TRAIN_MARK } from '../gate/train-out.js';
import { exportTrained, type ExportResult } from '../export/index.js';
import { readDocList } from './extract.js';
import { formatTrainTable } from './train.js';
import { parseDevice, type Device } from '../runtime/session.js';
import { writeJsonAtomic } from '../util/atomic.js';
import { UsageError } from '../util/errors.js';
import type { PartInfo } from '../features/index.js';
import { extractWithWorkers, partDirs, plannedTokens, trainWithWorkers, workerSlots, type ExtractWorkersSummary, type WorkerSlot } from '../scale/index.js';
import { dropOptions, typedArgs, workerSlotsFrom } from './worker-args.js';

export interface RunOptions {
  config: PipelineConfig;
  out: string;
  device?: Device;
  threads?: number;
  quiet?: boolean;
  plainProgress?: boolean;
  /** replace another run's or foreign files in the train and export folders */
  overwrite?: boolean;
  /** CUDA device index (one-process stages on cuda) */
  deviceId?: number;
  /** worker processes for the extract and train stages (--gpus / --workers); absent: one process each */
  workers?: RunWorkers;
}

/** The worker processes of `run --gpus … | --workers n`. */
export interface RunWorkers {
  /** the `fastkvzip run` command line each extract worker gets (less the flags set for each worker) */
  extractArgs: string[];
  extract: WorkerSlot[];
  train: WorkerSlot[];
}

/** One process's extraction, or the merge of the workers' parts (its counts in the same fields). */
export type RunExtractSummary =
  | Omit<ExtractSummary, 'recipe'>
  | (ExtractWorkersSummary & { contexts: { done: number; thisRun: number }; tokens: { total: number; thisRun: number } });

/** Held-out metric interval and checkpoint period of the run's training (seconds). */
const RUN_EVAL_EVERY = 50;
const RUN_CHECKPOINT_EVERY_S = 60;

export interface RunSummary {
  config: string;
  out: string;
  seconds: number;
  stages: { extract: number; train: number; export: number };
  extract: RunExtractSummary;
  train: TrainSummary;
  exports: ExportResult[];
  /** set when this call found the pipeline finished and redid nothing */
  unchanged?: boolean;
}

function readPreviousRun(file: string): RunSummary | null {
  if (!existsSync(file)) return null;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as RunSummary;
  } catch {
    return null;
  }
}

/** The extract options of a preset (the one-process stage, and each worker of `run --workers`). */
function extractOptions(c: PipelineConfig, o: Pick<RunOptions, 'device' | 'deviceId' | 'threads' | 'quiet' | 'plainProgress'>, out: string): ExtractOptions {
  return {
    model: c.model,
    revision: c.revision,
    data: c.data,
    textField: c.textField,
    excludeDocs: c.excludeDocs ? readDocList(c.excludeDocs) : undefined,
    out,
    device: { device: o.device ?? parseDevice(c.extract.device ?? 'cpu'), deviceId: o.deviceId, threads: o.threads ?? c.extract.threads },
    hiddenDtype: c.extract.hiddenDtype,
    quantBlock: c.extract.quantBlock,
    keepFraction: c.extract.keepFraction,
    keepSeed: c.extract.keepSeed,
    recipe: c.recipe,
    prefillChunk: c.extract.prefillChunk,
    scoreChunk: c.extract.scoreChunk,
    template: c.template,
    ropeOverride: parseRopeOverride(c.extract.ropeOverride ?? 'none', `${c.source}: extract.ropeOverride`),
    allowLongContexts: c.extract.allowLongContexts,
    resume: true,
    quiet: o.quiet,
    plainProgress: o.plainProgress,
    label: '[1/3] extract',
  };
}

/** The train command line of a preset, for the workers of `run --workers` (what the one-process stage passes train()). */
function trainArgs(c: PipelineConfig, features: string, device: string | undefined): string[] {
  const t = c.train;
  return [
    'train', '--features', features,
    '--steps', String(t.steps), '--batch', String(t.batch), '--lr', String(t.lr), '--momentum', String(t.momentum),
    '--seed', String(t.seed), '--rank', String(t.rank), '--sinks', String(t.sinks),
    '--eval-every', String(RUN_EVAL_EVERY), '--checkpoint-every', String(RUN_CHECKPOINT_EVERY_S),
    '--memory-gb', String(trainMemoryBudget(device) / 2 ** 30),
  ];
}

async function extractStage(o: RunOptions, features: string): Promise<RunExtractSummary> {
  const c = o.config;
  const w = o.workers;
  // a store one process started is continued by one process (its contexts are not split into parts)
  const startedWhole = existsSync(path.join(features, 'manifest.json')) && !existsSync(path.dirname(partDirs(features, 1)[0]!));
  if (!w || startedWhole) {
    if (w && !o.quiet) process.stderr.write(`[1/3] extract: ${features} was started by one process; continuing it in one process (delete it to extract with ${w.extract.length} workers)\n`);
    const { recipe: _recipe, ...ex } = await extract(extractOptions(c, o, features));
    return ex;
  }
  const s = await extractWithWorkers({
    args: w.extractArgs,
    slots: w.extract,
    out: features,
    threads: o.threads ?? c.extract.threads ?? 0,
    plannedTokens: plannedTokens(c.recipe),
    partFlag: '--extract-part',
    label: '[1/3] extract',
    quiet: o.quiet,
    plainProgress: o.plainProgress,
  });
  const thisRun = (pick: (p: ExtractWorkersSummary['workers'][number]) => number) => s.workers.reduce((a, p) => a + pick(p), 0);
  return { ...s, contexts: { done: s.totals.contexts, thisRun: thisRun((p) => p.contexts.thisRun) }, tokens: { total: s.totals.tokens, thisRun: thisRun((p) => p.tokens.thisRun) } };
}

async function trainStage(o: RunOptions, features: string): Promise<TrainSummary> {
  const c = o.config;
  const out = path.join(o.out, 'train');
  const device = o.device ?? c.train.device;
  // a training one process started (or finished) is continued by one process, unless --overwrite replaces it
  const startedWhole = !o.overwrite && existsSync(path.join(out, TRAIN_MARK)) && !existsSync(`${path.resolve(out)}.parts`);
  if (o.workers && startedWhole && !o.quiet) process.stderr.write(`[2/3] train: ${out} holds a training one process started; continuing it in one process (--overwrite to train with ${o.workers.train.length} workers)\n`);
  if (o.workers && !startedWhole) {
    return trainWithWorkers({
      args: trainArgs(c, features, device),
      slots: o.workers.train,
      features,
      out,
      threads: o.threads ?? c.train.threads ?? 0,
      steps: c.train.steps,
      evalEvery: RUN_EVAL_EVERY,
      overwrite: o.overwrite,
      quiet: o.quiet,
      plainProgress: o.plainProgress,
      label: '[2/3] train',
    });
  }
  return train({
    features,
    out,
    device: { device: o.device ?? parseDevice(c.train.device ?? 'cpu'), deviceId: o.deviceId, threads: o.threads ?? c.train.threads },
    steps: c.train.steps,
    batch: c.train.batch,
    lr: c.train.lr,
    momentum: c.train.momentum,
    seed: c.train.seed,
    rank: c.train.rank,
    sinks: c.train.sinks,
    evalEvery: RUN_EVAL_EVERY,
    resume: true,
    memoryBudget: trainMemoryBudget(device),
    checkpointEvery: RUN_CHECKPOINT_EVERY_S,
    overwrite: o.overwrite,
    quiet: o.quiet,
    plainProgress: o.plainProgress,
    label: '[2/3] train',
  });
}

export async function runPipeline(o: RunOptions): Promise<RunSummary> {
  const c = o.config;
  const t0 = Date.now();
  const features = path.join(o.out, 'features');
  const ex = await extractStage(o, features);
  const t1 = Date.now();
  const tr = await trainStage(o, features);
  const t2 = Date.now();
  const exports: ExportResult[] = [];
  for (const format of c.export.formats) {
    exports.push(await exportTrained({ gates: path.join(o.out, 'train'), format, out: path.join(o.out, 'export'), overwrite: o.overwrite, license: c.export.license }));
  }
  const t3 = Date.now();
  const previous = readPreviousRun(path.join(o.out, 'run.json'));
  if (previous && ex.contexts.thisRun === 0 && previous.train?.identity === tr.identity) {
    // a re-run of a finished pipeline: keep the timings and results of the run that did the work
    const summary: RunSummary = { ...previous, exports, unchanged: true };
    await writeJsonAtomic(path.join(o.out, 'run.json'), { ...summary, unchanged: undefined });
    return summary;
  }
  const summary: RunSummary = {
    config: c.source,
    out: o.out,
    seconds: (t3 - t0) / 1000,
    stages: { extract: (t1 - t0) / 1000, train: (t2 - t1) / 1000, export: (t3 - t2) / 1000 },
    extract: ex,
    train: tr,
    exports,
  };
  await writeJsonAtomic(path.join(o.out, 'run.json'), summary);
  return summary;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** The run's stage flags, as --set overrides (one vocabulary with extract/train/export). */
function stageOverrides(o: Record<string, unknown>): { key: string; value: unknown }[] {
  const sets = ((o.set as string[] | undefined) ?? []).map(parseOverride);
  const flag = (name: string, key: string) => (o[name] !== undefined ? [parseOverride(`${key}=${String(o[name])}`)] : []);
  return [
    ...flag('model', 'model'),
    ...flag('revision', 'revision'),
    ...flag('data', 'data'),
    ...flag('template', 'template'),
    ...flag('maxTokens', 'recipe.maxTokens'),
    ...flag('steps', 'train.steps'),
    ...flag('formats', 'export.formats'),
    ...flag('license', 'export.license'),
    ...sets, // --set last: it wins
  ];
}

export function runCommand(): Command {
  return new Command('run')
    .description('extract -> train -> export in one command (resumable); the default preset runs offline on a tiny real model in minutes')
    .addOption(new Option('--config <name|file>', `preset from configs/ (${listPresets().join(', ')}) or a JSON file`).default('default'))
    .option('--out <dir>', 'output folder (default: runs/<config>)')
    .option('--model <dir|repo>', 'override the preset\'s model (= --set model=...)')
    .option('--revision <rev>', 'override the hub revision')
    .option('--data <spec>', 'override the corpus (= --set data=...)')
    .option('--template <name>', 'override the chat template')
    .option('--max-tokens <n>', 'override the context-token budget (= --set recipe.maxTokens=...)')
    .option('--steps <n>', 'override the training steps (= --set train.steps=...)')
    .option('--formats <list>', 'override the export formats, comma-separated: pt,safetensors,onnx')
    .option('--license <id>', 'license for the model card (= --set export.license=...)')
    .option('--set <key=value>', `override any config key, repeatable, e.g. --set train.steps=50 (keys: ${configKeys().join(', ')})`, collect)
    .addOption(new Option('--device <device>', 'execution provider for every stage (default: the preset\'s)').choices(['cpu', 'cuda', 'webgpu']))
    .option('--device-id <n>', 'GPU index for cuda (default 0)', (v) => intArg(v, '--device-id'))
    .option('--threads <n>', 'CPU threads (0 = all cores; with workers: per worker, default the cores divided among them)', (v) => intArg(v, '--threads'))
    .option('--gpus <all|i,j,...>', 'extract and train with one worker process per listed GPU (as `extract --gpus` / `train --gpus`): parts in <out>/features.parts, layer slices in <out>/train.parts; all: the GPUs of CUDA_VISIBLE_DEVICES or nvidia-smi -L')
    .option('--workers <n>', 'extract and train with n worker processes on each stage\'s device (the CPU: threads split among them), as with --gpus', (v) => positiveInt(v, '--workers'))
    .addOption(new Option('--extract-part <k/n>', 'internal: a worker of --gpus/--workers extracting part k/n into --out').argParser(parseExtractPart).hideHelp())
    .option('--dry-run', 'print the plan (contexts, tokens, disk, memory, time estimate) and stop; runs no model')
    .option('--quiet', 'no progress display')
    .option('--overwrite', 'replace another run\'s or foreign files in <out>/train and <out>/export')
    .option('--json', 'print the JSON summary on stdout')
    .action(async (o, self: Command) => {
      const config = loadConfig(o.config, stageOverrides(o));
      const out = path.resolve(o.out ?? path.join('runs', config.name));
      const workers = runWorkersFrom(o, self, config);
      if (o.extractPart) {
        // a worker of `run --gpus/--workers`: this preset's extraction, part k/n only, into --out
        await reuseFreedHostMemory((o.device ?? config.extract.device) === 'cuda');
        const s = await extract({ ...extractOptions(config, o, out), shard: o.extractPart as PartInfo });
        if (o.json) printJson({ ...s, recipe: { ...s.recipe, contexts: undefined } });
        return;
      }
      if (o.dryRun) {
        const device = (d?: string) => (o.device ?? d ?? 'cpu') as 'cpu' | 'cuda' | 'webgpu';
        const plan = await planRun({
          model: config.model,
          revision: config.revision,
          template: config.template,
          data: config.data,
          textField: config.textField,
          excludeDocs: config.excludeDocs ? readDocList(config.excludeDocs) : undefined,
          recipe: config.recipe,
          hiddenDtype: config.extract.hiddenDtype,
          extractDevice: device(config.extract.device),
          trainDevice: device(config.train.device),
          steps: config.train.steps,
          batch: config.train.batch,
          memoryBudget: trainMemoryBudget(o.device ?? config.train.device),
          out,
          parts: workers?.extract.length,
        });
        if (o.json) return printJson({ config: config.source, out, ...plan });
        process.stdout.write(formatPlan(config, out, plan));
        if (workers) process.stdout.write(`workers: ${workers.extract.length} for extraction${plan.partTokens ? ` (parts of ${plan.partTokens.map((t) => t.toLocaleString('en-US')).join(' / ')} tokens)` : ''}, ${workers.train.length} for training; the times above are for one process\n`);
        return;
      }
      // its extraction on CUDA returns GBs per context, as `extract --device cuda` does (workers see to their own)
      if (!workers) await reuseFreedHostMemory((o.device ?? config.extract.device) === 'cuda');
      const s = await runPipeline({ config, out, device: o.device, deviceId: o.deviceId, threads: o.threads, quiet: o.quiet, overwrite: o.overwrite, workers: workers ?? undefined });
      if (o.json) return printJson(s);
      const rel = (p: string) => path.relative(process.cwd(), p) || '.';
      const files = s.exports.flatMap((e) => e.files).filter((f) => !f.endsWith('README.md'));
      process.stdout.write(
        [
          s.unchanged ? `already complete in ${rel(out)}: nothing was redone (the numbers are those of the run that did the work)` : '',
          `done in ${s.seconds.toFixed(1)} s (extract ${s.stages.extract.toFixed(1)} s, train ${s.stages.train.toFixed(1)} s, export ${s.stages.export.toFixed(1)} s)`,
          `features: ${rel(path.join(out, 'features'))} (${s.extract.contexts.done} contexts, ${s.extract.tokens.total} tokens)`,
          formatTrainTable(s.train, rel),
          `exported: ${files.map(rel).join(', ')}; model card: ${rel(path.join(out, 'export', 'README.md'))}`,
          `curves: ${rel(path.join(out, 'train', 'loss.svg'))}, ${rel(path.join(out, 'train', 'recall.svg'))}; summary: ${rel(path.join(out, 'run.json'))}`,
          '',
        ]
          .filter((l, i) => i > 0 || l)
          .join('\n'),
      );
    });
}

/** Flags each extract worker of `run` gets set for it (everything else is passed on as typed). */
const RUN_WORKER_SET_FLAGS = ['--gpus', '--workers', '--out', '--json', '--quiet', '--device', '--device-id', '--threads', '--extract-part', '--overwrite', '--dry-run'];

function parseExtractPart(v: string): PartInfo {
  const m = /^(\d+)\/(\d+)$/.exec(v);
  if (!m || Number(m[2]) < 1 || Number(m[1]) >= Number(m[2])) throw new UsageError(`--extract-part must look like k/n with 0 <= k < n (got "${v}")`);
  return { index: Number(m[1]), count: Number(m[2]), source: { scheduler: 'flag', vars: { '--extract-part': v } } };
}

/** The workers of `run --gpus … | --workers n`: GPUs for both stages, or n processes on each stage's device. */
function runWorkersFrom(o: Record<string, any>, cmd: Command, c: PipelineConfig): RunWorkers | null {
  const probe = workerSlotsFrom({ gpus: o.gpus, workers: o.workers, shard: o.extractPart, device: o.device ?? 'cuda', deviceId: o.deviceId ?? 0 }, cmd, '--extract-part');
  if (!probe) return null;
  const extractArgs = ['run', ...dropOptions(typedArgs(cmd), cmd, RUN_WORKER_SET_FLAGS)];
  if (o.gpus !== undefined) return { extractArgs, extract: probe, train: probe };
  const slots = (device: string | undefined) => workerSlots(o.workers, o.device ?? device ?? 'cpu', o.deviceId ?? 0);
  return { extractArgs, extract: slots(c.extract.device), train: slots(c.train.device) };
}

/** Bytes of features one training group may hold: 8 GiB on CPU, 40 GiB on GPUs. */
export function trainMemoryBudget(device: string | undefined): number {
  return ((device ?? 'cpu') === 'cpu' ? 8 : 40) * 2 ** 30;
}

function formatPlan(c: PipelineConfig, out: string, p: RunPlan): string {
  const dur = (s: number) => (s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`);
  const m = p.model;
  return [
    `plan for ${c.name} (${c.source}) -> ${path.relative(process.cwd(), out) || '.'}`,
    `model: ${m.id} (${(m.params / 1e6).toFixed(1)} M parameters, ${m.layers} layers, ${m.scoredLayers} scored, D ${m.D}, ${m.H} KV heads, G ${m.G}, ${m.dtype})`,
    `data: ${c.data}; ${p.contexts} contexts, ${p.tokens.toLocaleString('en-US')} tokens (largest ${p.largestContext.toLocaleString('en-US')})${p.alreadyExtracted ? `; ${p.alreadyExtracted} already extracted` : ''}`,
    `disk: feature store ≈ ${fmtBytes(p.disk.storeBytes)}`,
    `memory: extraction holds ≈ ${fmtBytes(p.memory.extractHostBytes)} of features per context in host RAM (plus the model); training ≈ ${fmtBytes(p.memory.trainBytes)} per group, ${p.memory.trainGroups} group(s)`,
    `train: ${c.train.steps} steps x ${c.train.batch} tokens, lr ${c.train.lr}, rank ${c.train.rank}, ${c.train.sinks} sinks; export: ${c.export.formats.join(', ')}`,
    `time: extraction ≈ ${dur(p.time.extractSeconds)}, training ≈ ${dur(p.time.trainSeconds)} (${p.time.source})`,
    '',
  ].join('\n');
}
