// `fastkvzip train`: fit the gates on a feature store, the public recipe by default (docs/method.md §4).
//
// The loop (batch order, lr schedule, metrics, checkpoints) lives here in TypeScript; the math
// (forward, analytic backward, SGD-momentum update) runs in ONNX Runtime, K steps per
// session.run with the parameters kept on the device inside the run. Layers are independent:
// they are trained in groups sized to a memory budget, each group's features loaded straight
// from the store's Arrow files (zero-copy external data), so host memory stays bounded by one
// group whatever the store size.
import { existsSync, mkdirSync, rmSync, appendFileSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { Graph, encodeModel, type DType } from '../onnx/builder.js';
import { buildTrainGraph, PARAMS, paramShape, type GateDims, type RowPiece } from './graph.js';
import { initLayer, stack, unstack, zerosLike, type StackedParams } from './state.js';
import { BatchOrder, lrMultiplier, recallAgainst, splitPositions, stepBlocks, subsample, topKMask, topKRecall } from './schedule.js';
import type { GateSet, GateLayerParams, GateMetrics } from './types.js';
import { readManifest, readLayer, layerBlocks, acquireLock, storeFormOf, type FeatureManifest, type ShardEntry } from '../features/index.js';
import { claimTrainOut, incompleteWarning, trainGraphFolder, verifyShards, type VerifyLevel } from './train-out.js';
import { ensureOutDir } from '../util/owned-files.js';
import { validateGateSet } from './gate-tensors.js';
import { storeRows } from './positions.js';
import { createSession, ort, type DeviceOptions } from '../runtime/session.js';
import { writeFileAtomicSync, writeJsonAtomic } from '../util/atomic.js';
import { UserError } from '../util/errors.js';
import { createProgress } from '../util/progress.js';
import { readCheckpoint, writeCheckpoint } from './checkpoint.js';
import { plotPanels } from './plot.js';
import { writeGateFile } from './gate-file.js';
import { DTYPE_BYTES } from '../util/dtype.js';

export interface TrainOptions {
  features: string;
  out: string;
  device: DeviceOptions;
  steps: number;
  batch: number;
  lr: number;
  momentum: number;
  seed: number;
  rank: number;
  sinks: number;
  /** query group size (default: the model's G) */
  group?: number;
  evalEvery: number;
  maxTokens?: number;
  subsample?: number;
  /** continue from checkpoints (true), or refuse to touch an output folder that holds a training (false) */
  resume: boolean;
  /** discard an earlier training's checkpoints and start afresh (wins over resume) */
  restart?: boolean;
  /** bytes of features (and their in-graph concatenation) one group may hold */
  memoryBudget: number;
  /** matmul dtype: fp32 on CPU; the features' dtype elsewhere unless forced */
  matmulDtype?: DType;
  /** seconds between checkpoints */
  checkpointEvery: number;
  quiet?: boolean;
  plainProgress?: boolean;
  /** progress label (default "train") */
  label?: string;
  /** shard check before training: sha256 of every shard read ("full", default) or sizes only */
  verify?: VerifyLevel;
  /** replace another run's (or foreign) files in --out */
  overwrite?: boolean;
  /** at most this many layers per group (default: as many as the memory budget holds) */
  layersPerGroup?: number;
  /** train only slice `index` of `count` of the layer groups (one worker of `train --gpus`; src/scale/train-workers.ts joins the slices) */
  layerShard?: { index: number; count: number };
}

export const TRAIN_DEFAULTS = {
  steps: 5000,
  batch: 1000,
  lr: 0.2,
  momentum: 0.9,
  seed: 0,
  rank: 16,
  sinks: 16,
  evalEvery: 50,
  checkpointEvery: 60,
};

export interface LayerResult {
  layer: number;
  testLoss: number;
  testAcc: number;
  trainLoss: number;
  trainAcc: number;
  /** recall of the KVzip top-30 % (per head, averaged) by the gate's top-30 % on held-out tokens */
  recall30: number;
}

export interface TrainSummary {
  gates: string;
  out: string;
  /** the feature store trained on */
  features: string;
  /** identity of the run (store, recipe, options): a finished run with the same identity is not redone */
  identity: string;
  device: string;
  steps: number;
  batch: number;
  lr: number;
  seed: number;
  tokens: { total: number; train: number; test: number };
  groups: number[][];
  layers: LayerResult[];
  mean: { testLoss: number; testAcc: number; recall30: number };
  seconds: number;
  /** peak resident host memory of this process */
  peakRssMiB: number;
  options: Record<string, unknown>;
  /** a --layer-shard run: its slice, and the identity of the whole run the slices join into */
  part?: { index: number; count: number; layers: number[]; runIdentity: string };
}

export const GATES_FILE = 'gates.safetensors';

/** Identity of a training run: a checkpoint is only resumed by a run with the same identity. */
function runIdentity(o: TrainOptions, m: FeatureManifest, dims: Omit<GateDims, 'L'>, tokens: number): string {
  const id = {
    store: m.identityHash,
    shards: m.shards.map((s) => s.sha256),
    steps: o.steps,
    batch: o.batch,
    lr: o.lr,
    momentum: o.momentum,
    seed: o.seed,
    dims,
    evalEvery: o.evalEvery,
    tokens,
    subsample: o.subsample ?? 1,
    // only when set, so runs without them keep the identity they always had
    ...(o.layersPerGroup ? { layersPerGroup: o.layersPerGroup } : {}),
    ...(o.layerShard ? { layerShard: `${o.layerShard.index}/${o.layerShard.count}` } : {}),
  };
  return createHash('sha256').update(JSON.stringify(id)).digest('hex').slice(0, 16);
}

/** Option values that cannot train (usage errors, exit 2), whichever way they came in. */
function checkOptions(o: TrainOptions): void {
  if (!(Number.isFinite(o.lr) && o.lr > 0)) throw new UserError(`--lr must be a positive number (got ${o.lr})`);
  if (!(o.momentum >= 0 && o.momentum < 1)) throw new UserError(`--momentum must be in [0, 1) (got ${o.momentum}); SGD momentum of 1 or more diverges`);
  if (o.subsample !== undefined && !(o.subsample > 0 && o.subsample <= 1)) throw new UserError(`--subsample must be a fraction in (0, 1] (got ${o.subsample})`);
  if (!Number.isInteger(o.seed)) throw new UserError(`--seed must be an integer (got ${o.seed})`);
}

export async function train(o: TrainOptions): Promise<TrainSummary> {
  checkOptions(o);
  ensureOutDir(o.out);
  // one trainer per folder: a second one would interleave logs and overwrite checkpoints
  const releaseLock = await acquireLock(o.out);
  try {
    return await trainLocked(o);
  } finally {
    await releaseLock();
  }
}

async function trainLocked(o: TrainOptions): Promise<TrainSummary> {
  const t0 = Date.now();
  const plan = await planRun(o);
  const { resume, done } = await openRunOut(o, plan);
  if (done) {
    // a re-run of a finished job: keep its results (and their timing) instead of re-evaluating
    if (!o.quiet) process.stderr.write(`${o.label ?? 'train'}: already finished (${path.join(o.out, 'summary.json')}); nothing to do\n`);
    return done;
  }
  const warning = incompleteWarning(o.features, plan.m);
  if (warning) process.stderr.write(`${warning}\n`);
  await verifyShards(o.features, plan.usedShards, o.verify ?? 'full');

  const mm: DType = o.matmulDtype ?? defaultMatmulDtype(o.device.device, plan.m);
  const logPath = path.join(o.out, 'log.jsonl');
  if (!resume && existsSync(logPath)) rmSync(logPath);

  const run: GroupRun = {
    o,
    plan,
    mm,
    logPath,
    resume,
    t0,
    curves: emptyCurves(plan, o.steps),
    finalParams: new Array(plan.layers.length),
    results: new Array(plan.layers.length),
    progress: createProgress({ label: o.label ?? 'train', total: o.steps * plan.groups.length, unit: 'steps', quiet: o.quiet, plain: o.plainProgress }),
    place: await trainGraphFolder(o.out, o.features, plan.usedShards),
  };
  try {
    for (let gi = 0; gi < plan.groups.length; gi++) await trainGroup(run, gi);
  } finally {
    run.progress.stop();
    await run.place.cleanup();
  }
  return writeResults(run);
}

/** Everything decided before training starts: positions, batch order, step blocks, layer groups, identity. */
interface RunPlan {
  m: FeatureManifest;
  G: number;
  dimsBase: Omit<GateDims, 'L'>;
  layers: number[];
  /** store rows used */
  total: number;
  trainPos: Int32Array;
  testPos: Int32Array;
  /** the batch size (--batch, or fewer when the store has fewer training positions) */
  batch: number;
  order: BatchOrder;
  blocks: StepBlock[];
  /** steps (0-based) that end with an evaluation */
  metricSteps: number[];
  usedShards: ShardEntry[];
  groups: number[][];
  identity: string;
}

type StepBlock = ReturnType<typeof stepBlocks>[number];

async function planRun(o: TrainOptions): Promise<RunPlan> {
  const m = await readManifest(o.features);
  if (m.shards.length === 0) throw new UserError(`${o.features}: the feature store holds no contexts yet`);
  const G = o.group ?? m.model.G;
  const dimsBase = { D: m.model.D, H: m.model.H, G, r: o.rank, S: o.sinks };
  const allLayers = m.model.scoredLayers;

  // Positions: the concatenated token stream of the shards, in canonical order (rows of a subsampled store).
  const { total, ...split } = await storeRows(o.features, m, o.maxTokens);
  const trainPos = subsample(split.train, o.subsample ?? 1, o.seed);
  const testPos = split.test;
  if (testPos.length === 0) throw new UserError(`${o.features}: too few tokens (${total}) for a held-out split (every 100th token)`);
  let batch = o.batch;
  if (trainPos.length < batch) {
    process.stderr.write(`warning: only ${trainPos.length} training positions; batch reduced from ${batch} to ${trainPos.length}\n`);
    batch = trainPos.length;
  }
  const order = new BatchOrder(trainPos, batch, o.seed);
  const blocks = stepBlocks(o.steps, o.evalEvery);

  // Layer groups under the memory budget (features + targets, twice: the shards and their per-layer join).
  const usedShards = shardsUpTo(m, total);
  const usedTokens = usedShards.reduce((a, s) => a + s.tokens, 0);
  const form = storeFormOf(m);
  const perLayer = 2 * usedTokens * (m.model.D * DTYPE_BYTES[m.hiddenDtype] + m.model.H * 4 + (form.quantBlock ? (m.model.D / form.quantBlock) * 4 : 0));
  const groupSize = Math.max(1, Math.min(allLayers.length, o.layersPerGroup ?? Infinity, Math.floor(o.memoryBudget / perLayer)));
  const allGroups: number[][] = [];
  for (let i = 0; i < allLayers.length; i += groupSize) allGroups.push(allLayers.slice(i, i + groupSize));
  const groups = o.layerShard ? layerShardGroups(allGroups, o.layerShard, o.features) : allGroups;
  const layers = groups.flat();

  const identity = runIdentity(o, m, dimsBase, total);
  const metricSteps = blocks.filter((b) => b.metric).map((b) => b.end - 1);
  return { m, G, dimsBase, layers, total, trainPos, testPos, batch, order, blocks, metricSteps, usedShards, groups, identity };
}

/** Claims --out for this run; `done` is the summary of a finished run with the same identity there. */
async function openRunOut(o: TrainOptions, plan: RunPlan): Promise<{ resume: boolean; done: TrainSummary | null }> {
  await claimTrainOut(o.out, plan.identity, o.overwrite ?? false);
  const ckptDir = path.join(o.out, 'checkpoints');
  const earlier = existsSync(path.join(o.out, 'summary.json')) || (existsSync(ckptDir) && readdirSync(ckptDir).length > 0);
  if (!o.resume && !o.restart && earlier) {
    throw new UserError(`${o.out}: holds an earlier training (checkpoints or summary.json); drop --no-resume to continue it, or pass --restart to start afresh`);
  }
  const resume = o.resume && !o.restart;
  return { resume, done: resume ? finishedRun(o.out, plan.identity) : null };
}

/**
 * What training records besides the gates: the metrics of every evaluation (they go into the
 * gate file), and for the plots every step's training-batch loss and the held-out recall@30 %
 * at every evaluation. Each is [step or evaluation][layer].
 */
interface Curves {
  metrics: GateMetrics;
  stepLoss: number[][];
  recallAt: number[][];
}

function emptyCurves(plan: RunPlan, steps: number): Curves {
  const perEval = () => plan.metricSteps.map(() => Array<number>(plan.layers.length).fill(NaN));
  return {
    metrics: { loss: perEval(), acc: perEval(), lossTrain: perEval(), accTrain: perEval() },
    stepLoss: Array.from({ length: steps }, () => Array<number>(plan.layers.length).fill(NaN)),
    recallAt: perEval(),
  };
}

/** One run's state while its layer groups train one after the other. */
interface GroupRun {
  o: TrainOptions;
  plan: RunPlan;
  mm: DType;
  logPath: string;
  resume: boolean;
  t0: number;
  curves: Curves;
  /** per scored layer, filled as groups finish */
  finalParams: GateLayerParams[];
  results: LayerResult[];
  progress: ReturnType<typeof createProgress>;
  place: Awaited<ReturnType<typeof trainGraphFolder>>;
}

interface GroupState {
  params: StackedParams;
  bufs: StackedParams;
  /** the first step block still to run */
  nextBlock: number;
}

/** A checkpoint's metric rows: one per evaluation, values per layer of the group. */
type CheckpointRow = { step: number; testLoss: number[]; testAcc: number[]; trainLoss: number[]; trainAcc: number[] };

/** Trains layer group `gi` from its checkpoint (or from scratch) to the last step, and evaluates it. */
async function trainGroup(run: GroupRun, gi: number): Promise<void> {
  const { o, plan } = run;
  const { m, layers, blocks, testPos } = plan;
  const group = plan.groups[gi]!;
  const dims: GateDims = { L: group.length, ...plan.dimsBase };
  const ckptPath = path.join(o.out, 'checkpoints', `group-${gi}.safetensors`);
  // ONNX Runtime only reads external data from the model's own folder: see trainGraphFolder
  const modelPath = run.place.graphPath(gi);
  writeFileAtomicSync(modelPath, encodeModel(await trainGraph(o.features, m, group, dims, run.mm, o.momentum, plan.usedShards.length), { metadata: { purpose: 'fastkvzip gate training' } }));

  const state = restoreGroup(run, gi, dims, ckptPath);
  // the log keeps this group's rows up to the resumed checkpoint only (no duplicates after a resume)
  pruneLog(run.logPath, gi, state.nextBlock > 0 ? blocks[state.nextBlock - 1]!.end - 1 : -1);

  const session = await createTrainSession(modelPath, o.device);
  const testIdx = new ort.Tensor('int64', BigInt64Array.from(testPos, (p) => BigInt(p)), [testPos.length]);
  const testTargets = await heldOutTargets(o.features, m, group, testPos);
  const refMasks = testTargets.map((t) => Array.from({ length: m.model.H }, (_, h) => topKMask(t.subarray(h * testPos.length, (h + 1) * testPos.length), 0.3)));
  let lastCkpt = Date.now();
  const ckptRows = restoredRows(run, group);
  let lastOut: ort.InferenceSession.OnnxValueMapType | null = null;
  for (let bi = state.nextBlock; bi < blocks.length; bi++) {
    const blk = blocks[bi]!;
    const K = blk.end - blk.start;
    const idx = new BigInt64Array(K * plan.batch);
    const lr = new Float32Array(K);
    for (let k = 0; k < K; k++) {
      const step = blk.start + k;
      const pos = plan.order.at(step);
      for (let j = 0; j < plan.batch; j++) idx[k * plan.batch + j] = BigInt(pos[j]!);
      lr[k] = o.lr * lrMultiplier(step, o.steps);
    }
    const out = await session.run({
      batch_idx: new ort.Tensor('int64', idx, [K, plan.batch]),
      lr: new ort.Tensor('float32', lr, [K]),
      test_idx: testIdx,
      ...paramFeeds(state, dims),
    });
    checkFinite(o, out, group, dims, blk.start, K);
    lastOut = out;
    for (const n of PARAMS) {
      state.params[n] = out[`${n}.out`]!.data as Float32Array;
      state.bufs[n] = out[`${n}.buf.out`]!.data as Float32Array;
    }
    state.nextBlock = bi + 1;
    const trainLoss = out.train_loss!.data as Float32Array;
    const trainAcc = out.train_acc!.data as Float32Array;
    const testLoss = Array.from(out.test_loss!.data as Float32Array);
    const testAcc = Array.from(out.test_acc!.data as Float32Array);
    const lastTrainLoss = Array.from(trainLoss.subarray((K - 1) * group.length, K * group.length));
    const lastTrainAcc = Array.from(trainAcc.subarray((K - 1) * group.length, K * group.length));
    const step = blk.end - 1;
    for (let k = 0; k < K; k++) group.forEach((l, j) => (run.curves.stepLoss[blk.start + k]![layers.indexOf(l)] = trainLoss[k * group.length + j]!));
    if (blk.metric) {
      const row = { step, testLoss, testAcc, trainLoss: lastTrainLoss, trainAcc: lastTrainAcc };
      recordEvaluation(run, gi, row, out.test_scores!.data as Float32Array, refMasks, lr[K - 1]!);
      ckptRows.push(row);
    }
    run.progress.update(gi * o.steps + blk.end, {
      group: `${gi + 1}/${plan.groups.length}`,
      loss: mean(lastTrainLoss),
      'held-out': mean(testLoss),
      acc: mean(testAcc),
    });
    if (Date.now() - lastCkpt > o.checkpointEvery * 1000 && bi + 1 < blocks.length) {
      await writeCheckpoint(ckptPath, { identity: plan.identity, params: state.params, bufs: state.bufs, nextBlock: state.nextBlock, metrics: ckptRows }, dims);
      lastCkpt = Date.now();
    }
  }
  await writeCheckpoint(ckptPath, { identity: plan.identity, params: state.params, bufs: state.bufs, nextBlock: state.nextBlock, metrics: ckptRows }, dims);

  if (!lastOut) {
    // Everything was restored from a finished checkpoint: one zero-step run evaluates it.
    lastOut = await session.run({
      batch_idx: new ort.Tensor('int64', new BigInt64Array(0), [0, plan.batch]),
      lr: new ort.Tensor('float32', new Float32Array(0), [0]),
      test_idx: testIdx,
      ...paramFeeds(state, dims),
    });
  }
  finishGroup(run, group, dims, state, lastOut, testTargets, ckptRows);
  await session.release();
  rmSync(modelPath, { force: true });
}

/** The group's parameters and momentum buffers as feeds. */
function paramFeeds(state: GroupState, dims: GateDims): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const n of PARAMS) {
    feeds[n] = new ort.Tensor('float32', state.params[n], paramShape(n, dims));
    feeds[`${n}.buf`] = new ort.Tensor('float32', state.bufs[n], paramShape(n, dims));
  }
  return feeds;
}

