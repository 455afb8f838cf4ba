// `train --gpus all|0,1,… | --workers n`: the layer groups split over worker processes (each
// layer's gate is independent), each `train --layer-shard k/n` into <out>.parts/, then joined
// into the folder one `train` writes: gates.safetensors, summary.json, log.jsonl, the plots.
// The joined gates equal a one-process `train --layers-per-group g` with the workers' g: a
// group's gates depend on the group's size in the last bits only (batched kernels), never on
// which process ran it. Reruns resume every slice from its checkpoints; the join is redone.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { readManifest, acquireLock } from '../features/index.js';
import { readGateFile, writeGateFile } from '../gate/gate-file.js';
import { plotPanels } from '../gate/plot.js';
import { stepBlocks } from '../gate/schedule.js';
import { claimTrainOut, TRAIN_MARK } from '../gate/train-out.js';
import { CURVES_FILE, GATES_FILE, type TrainSummary } from '../gate/train.js';
import type { GateMetrics, GateSet } from '../gate/types.js';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';
import { ensureOutDir } from '../util/owned-files.js';
import { createProgress } from '../util/progress.js';
import { UserError } from '../util/errors.js';
import { describeSlot, type WorkerSlot } from './gpus.js';
import { runWorkers, type WorkerJob } from './workers.js';
import { threadsPerWorker } from './extract-workers.js';

export interface TrainWorkersOptions {
  /** the train command line without the flags each worker gets set */
  args: string[];
  slots: WorkerSlot[];
  features: string;
  out: string;
  threads: number;
  steps: number;
  evalEvery: number;
  /** layers per group (default: the layers divided evenly over the workers) */
  layersPerGroup?: number;
  overwrite?: boolean;
  quiet?: boolean;
  plainProgress?: boolean;
  log?: (line: string) => void;
  /** progress-bar label (default "train") */
  label?: string;
}

export interface TrainWorkersSummary extends TrainSummary {
  workers: { slice: string; device: string; dir: string; layers: number[]; seconds: number }[];
}

export async function trainWithWorkers(o: TrainWorkersOptions): Promise<TrainWorkersSummary> {
  const log = o.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const t0 = Date.now();
  const m = await readManifest(o.features);
  const L = m.model.scoredLayers.length;
  const n = Math.min(o.slots.length, L);
  if (n < o.slots.length) log(`train: ${L} layer(s) to train: ${n} worker(s) of the ${o.slots.length} asked for`);
  const layersPerGroup = o.layersPerGroup ?? Math.ceil(L / n);
  const slots = o.slots.slice(0, n);
  ensureOutDir(o.out);
  // refuse a folder of someone else's files now, not after the training (the join claims it then)
  const foreign = readdirSync(o.out).filter((x) => x !== '.lock');
  if (foreign.length && !existsSync(path.join(o.out, TRAIN_MARK)) && !o.overwrite) {
    throw new UserError(`${o.out}: is not empty (${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', …' : ''}) and is not a fastkvzip train folder; pass --overwrite to replace it, or choose another --out`);
  }
  const root = `${path.resolve(o.out)}.parts`;
  const dirs = slots.map((_, k) => path.join(root, `layers-${k}-of-${n}`));
  const threads = threadsPerWorker(o.threads, slots.filter((s) => s.device === 'cpu').length);
  const jobs: WorkerJob[] = slots.map((slot, k) => ({
    label: `layers ${k}/${n} ${describeSlot(slot)}`,
    args: [
      ...o.args,
      '--layer-shard', `${k}/${n}`,
      '--layers-per-group', String(layersPerGroup),
      '--out', dirs[k]!,
      '--device', slot.device,
      ...(slot.deviceId !== null ? ['--device-id', String(slot.deviceId)] : []),
      '--threads', String(threads),
      '--quiet',
      '--json',
    ],
  }));
  log(`train: ${n} worker(s) (${slots.map(describeSlot).join(', ')}), ${layersPerGroup} layer(s) per group, slices in ${root}`);

  // progress: the held-out evaluations logged so far, over all workers
  const evals = stepBlocks(o.steps, o.evalEvery).filter((b) => b.metric).length;
  const progress = createProgress({ label: o.label ?? 'train', total: evals * L, unit: 'layer-evals', quiet: o.quiet, plain: o.plainProgress });
  const poll = () => {
    let rows = 0;
    for (const d of dirs) {
      try {
        rows += readFileSync(path.join(d, 'log.jsonl'), 'utf8').split('\n').filter((l) => l.trim()).length;
      } catch {
        // not started yet
      }
    }
    progress.update(Math.min(rows, evals * L), { workers: n });
  };
  let results;
  try {
    results = await runWorkers(jobs, { log: (l) => progress.log(l), onTick: poll });
    poll();
  } finally {
    progress.stop();
  }
  const parts = results.map((r) => {
    try {
      return JSON.parse(r.stdout) as TrainSummary;
    } catch {
      throw new UserError(`${r.label}: finished without its JSON summary`);
    }
  });
  const summary = await joinSlices(o.out, dirs, parts, (Date.now() - t0) / 1000, o.overwrite ?? false);
  return {
    ...summary,
    workers: parts.map((p, k) => ({ slice: `${k}/${n}`, device: describeSlot(slots[k]!), dir: dirs[k]!, layers: p.part!.layers, seconds: results[k]!.seconds })),
  };
}

