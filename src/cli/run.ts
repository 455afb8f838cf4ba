// `fastkvzip run`: extract -> train -> export for a preset, in one output folder, resumable.
import { Command, Option } from 'commander';
import * as path from 'node:path';
import { printJson, intArg } from './common.js';
import { loadConfig, listPresets, type PipelineConfig } from '../config.js';
import { reuseFreedHostMemory } from '../util/host-malloc.js';
import { extract, type ExtractSummary } from '../kvzip/extract.js';
import { train, type TrainSummary } from '../gate/train.js';
import { exportTrained, type ExportResult } from './export.js';
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
}

export interface RunSummary {
  config: string;
  out: string;
  seconds: number;
  stages: { extract: number; train: number; export: number };
  extract: Omit<ExtractSummary, 'recipe'>;
  train: TrainSummary;
  exports: ExportResult[];
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
    memoryBudget: ((o.device ?? c.train.device ?? 'cpu') === 'cpu' ? 8 : 40) * 2 ** 30,
    checkpointEvery: 60,
    quiet: o.quiet,
    plainProgress: o.plainProgress,
    label: '[2/3] train',
  });
  const t2 = Date.now();
  const exports: ExportResult[] = [];
  for (const format of c.export.formats) {
    exports.push(await exportTrained({ gates: path.join(o.out, 'train'), format, out: path.join(o.out, 'export') }));
  }
  const t3 = Date.now();
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

export function runCommand(): Command {
  return new Command('run')
    .description('extract -> train -> export in one command (resumable); the default preset runs offline on a tiny real model in minutes')
    .addOption(new Option('--config <name|file>', `preset from configs/ (${listPresets().join(', ')}) or a JSON file`).default('default'))
    .option('--out <dir>', 'output folder (default: runs/<config>)')
    .addOption(new Option('--device <device>', 'execution provider for every stage (default: the preset\'s)').choices(['cpu', 'cuda', 'webgpu']))
    .option('--threads <n>', 'CPU threads (0 = all cores)', (v) => intArg(v, '--threads'))
    .option('--quiet', 'no progress display')
    .option('--json', 'print the JSON summary on stdout')
    .action(async (o) => {
      const config = loadConfig(o.config);
      // its extraction on CUDA returns GBs per context, as `extract --device cuda` does
      await reuseFreedHostMemory((o.device ?? config.extract.device) === 'cuda');
      const out = path.resolve(o.out ?? path.join('runs', config.name));
      const s = await runPipeline({ config, out, device: o.device, threads: o.threads, quiet: o.quiet });
      if (o.json) return printJson(s);
      const files = s.exports.flatMap((e) => e.files).filter((f) => !f.endsWith('README.md'));
      process.stderr.write(
        [
          '',
          `done in ${s.seconds.toFixed(1)} s (extract ${s.stages.extract.toFixed(1)} s, train ${s.stages.train.toFixed(1)} s, export ${s.stages.export.toFixed(1)} s)`,
          `features: ${path.join(out, 'features')} (${s.extract.contexts.done} contexts, ${s.extract.tokens.total} tokens)`,
          formatTrainTable(s.train),
          `exported: ${files.join(', ')}`,
          `curves: ${path.join(out, 'train', 'loss.svg')}, ${path.join(out, 'train', 'acc.svg')}; summary: ${path.join(out, 'run.json')}`,
          '',
        ].join('\n'),
      );
    });
}