/** The group's state from its checkpoint when resuming this run (restoring its metrics), else fresh. */
function restoreGroup(run: GroupRun, gi: number, dims: GateDims, ckptPath: string): GroupState {
  const { o, plan } = run;
  const { blocks, layers, metricSteps, identity } = plan;
  const { metrics } = run.curves;
  const group = plan.groups[gi]!;
  const fresh: GroupState = {
    params: stack(group.map((l) => initLayer(plan.dimsBase, o.seed, l)), dims),
    bufs: zerosLike(dims),
    nextBlock: 0,
  };
  if (!run.resume || !existsSync(ckptPath)) return fresh;
  const ck = readCheckpoint(ckptPath, dims);
  if (ck.identity === identity && !(Number.isInteger(ck.nextBlock) && ck.nextBlock >= 0 && ck.nextBlock <= blocks.length)) {
    throw new UserError(`${ckptPath}: corrupt checkpoint (next block ${ck.nextBlock} of ${blocks.length}); delete it or train with --no-resume`, 1);
  }
  if (ck.identity !== identity) {
    run.progress.log(`checkpoint ${ckptPath} belongs to another run; starting group ${gi} afresh`);
    return fresh;
  }
  ck.metrics.forEach((row) => {
    const mi = metricSteps.indexOf(row.step);
    group.forEach((_, j) => {
      const li = layers.indexOf(group[j]!);
      metrics.loss[mi]![li] = row.testLoss[j]!;
      metrics.acc[mi]![li] = row.testAcc[j]!;
      metrics.lossTrain[mi]![li] = row.trainLoss[j]!;
      metrics.accTrain[mi]![li] = row.trainAcc[j]!;
    });
  });
  run.progress.log(`resuming group ${gi} from step ${blocks[ck.nextBlock]?.start ?? o.steps}`);
  return { params: ck.params, bufs: ck.bufs, nextBlock: ck.nextBlock };
}