/** Joins the slices' outputs (in slice order: the layers ascend) into what one `train` writes in `out`. */
export async function joinSlices(out: string, dirs: string[], parts: TrainSummary[], seconds: number, overwrite: boolean): Promise<TrainSummary> {
  const first = parts[0]!;
  const identity = first.part?.runIdentity;
  parts.forEach((p, k) => {
    if (!p.part || p.part.runIdentity !== identity || p.part.index !== k || p.part.count !== parts.length) throw new UserError(`${dirs[k]}: not slice ${k}/${parts.length} of the same training run; delete ${path.dirname(dirs[k]!)} and rerun`);
  });
  const sets = dirs.map((d) => readGateFile(path.join(d, GATES_FILE)));
  const base = sets[0]!;
  for (const [k, g] of sets.entries()) {
    if (JSON.stringify(g.meta) !== JSON.stringify(base.meta) || g.D !== base.D || g.H !== base.H || g.G !== base.G || g.r !== base.r || g.S !== base.S) {
      throw new UserError(`${path.join(dirs[k]!, GATES_FILE)}: its gates do not match slice 0's (sizes or training metadata)`);
    }
  }
  const joinRows = (key: keyof GateMetrics) => base.metrics![key].map((_, i) => sets.flatMap((g) => g.metrics![key][i]!));
  const gates: GateSet = {
    ...base,
    layers: sets.flatMap((g) => g.layers),
    params: sets.flatMap((g) => g.params),
    metrics: base.metrics ? { loss: joinRows('loss'), acc: joinRows('acc'), lossTrain: joinRows('lossTrain'), accTrain: joinRows('accTrain') } : undefined,
  };

  const releaseLock = await acquireLock(out);
  try {
    await claimTrainOut(out, identity!, overwrite);
    await writeGateFile(path.join(out, GATES_FILE), gates);
    // the log rows in one run's order (group by group), group numbers counted over all slices
    let groupOffset = 0;
    const rows: string[] = [];
    parts.forEach((p, k) => {
      const file = path.join(dirs[k]!, 'log.jsonl');
      const lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()) : [];
      for (const l of lines) {
        const row = JSON.parse(l) as { group: number };
        rows.push(JSON.stringify({ ...row, group: row.group + groupOffset }));
      }
      groupOffset += p.groups.length;
    });
    await writeFileAtomic(path.join(out, 'log.jsonl'), rows.map((r) => r + '\n').join(''));
    const curves = dirs.map((d) => JSON.parse(readFileSync(path.join(d, CURVES_FILE), 'utf8')) as { stepLoss: number[][]; recallAt: number[][] });
    const join2 = (pick: (c: (typeof curves)[number]) => number[][]) => pick(curves[0]!).map((_, i) => curves.flatMap((c) => pick(c)[i]!.map((v) => (v === null ? NaN : v))));
    writeTrainPlots(out, { layers: gates.layers, steps: first.steps, batch: first.batch, evalEvery: first.options.evalEvery as number, metrics: gates.metrics!, stepLoss: join2((c) => c.stepLoss), recallAt: join2((c) => c.recallAt) });
    const layers = parts.flatMap((p) => p.layers);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
    const { part: _part, ...rest } = first;
    const summary: TrainSummary = {
      ...rest,
      gates: path.join(out, GATES_FILE),
      out,
      identity: identity!,
      groups: parts.flatMap((p) => p.groups),
      layers,
      mean: { testLoss: mean(layers.map((r) => r.testLoss)), testAcc: mean(layers.map((r) => r.testAcc)), recall30: mean(layers.map((r) => r.recall30)) },
      seconds,
      peakRssMiB: Math.max(...parts.map((p) => p.peakRssMiB)),
    };
    await writeJsonAtomic(path.join(out, 'summary.json'), summary);
    return summary;
  } finally {
    await releaseLock();
  }
}

/**
 * loss.svg and recall.svg as `train` draws them (src/gate/train.ts, same titles and panels),
 * from the joined metrics and curves.
 */
function writeTrainPlots(out: string, c: { layers: number[]; steps: number; batch: number; evalEvery: number; metrics: GateMetrics; stepLoss: number[][]; recallAt: number[][] }): void {
  const metricSteps = stepBlocks(c.steps, c.evalEvery).filter((b) => b.metric).map((b) => b.end);
  plotPanels(path.join(out, 'loss.svg'), 'Gate training loss (binary cross-entropy against the KVzip scores)', {
    yLabel: 'BCE loss',
    log: true,
    layers: c.layers,
    steps: c.steps,
    panels: [
      { title: `training batches (every step, ${c.batch} tokens)`, curve: { steps: c.stepLoss.map((_, i) => i + 1), values: c.stepLoss } },
      { title: `held-out tokens (every ${c.evalEvery} steps)`, curve: { steps: metricSteps, values: c.metrics.loss } },
    ],
  });
  plotPanels(path.join(out, 'recall.svg'), 'Held-out recall@30 %: share of the KVzip top-30 % tokens (per head) the gate also ranks top-30 %', {
    yLabel: 'recall@30%',
    min: 0,
    max: 1,
    layers: c.layers,
    steps: c.steps,
    panels: [{ title: `held-out tokens (every ${c.evalEvery} steps)`, curve: { steps: metricSteps, values: c.recallAt } }],
  });
}
