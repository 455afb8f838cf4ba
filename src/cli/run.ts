// `fastkvzip run`: extract -> train -> export for a preset, in one output folder, resumable.
import { Command, Option } from 'commander';
import * as path from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import { printJson, intArg } from './common.js';
import { loadConfig, listPresets, configKeys, parseOverride, type PipelineConfig } from '../config.js';
import { planRun, type RunPlan } from '../kvzip/plan.js';
import { fmtBytes } from '../features/index.js';
import { reuseFreedHostMemory } from '../util/host-malloc.js';
import { extract, type ExtractSummary } from '../kvzip/extract.js';
import { parseRopeOverride } from '../model/rope-override.js';
import { train, type TrainSummary } from '../gate/train.js';
import { exportTrained, type ExportResult } from '../export/index.js';
import { readDocList } from './extract.js';
import { formatTrainTable } from './train.js';
import { parseDevice, type Device } from '../runtime/session.js';
import { writeJsonAtomic } from '../util/atomic.js';

export interface RunOptions {
  config: PipelineConfig;
  out: string;
  device?: Device;
  threads?: number;
  quiet?: boolean;
  plainProgress?: boolean;
  /** replace another run's or foreign files in the train and export folders */
  overwrite?: boolean;
}

export interface RunSummary {
  config: string;
  out: string;
  seconds: number;
  stages: { extract: number; train: number; export: number };
  extract: Omit<ExtractSummary, 'recipe'>;
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

export async function runPipeline(o: RunOptions): Promise<RunSummary> {
  const c = o.config;
  const t0 = Date.now();
  const dev = (d?: string) => ({ device: o.device ?? parseDevice(d ?? 'cpu'), threads: o.threads });
  const ex = await extract({
    model: c.model,
    revision: c.revision,
    data: c.data,
    textField: c.textField,
    excludeDocs: c.excludeDocs ? readDocList(c.excludeDocs) : undefined,
    out: path.join(o.out, 'features'),
    device: { ...dev(c.extract.device), threads: o.threads ?? c.extract.threads },
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
  });
  const t1 = Date.now();
  const tr = await train({
    features: path.join(o.out, 'features'),
    out: path.join(o.out, 'train'),
    device: { ...dev(c.train.device), threads: o.threads ?? c.train.threads },
    steps: c.train.steps,
    batch: c.train.batch,
    lr: c.train.lr,
    momentum: c.train.momentum,
    seed: c.train.seed,
    rank: c.train.rank,
    sinks: c.train.sinks,
    evalEvery: 50,
    resume: true,
    memoryBudget: trainMemoryBudget(o.device ?? c.train.device),
    checkpointEvery: 60,
    overwrite: o.overwrite,
    quiet: o.quiet,
    plainProgress: o.plainProgress,
    label: '[2/3] train',
  });
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
  const { recipe: _recipe, ...extractSummary } = ex;
  const summary: RunSummary = {
    config: c.source,
    out: o.out,
    seconds: (t3 - t0) / 1000,
    stages: { extract: (t1 - t0) / 1000, train: (t2 - t1) / 1000, export: (t3 - t2) / 1000 },
    extract: extractSummary,
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
    .option('--threads <n>', 'CPU threads (0 = all cores)', (v) => intArg(v, '--threads'))
    .option('--dry-run', 'print the plan (contexts, tokens, disk, memory, time estimate) and stop; runs no model')
    .option('--quiet', 'no progress display')
    .option('--overwrite', 'replace another run\'s or foreign files in <out>/train and <out>/export')
    .option('--json', 'print the JSON summary on stdout')
    .action(async (o) => {
      const config = loadConfig(o.config, stageOverrides(o));
      const out = path.resolve(o.out ?? path.join('runs', config.name));
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
        });
        if (o.json) return printJson({ config: config.source, out, ...plan });
        process.stdout.write(formatPlan(config, out, plan));
        return;
      }
      // its extraction on CUDA returns GBs per context, as `extract --device cuda` does
      await reuseFreedHostMemory((o.device ?? config.extract.device) === 'cuda');
      const s = await runPipeline({ config, out, device: o.device, threads: o.threads, quiet: o.quiet, overwrite: o.overwrite });
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