/** The metric rows of the group's evaluations already done (restored), for its next checkpoint. */
function restoredRows(run: GroupRun, group: number[]): CheckpointRow[] {
  const { layers, metricSteps } = run.plan;
  const { metrics } = run.curves;
  const rows: CheckpointRow[] = [];
  metricSteps.forEach((step, mi) => {
    if (group.every((l) => !Number.isNaN(metrics.loss[mi]![layers.indexOf(l)]!))) {
      rows.push({
        step,
        testLoss: group.map((l) => metrics.loss[mi]![layers.indexOf(l)]!),
        testAcc: group.map((l) => metrics.acc[mi]![layers.indexOf(l)]!),
        trainLoss: group.map((l) => metrics.lossTrain[mi]![layers.indexOf(l)]!),
        trainAcc: group.map((l) => metrics.accTrain[mi]![layers.indexOf(l)]!),
      });
    }
  });
  return rows;
}

/** An evaluation of group `gi`: its metrics, its held-out recall@30 %, and its rows of log.jsonl. */
function recordEvaluation(run: GroupRun, gi: number, row: CheckpointRow, scores: Float32Array, refMasks: Uint8Array[][], lr: number): void {
  const { layers, metricSteps, testPos, m } = run.plan;
  const { metrics, recallAt } = run.curves;
  const group = run.plan.groups[gi]!;
  const mi = metricSteps.indexOf(row.step);
  // scores: [group, H, T]
  const Tt = testPos.length;
  const recall = group.map((_, j) => {
    let r = 0;
    for (let h = 0; h < m.model.H; h++) r += recallAgainst(refMasks[j]![h]!, scores.subarray((j * m.model.H + h) * Tt, (j * m.model.H + h + 1) * Tt), 0.3);
    return r / m.model.H;
  });
  group.forEach((l, j) => (recallAt[mi]![layers.indexOf(l)] = recall[j]!));
  group.forEach((l, j) => {
    const li = layers.indexOf(l);
    metrics.loss[mi]![li] = row.testLoss[j]!;
    metrics.acc[mi]![li] = row.testAcc[j]!;
    metrics.lossTrain[mi]![li] = row.trainLoss[j]!;
    metrics.accTrain[mi]![li] = row.trainAcc[j]!;
  });
  const lines = group.map((l, j) =>
    JSON.stringify({ step: row.step, layer: l, group: gi, lr, train_loss: row.trainLoss[j], train_acc: row.trainAcc[j], test_loss: row.testLoss[j], test_acc: row.testAcc[j], test_recall30: recall[j], seconds: (Date.now() - run.t0) / 1000 }),
  );
  appendFileSync(run.logPath, lines.join('\n') + '\n');
}

