// `fastkvzip train`: fit the gates on a feature store, the public recipe by default (SPEC §4).
//
// The loop (batch order, lr schedule, metrics, checkpoints) lives here in TypeScript; the math
// (forward, analytic backward, SGD-momentum update) runs in ONNX Runtime, K steps per
// session.run with the parameters kept on the device inside the run. Layers are independent:
// they are trained in groups sized to a memory budget, each group's features loaded straight
// from the store's Arrow files (zero-copy external data), so host memory stays bounded by one
// group whatever the store size.
import { existsSync, mkdirSync, rmSync, appendFileSync } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { Graph, encodeModel, type DType } from '../onnx/builder.js';
import { buildTrainGraph, PARAMS, paramShape, type GateDims, type RowPiece } from './graph.js';
import { initLayer, stack, unstack, zerosLike, type StackedParams } from './state.js';
import { BatchOrder, lrMultiplier, stepBlocks, subsample, topKRecall } from './schedule.js';
import type { GateSet, GateLayerParams } from './types.js';
import { readManifest, readLayer, layerBlocks, storeFormOf, HIDDEN_BYTES, type FeatureManifest } from '../features/index.js';
import { storeRows } from './positions.js';
import { createSession, ort, type DeviceOptions } from '../runtime/session.js';
import { writeFileAtomicSync, writeJsonAtomic } from '../util/atomic.js';
import { UserError } from '../util/errors.js';
import { createProgress } from '../util/progress.js';
import { readCheckpoint, writeCheckpoint } from './checkpoint.js';
import { plotCurves } from './plot.js';
import { writeGateSetFile } from './gate-file.js';

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
  resume: boolean;
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
  };
  return createHash('sha256').update(JSON.stringify(id)).digest('hex').slice(0, 16);
}

