// `fastkvzip train`: fit the sink-attention gates on a feature store.
import { Command, Option } from 'commander';
import * as path from 'node:path';
import { addDeviceOptions, deviceFrom, intArg, positiveFloat, fractionArg, positiveInt, printJson } from './common.js';
import { train, TRAIN_DEFAULTS, type TrainSummary } from '../gate/train.js';
import type { DType } from '../onnx/builder.js';
import { UsageError } from '../util/errors.js';
import { trainWithWorkers } from '../scale/index.js';
import { dropOptions, typedArgs, workerSlotsFrom } from './worker-args.js';

export function trainCommand(): Command {
  const cmd = new Command('train')
    .description('fit the Fast KVzip gates (public recipe by default) on a feature store')
    .requiredOption('--features <dir>', 'feature store written by `fastkvzip extract`')
    .requiredOption('--out <dir>', 'output folder (gates, checkpoints, log, plots)')
    .option('--steps <n>', 'optimizer steps', (v) => positiveInt(v, '--steps'), TRAIN_DEFAULTS.steps)
    .option('--batch <n>', 'token positions per step', (v) => positiveInt(v, '--batch'), TRAIN_DEFAULTS.batch)
    .option('--lr <x>', 'peak learning rate (> 0)', (v) => positiveFloat(v, '--lr'), TRAIN_DEFAULTS.lr)
    .option('--momentum <x>', 'SGD momentum, in [0, 1)', (v) => fractionArg(v, '--momentum', { max: 1, maxOpen: true, min: 0 }), TRAIN_DEFAULTS.momentum)
    .option('--seed <n>', 'seed of the init and batch order', (v) => intArg(v, '--seed'), TRAIN_DEFAULTS.seed)
    .option('--rank <n>', 'gate rank r', (v) => positiveInt(v, '--rank'), TRAIN_DEFAULTS.rank)
    .option('--sinks <n>', 'gate sinks S', (v) => positiveInt(v, '--sinks'), TRAIN_DEFAULTS.sinks)
    .option('--group <n>', 'query group size G (default: the model\'s)', (v) => positiveInt(v, '--group'))
    .option('--eval-every <n>', 'metric interval in steps', (v) => positiveInt(v, '--eval-every'), TRAIN_DEFAULTS.evalEvery)
    .option('--max-tokens <n>', 'train on the first n tokens of the store', (v) => positiveInt(v, '--max-tokens'))
    .option('--subsample <fraction>', 'keep this random fraction of the training positions, in (0, 1]', (v) => fractionArg(v, '--subsample', { min: 0, minOpen: true, max: 1 }))
    .option('--memory-gb <x>', 'device memory for one group of layers\' features (default: 8 on CPU, 40 on GPUs)', (v) => positiveFloat(v, '--memory-gb'))
    .addOption(new Option('--matmul-dtype <dtype>', 'projection matmul dtype (default: float32 on CPU, the features\' dtype on CUDA, float16 on WebGPU)').choices(['float32', 'float16', 'bfloat16']))
    .option('--checkpoint-every <seconds>', 'seconds between checkpoints', (v) => positiveFloat(v, '--checkpoint-every'), TRAIN_DEFAULTS.checkpointEvery)
    .option('--no-resume', 'refuse to continue an earlier training in --out (default: continue it from its checkpoints)')
    .option('--restart', 'discard an earlier training in --out and start afresh')
    .option('--quiet', 'no progress display')
    .addOption(new Option('--verify <level>', 'check the shards before training: sha256 of every shard read (full) or their sizes only (size)').choices(['full', 'size']).default('full'))
    .option('--overwrite', 'train into an --out that holds another run\'s or foreign files (deletes only files train writes)')
    .option('--layers-per-group <n>', 'at most n layers per training group (default: as many as --memory-gb holds); a group\'s gates depend on its size in the last bits only', (v) => positiveInt(v, '--layers-per-group'))
    .option('--layer-shard <k/n>', 'train only the k-th of n slices of the layer groups (what each worker of --gpus runs)', parseLayerShard)
    .option('--gpus <all|i,j,...>', 'one worker process per listed GPU, each training a slice of the layers (each layer\'s gate is independent) into <out>.parts/, joined into --out; all: the GPUs of CUDA_VISIBLE_DEVICES or nvidia-smi -L')
    .option('--workers <n>', 'n worker processes on --device (the CPU: threads split among them), joined as with --gpus', (v) => positiveInt(v, '--workers'))
    .option('--json', 'print a JSON summary on stdout');
  addDeviceOptions(cmd);
  return cmd.action(async (o, self: Command) => {
    // ONNX Runtime's WebGPU EP has no bf16 kernels (nor does the CPU EP have a bf16 MatMul): the session could never be made
    if (o.device === 'webgpu' && o.matmulDtype === 'bfloat16') throw new UsageError('--matmul-dtype bfloat16 cannot run on --device webgpu (ONNX Runtime\'s WebGPU provider has no bf16 MatMul); use float16 (its default there) or float32');
    const slots = workerSlotsFrom({ ...o, shard: o.layerShard }, self, '--layer-shard');
    if (slots) {
      const summary = await trainWithWorkers({
        args: ['train', ...dropOptions(typedArgs(self), self, TRAIN_WORKER_SET_FLAGS)],
        slots,
        features: o.features,
        out: o.out,
        threads: o.threads,
        steps: o.steps,
        evalEvery: o.evalEvery,
        layersPerGroup: o.layersPerGroup,
        overwrite: o.overwrite,
        quiet: o.quiet,
      });
      if (o.json) printJson(summary);
      else process.stdout.write(formatTrainTable(summary, (p) => path.relative(process.cwd(), p) || '.'));
      return;
    }
    const device = deviceFrom(o);
    const summary = await train({
      features: o.features,
      out: o.out,
      device,
      steps: o.steps,
      batch: o.batch,
      lr: o.lr,
      momentum: o.momentum,
      seed: o.seed,
      rank: o.rank,
      sinks: o.sinks,
      group: o.group,
      evalEvery: o.evalEvery,
      maxTokens: o.maxTokens,
      subsample: o.subsample,
      resume: o.resume,
      restart: o.restart,
      quiet: o.quiet,
      memoryBudget: (o.memoryGb ?? (device.device === 'cpu' ? 8 : 40)) * 2 ** 30,
      matmulDtype: o.matmulDtype as DType | undefined,
      checkpointEvery: o.checkpointEvery,
      verify: o.verify,
      overwrite: o.overwrite,
      layersPerGroup: o.layersPerGroup,
      layerShard: o.layerShard,
    });
    if (o.json) printJson(summary);
    else process.stdout.write(formatTrainTable(summary, (p) => path.relative(process.cwd(), p) || '.'));
  });
}