/** Final held-out metrics and the top-30 % recall of the group's layers, and their parameters. */
function finishGroup(run: GroupRun, group: number[], dims: GateDims, state: GroupState, lastOut: ort.InferenceSession.OnnxValueMapType, testTargets: Float32Array[], ckptRows: CheckpointRow[]): void {
  const { layers, testPos } = run.plan;
  const testScores = lastOut.test_scores!.data as Float32Array; // [L, H, T]
  const T = testPos.length;
  const H = dims.H;
  const lastTrain = ckptRows.length ? ckptRows[ckptRows.length - 1]! : null;
  const unstacked = unstack(state.params, dims);
  group.forEach((l, j) => {
    const li = layers.indexOf(l);
    let recall = 0;
    for (let h = 0; h < H; h++) {
      const gate = testScores.subarray((j * H + h) * T, (j * H + h + 1) * T);
      const ref = testTargets[j]!.subarray(h * T, (h + 1) * T);
      recall += topKRecall(ref, gate, 0.3);
    }
    run.finalParams[li] = unstacked[j]!;
    run.results[li] = {
      layer: l,
      testLoss: (lastOut.test_loss!.data as Float32Array)[j]!,
      testAcc: (lastOut.test_acc!.data as Float32Array)[j]!,
      trainLoss: lastTrain?.trainLoss[j] ?? NaN,
      trainAcc: lastTrain?.trainAcc[j] ?? NaN,
      recall30: recall / H,
    };
  });
}