export async function train(o: TrainOptions): Promise<TrainSummary> {
  const t0 = Date.now();
  const m = await readManifest(o.features);
  if (m.shards.length === 0) throw new UserError(`${o.features}: the feature store holds no contexts yet`);
  const G = o.group ?? m.model.G;
  const dimsBase = { D: m.model.D, H: m.model.H, G, r: o.rank, S: o.sinks };
  const layers = m.model.scoredLayers;

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
  const perLayer = 2 * usedTokens * (m.model.D * HIDDEN_BYTES[m.hiddenDtype] + m.model.H * 4 + (form.quantBlock ? (m.model.D / form.quantBlock) * 4 : 0));
  const groupSize = Math.max(1, Math.min(layers.length, Math.floor(o.memoryBudget / perLayer)));
  const groups: number[][] = [];
  for (let i = 0; i < layers.length; i += groupSize) groups.push(layers.slice(i, i + groupSize));

  mkdirSync(o.out, { recursive: true });

  const identity = runIdentity(o, m, dimsBase, total);
  const mm: DType = o.matmulDtype ?? (o.device.device === 'cpu' ? 'float32' : halfTypeOf(m));
  const logPath = path.join(o.out, 'log.jsonl');
  if (!o.resume && existsSync(logPath)) rmSync(logPath);

  const metricSteps = blocks.filter((b) => b.metric).map((b) => b.end - 1);
  const metrics = {
    loss: metricSteps.map(() => Array(layers.length).fill(NaN)),
    acc: metricSteps.map(() => Array(layers.length).fill(NaN)),
    lossTrain: metricSteps.map(() => Array(layers.length).fill(NaN)),
    accTrain: metricSteps.map(() => Array(layers.length).fill(NaN)),
  };
  const finalParams: GateLayerParams[] = new Array(layers.length);
  const results: LayerResult[] = new Array(layers.length);
  const progress = createProgress({ label: o.label ?? 'train', total: o.steps * groups.length, unit: 'steps', quiet: o.quiet, plain: o.plainProgress });
  let testTargets: Float32Array[] | null = null;

  for (let gi = 0; gi < groups.length; gi++) {
    const group = groups[gi]!;
    const dims: GateDims = { L: group.length, ...dimsBase };
    const ckptPath = path.join(o.out, 'checkpoints', `group-${gi}.safetensors`);
    // ONNX Runtime only reads external data from the model's own folder (symlinks resolved),
    // so the small graph file goes into the store root, under a temp name the store cleans up.
    const modelPath = path.join(o.features, `.train-${process.pid}.tmp-${gi}.onnx`);
    writeFileAtomicSync(modelPath, encodeModel(await trainGraph(o.features, m, group, dims, mm, o.momentum, usedShards.length), { metadata: { purpose: 'fastkvzip gate training' } }));

    let state: { params: StackedParams; bufs: StackedParams; nextBlock: number } = {
      params: stack(group.map((l) => initLayer(dimsBase, o.seed, l)), dims),
      bufs: zerosLike(dims),
      nextBlock: 0,
    };
    if (o.resume && existsSync(ckptPath)) {
      const ck = readCheckpoint(ckptPath, dims);
      if (ck.identity === identity) {
        state = { params: ck.params, bufs: ck.bufs, nextBlock: ck.nextBlock };
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
        progress.log(`resuming group ${gi} from step ${blocks[state.nextBlock]?.start ?? o.steps}`);
      } else {
        progress.log(`checkpoint ${ckptPath} belongs to another run; starting group ${gi} afresh`);
      }
    }

    const session = await createTrainSession(modelPath, o.device);
    const testIdx = new ort.Tensor('int64', BigInt64Array.from(testPos, (p) => BigInt(p)), [testPos.length]);
    let lastCkpt = Date.now();
    const ckptRows: { step: number; testLoss: number[]; testAcc: number[]; trainLoss: number[]; trainAcc: number[] }[] = [];
    metricSteps.forEach((step, mi) => {
      if (group.every((l) => !Number.isNaN(metrics.loss[mi]![layers.indexOf(l)]!))) {
        ckptRows.push({
          step,
          testLoss: group.map((l) => metrics.loss[mi]![layers.indexOf(l)]!),
          testAcc: group.map((l) => metrics.acc[mi]![layers.indexOf(l)]!),
          trainLoss: group.map((l) => metrics.lossTrain[mi]![layers.indexOf(l)]!),
          trainAcc: group.map((l) => metrics.accTrain[mi]![layers.indexOf(l)]!),
        });
      }
    });
    let lastOut: ort.InferenceSession.OnnxValueMapType | null = null;
    for (let bi = state.nextBlock; bi < blocks.length; bi++) {
      const blk = blocks[bi]!;
      const K = blk.end - blk.start;
      const idx = new BigInt64Array(K * batch);
      const lr = new Float32Array(K);
      for (let k = 0; k < K; k++) {
        const step = blk.start + k;
        const pos = order.at(step);
        for (let j = 0; j < batch; j++) idx[k * batch + j] = BigInt(pos[j]!);
        lr[k] = o.lr * lrMultiplier(step, o.steps);
      }
      const feeds: Record<string, ort.Tensor> = {
        batch_idx: new ort.Tensor('int64', idx, [K, batch]),
        lr: new ort.Tensor('float32', lr, [K]),
        test_idx: testIdx,
      };
      for (const n of PARAMS) {
        feeds[n] = new ort.Tensor('float32', state.params[n], paramShape(n, dims));
        feeds[`${n}.buf`] = new ort.Tensor('float32', state.bufs[n], paramShape(n, dims));
      }
      const out = await session.run(feeds);
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
      if (blk.metric) {
        const mi = metricSteps.indexOf(step);
        group.forEach((l, j) => {
          const li = layers.indexOf(l);
          metrics.loss[mi]![li] = testLoss[j]!;
          metrics.acc[mi]![li] = testAcc[j]!;
          metrics.lossTrain[mi]![li] = lastTrainLoss[j]!;
          metrics.accTrain[mi]![li] = lastTrainAcc[j]!;
        });
        ckptRows.push({ step, testLoss, testAcc, trainLoss: lastTrainLoss, trainAcc: lastTrainAcc });
        const lines = group.map((l, j) =>
          JSON.stringify({ step, layer: l, group: gi, lr: lr[K - 1], train_loss: lastTrainLoss[j], train_acc: lastTrainAcc[j], test_loss: testLoss[j], test_acc: testAcc[j], seconds: (Date.now() - t0) / 1000 }),
        );
        appendFileSync(logPath, lines.join('\n') + '\n');
      }
      progress.update(gi * o.steps + blk.end, {
        group: `${gi + 1}/${groups.length}`,
        loss: mean(lastTrainLoss),
        'held-out': mean(testLoss),
        acc: mean(testAcc),
      });
      if (Date.now() - lastCkpt > o.checkpointEvery * 1000 && bi + 1 < blocks.length) {
        await writeCheckpoint(ckptPath, { identity, params: state.params, bufs: state.bufs, nextBlock: state.nextBlock, metrics: ckptRows }, dims);
        lastCkpt = Date.now();
      }
    }
    await writeCheckpoint(ckptPath, { identity, params: state.params, bufs: state.bufs, nextBlock: state.nextBlock, metrics: ckptRows }, dims);

    // Final held-out metrics and the top-30 % recall table for this group.
    if (!lastOut) {
      // Everything was restored from a finished checkpoint: one zero-step run evaluates it.
      const feeds: Record<string, ort.Tensor> = {
        batch_idx: new ort.Tensor('int64', new BigInt64Array(0), [0, batch]),
        lr: new ort.Tensor('float32', new Float32Array(0), [0]),
        test_idx: testIdx,
      };
      for (const n of PARAMS) {
        feeds[n] = new ort.Tensor('float32', state.params[n], paramShape(n, dims));
        feeds[`${n}.buf`] = new ort.Tensor('float32', state.bufs[n], paramShape(n, dims));
      }
      lastOut = await session.run(feeds);
    }
    const testScores = lastOut.test_scores!.data as Float32Array; // [L, H, T]
    testTargets = await heldOutTargets(o.features, m, group, testPos);
    const T = testPos.length;
    const H = dims.H;
    const lastTrain = ckptRows.length ? ckptRows[ckptRows.length - 1]! : null;
    const unstacked = unstack(state.params, dims);
    group.forEach((l, j) => {
      const li = layers.indexOf(l);
      let recall = 0;
      for (let h = 0; h < H; h++) {
        const gate = testScores.subarray((j * H + h) * T, (j * H + h + 1) * T);
        const ref = testTargets![j]!.subarray(h * T, (h + 1) * T);
        recall += topKRecall(ref, gate, 0.3);
      }
      finalParams[li] = unstacked[j]!;
      results[li] = {
        layer: l,
        testLoss: (lastOut!.test_loss!.data as Float32Array)[j]!,
        testAcc: (lastOut!.test_acc!.data as Float32Array)[j]!,
        trainLoss: lastTrain?.trainLoss[j] ?? NaN,
        trainAcc: lastTrain?.trainAcc[j] ?? NaN,
        recall30: recall / H,
      };
    });
    await session.release();
    rmSync(modelPath, { force: true });
  }
  progress.stop();

  const gates: GateSet = {
    ...dimsBase,
    layers,
    params: finalParams,
    modelDtype: (m.extract.modelDtype === 'float32' || m.extract.modelDtype === 'float16' ? m.extract.modelDtype : 'bfloat16') as GateSet['modelDtype'],
    metrics,
    meta: {
      model_id: m.model.id,
      revision: m.model.revision ?? '',
      commit: m.model.commit ?? '',
      recipe: JSON.stringify(m.recipe),
      train: JSON.stringify({ steps: o.steps, batch, lr: o.lr, momentum: o.momentum, seed: o.seed, rank: o.rank, sinks: o.sinks, tokens: total }),
    },
  };
  const gatesPath = path.join(o.out, GATES_FILE);
  await writeGateSet(gatesPath, gates);
  plotCurves(path.join(o.out, 'loss.svg'), 'loss (BCE)', metricSteps, metrics.lossTrain, metrics.loss, layers, { log: true });
  plotCurves(path.join(o.out, 'acc.svg'), 'accuracy @0.05', metricSteps, metrics.accTrain, metrics.acc, layers, { min: 0, max: 1 });
  const summary: TrainSummary = {
    gates: gatesPath,
    out: o.out,
    device: o.device.device,
    steps: o.steps,
    batch,
    lr: o.lr,
    seed: o.seed,
    tokens: { total, train: trainPos.length, test: testPos.length },
    groups,
    layers: results,
    mean: { testLoss: mean(results.map((r) => r.testLoss)), testAcc: mean(results.map((r) => r.testAcc)), recall30: mean(results.map((r) => r.recall30)) },
    seconds: (Date.now() - t0) / 1000,
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    options: { rank: o.rank, sinks: o.sinks, G, momentum: o.momentum, evalEvery: o.evalEvery, maxTokens: o.maxTokens ?? null, subsample: o.subsample ?? 1, matmulDtype: mm, memoryBudget: o.memoryBudget },
  };
  await writeJsonAtomic(path.join(o.out, 'summary.json'), summary);
  return summary;
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

/** Gates as JSON-free binary: safetensors with the GateSet metadata (read back by readGateSet). */
export async function writeGateSet(file: string, gates: GateSet): Promise<void> {
  await writeGateSetFile(file, gates);
}