/** Flags the train workers get set for them (everything else is passed on as typed). */
const TRAIN_WORKER_SET_FLAGS = ['--gpus', '--workers', '--out', '--json', '--quiet', '--device', '--device-id', '--threads', '--layer-shard', '--layers-per-group', '--overwrite'];

function parseLayerShard(v: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(v);
  if (!m || Number(m[2]) < 1 || Number(m[1]) >= Number(m[2])) throw new UsageError(`--layer-shard must look like k/n with 0 <= k < n (got "${v}")`);
  return { index: Number(m[1]), count: Number(m[2]) };
}

export function formatTrainTable(s: TrainSummary, show: (file: string) => string = (f) => f): string {
  const rows = s.layers.map(
    (r) => `| ${r.layer} | ${r.testLoss.toFixed(4)} | ${(100 * r.testAcc).toFixed(2)} | ${r.trainLoss.toFixed(4)} | ${(100 * r.trainAcc).toFixed(2)} | ${(100 * r.recall30).toFixed(1)} |`,
  );
  return [
    `trained ${s.layers.length} gate layer(s), ${s.steps} steps x ${s.batch} tokens on ${s.tokens.train} train / ${s.tokens.test} held-out tokens in ${s.seconds.toFixed(1)} s`,
    '| layer | held-out loss | held-out acc % | train loss | train acc % | recall@30% |',
    '| ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
    `| mean | ${s.mean.testLoss.toFixed(4)} | ${(100 * s.mean.testAcc).toFixed(2)} | | | ${(100 * s.mean.recall30).toFixed(1)} |`,
    `gates: ${show(s.gates)}`,
    '',
  ].join('\n');
}