/** The gate file, the loss and recall plots and summary.json of a finished run. */
async function writeResults(run: GroupRun): Promise<TrainSummary> {
  const { o, plan, curves, results } = run;
  const { m, layers, batch, total, metricSteps, identity, dimsBase } = plan;
  const gates: GateSet = {
    ...dimsBase,
    layers,
    params: run.finalParams,
    modelDtype: (m.extract.modelDtype === 'float32' || m.extract.modelDtype === 'float16' ? m.extract.modelDtype : 'bfloat16') as GateSet['modelDtype'],
    metrics: curves.metrics,
    meta: {
      model_id: m.model.id,
      revision: m.model.revision ?? '',
      commit: m.model.commit ?? '',
      recipe: JSON.stringify(m.recipe),
      train: JSON.stringify({ steps: o.steps, batch, lr: o.lr, momentum: o.momentum, seed: o.seed, rank: o.rank, sinks: o.sinks, tokens: total }),
    },
  };
  const gatesPath = path.join(o.out, GATES_FILE);
  try {
    validateGateSet(gates);
  } catch (e) {
    throw new UserError(`${o.out}: the trained gates are not usable (${(e as Error).message}); no gates were written`, 1);
  }
  await writeGateFile(gatesPath, gates); // fp32 master copies
  // x = steps done (1-based), so a log axis starts at the first step
  const evalSteps = metricSteps.map((s) => s + 1);
  plotPanels(path.join(o.out, 'loss.svg'), 'Gate training loss (binary cross-entropy against the KVzip scores)', {
    yLabel: 'BCE loss',
    log: true,
    layers,
    steps: o.steps,
    panels: [
      { title: `training batches (every step, ${batch} tokens)`, curve: { steps: curves.stepLoss.map((_, i) => i + 1), values: curves.stepLoss } },
      { title: `held-out tokens (every ${o.evalEvery} steps)`, curve: { steps: evalSteps, values: curves.metrics.loss } },
    ],
  });
  plotPanels(path.join(o.out, 'recall.svg'), 'Held-out recall@30 %: share of the KVzip top-30 % tokens (per head) the gate also ranks top-30 %', {
    yLabel: 'recall@30%',
    min: 0,
    max: 1,
    layers,
    steps: o.steps,
    panels: [{ title: `held-out tokens (every ${o.evalEvery} steps)`, curve: { steps: evalSteps, values: curves.recallAt } }],
  });
  const summary: TrainSummary = {
    gates: gatesPath,
    out: o.out,
    features: path.resolve(o.features),
    identity,
    device: o.device.device,
    steps: o.steps,
    batch,
    lr: o.lr,
    seed: o.seed,
    tokens: { total, train: plan.trainPos.length, test: plan.testPos.length },
    groups: plan.groups,
    layers: results,
    mean: { testLoss: mean(results.map((r) => r.testLoss)), testAcc: mean(results.map((r) => r.testAcc)), recall30: mean(results.map((r) => r.recall30)) },
    seconds: (Date.now() - run.t0) / 1000,
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    options: { rank: o.rank, sinks: o.sinks, G: plan.G, momentum: o.momentum, evalEvery: o.evalEvery, maxTokens: o.maxTokens ?? null, subsample: o.subsample ?? 1, matmulDtype: run.mm, memoryBudget: o.memoryBudget },
  };
  if (o.layerShard) {
    // what the join needs beyond the gates: the whole run's identity, and the per-step curves of the plots
    summary.part = { ...o.layerShard, layers, runIdentity: runIdentity({ ...o, layerShard: undefined }, m, dimsBase, total) };
    await writeJsonAtomic(path.join(o.out, CURVES_FILE), { layers, stepLoss: curves.stepLoss, recallAt: curves.recallAt });
  }
  await writeJsonAtomic(path.join(o.out, 'summary.json'), summary);
  return summary;
}

/** Per-step training loss and held-out recall of a --layer-shard run ([step][layer], [eval][layer]). */
export const CURVES_FILE = 'curves.json';

/** Slice `index` of `count` of the layer groups (contiguous, sizes differing by at most one group). */
export function layerShardGroups(groups: number[][], shard: { index: number; count: number }, store: string): number[][] {
  const from = Math.floor((shard.index * groups.length) / shard.count);
  const to = Math.floor(((shard.index + 1) * groups.length) / shard.count);
  if (from === to) throw new UserError(`--layer-shard ${shard.index}/${shard.count}: ${store} trains in ${groups.length} layer group(s), fewer than ${shard.count} slices; use fewer workers or smaller groups (--layers-per-group)`, 2);
  return groups.slice(from, to);
}

/** Gate parameters are O(1) (RMS-normed projections, sigmoid logits); this far out, training has blown up. */
const DIVERGED_PARAM_ABS = 1e6;

/**
 * Stop at the first non-finite training loss or parameter, naming the layer and step: NaN/Inf
 * features in the store, or a learning rate / momentum that blows up, must never become gates.
 */
function checkFinite(o: TrainOptions, out: ort.InferenceSession.OnnxValueMapType, group: number[], dims: GateDims, firstStep: number, K: number): void {
  const L = group.length;
  const fail = (layer: number, step: number | null, what: string, exploded = false): never => {
    throw new UserError(
      `${o.out}: training diverged${step === null ? '' : ` at step ${step}`}: layer ${layer} has a${exploded ? 'n exploding' : ' non-finite'} ${what} (lr ${o.lr}, momentum ${o.momentum}); ` +
        `with sane settings the store ${o.features} holds NaN/Inf features or scores; no gates were written`,
      1,
    );
  };
  const loss = out.train_loss!.data as Float32Array; // [K, L]
  for (let k = 0; k < K; k++) for (let j = 0; j < L; j++) if (!Number.isFinite(loss[k * L + j]!)) fail(group[j]!, firstStep + k, 'training loss');
  const test = out.test_loss!.data as Float32Array;
  for (let j = 0; j < test.length; j++) if (!Number.isFinite(test[j]!)) fail(group[j]!, firstStep + K - 1, 'held-out loss');
  for (const n of PARAMS) {
    const p = out[`${n}.out`]!.data as Float32Array; // [L, ...]
    const per = p.length / L;
    for (let i = 0; i < p.length; i++) {
      if (!Number.isFinite(p[i]!)) fail(group[Math.floor(i / per)]!, firstStep + K - 1, `parameter ${n}`);
      if (Math.abs(p[i]!) > DIVERGED_PARAM_ABS) fail(group[Math.floor(i / per)]!, firstStep + K - 1, `parameter ${n} (it grew to ${p[i]!.toExponential(1)}, beyond ${DIVERGED_PARAM_ABS.toExponential(0)})`, true);
    }
  }
  void dims;
}

/** Keep the log's rows of other groups, and of group `gi` up to step `upTo` (-1: none of them). */
function pruneLog(logPath: string, gi: number, upTo: number): void {
  if (!existsSync(logPath)) return;
  const lines = readFileSync(logPath, 'utf8').split('\n').filter((l) => l.trim() !== '');
  const kept = lines.filter((l) => {
    try {
      const row = JSON.parse(l) as { group?: number; step?: number };
      return row.group !== gi || (row.step ?? Infinity) <= upTo;
    } catch {
      return false; // a half-written last line of a killed run
    }
  });
  if (kept.length !== lines.length) writeFileSync(logPath, kept.map((l) => l + '\n').join(''));
}

/** The summary of a finished run with this identity, when its gates are still there. */
function finishedRun(out: string, identity: string): TrainSummary | null {
  const file = path.join(out, 'summary.json');
  if (!existsSync(file) || !existsSync(path.join(out, GATES_FILE))) return null;
  try {
    const s = JSON.parse(readFileSync(file, 'utf8')) as TrainSummary;
    return s.identity === identity ? s : null;
  } catch {
    return null;
  }
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

/** Shards whose tokens fall (partly) below `total`, in canonical order. */
function shardsUpTo(m: FeatureManifest, total: number) {
  const out = [];
  let seen = 0;
  for (const s of m.shards) {
    if (seen >= total) break;
    out.push(s);
    seen += s.tokens;
  }
  return out;
}

/** The training graph of one layer group, with features/targets as external data in the store's shards. */
async function trainGraph(storeDir: string, m: FeatureManifest, group: number[], dims: GateDims, mm: DType, momentum: number, nShards: number): Promise<Graph> {
  const g = new Graph('fastkvzip_gate_train');
  const form = storeFormOf(m);
  const featDtype: DType = m.hiddenDtype === 'int8' ? 'int8' : m.hiddenDtype === 'float8e4m3' ? 'uint8' : m.hiddenDtype;
  const features: RowPiece[][] = [];
  const targets: RowPiece[][] = [];
  const scales: RowPiece[][] = [];
  for (const layer of group) {
    const blocks = (await layerBlocks(storeDir, layer)).slice(0, nShards);
    let start = 0;
    const hid: RowPiece[] = [];
    const sco: RowPiece[] = [];
    const sca: RowPiece[] = [];
    blocks.forEach((b, s) => {
      const at = (x: { offset: number; length: number }) => ({ location: `shards/${path.basename(b.file)}`, offset: x.offset, length: x.length });
      hid.push({ name: g.externalInitializer(`hidden.${layer}.${s}`, featDtype, [b.hidden.rows, b.hidden.cols], at(b.hidden)), start, rows: b.hidden.rows, cols: b.hidden.cols });
      sco.push({ name: g.externalInitializer(`score.${layer}.${s}`, 'float32', [b.score.rows, b.score.cols], at(b.score)), start, rows: b.score.rows, cols: b.score.cols });
      if (b.scale) sca.push({ name: g.externalInitializer(`scale.${layer}.${s}`, 'float32', [b.scale.rows, b.scale.cols], at(b.scale)), start, rows: b.scale.rows, cols: b.scale.cols });
      start += b.hidden.rows;
    });
    features.push(hid);
    targets.push(sco);
    scales.push(sca);
  }
  const dequant = form.quantBlock ? { dtype: m.hiddenDtype as 'int8' | 'float8e4m3', block: form.quantBlock, scales: { pieces: scales } } : undefined;
  buildTrainGraph(g, { dims, featureDtype: featDtype, mm, momentum, features: { pieces: features }, targets: { pieces: targets }, dequant });
  return g;
}

/**
 * fp32 on the CPU; the features' half type on CUDA; fp16 on WebGPU, whose ONNX Runtime provider has
 * no bf16 kernels (a bf16 MatMul there has no provider at all and the session cannot be made).
 */
export function defaultMatmulDtype(device: DeviceOptions['device'], m: FeatureManifest): DType {
  if (device === 'cpu') return 'float32';
  if (device === 'webgpu') return 'float16';
  return halfTypeOf(m);
}

/** The 16-bit type of the features' model: the store's own, or for 8-bit stores the one they were made from. */
function halfTypeOf(m: FeatureManifest): DType {
  if (m.hiddenDtype === 'float16' || m.hiddenDtype === 'bfloat16') return m.hiddenDtype;
  return m.extract.quantSource ?? (m.extract.modelDtype === 'float16' ? 'float16' : 'bfloat16');
}

/** Training sessions skip graph optimisation: constant folding would materialise the features on the host. */
function createTrainSession(modelPath: string, device: DeviceOptions): Promise<ort.InferenceSession> {
  return createSession(modelPath, device, { graphOptimizationLevel: 'disabled' });
}

/** KVzip scores of the held-out positions, per layer [H, T]. */
async function heldOutTargets(storeDir: string, m: FeatureManifest, group: number[], testPos: Int32Array): Promise<Float32Array[]> {
  const H = m.model.H;
  const out: Float32Array[] = [];
  for (const layer of group) {
    const t = new Float32Array(H * testPos.length);
    let base = 0;
    let k = 0;
    for await (const chunk of readLayer(storeDir, layer)) {
      while (k < testPos.length && testPos[k]! < base + chunk.tokens) {
        const row = testPos[k]! - base;
        for (let h = 0; h < H; h++) t[h * testPos.length + k] = chunk.scores[row * H + h]!;
        k++;
      }
      base += chunk.tokens;
      if (k >= testPos.length) break;
    }
    out.push(t);
  }
  return out;
}

