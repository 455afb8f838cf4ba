// Training checkpoints of one layer group: parameters, momentum buffers, the next block to
// run and the metrics so far. Written atomically, so a crash leaves the previous one intact.
import { openSafetensors, writeSafetensors } from '../model/safetensors/index.js';
import { PARAMS, paramShape, type GateDims } from './graph.js';
import type { StackedParams } from './state.js';
import { fileError } from '../util/errors.js';

export interface MetricRow {
  step: number;
  testLoss: number[];
  testAcc: number[];
  trainLoss: number[];
  trainAcc: number[];
}

export interface Checkpoint {
  identity: string;
  params: StackedParams;
  bufs: StackedParams;
  nextBlock: number;
  metrics: MetricRow[];
}

export async function writeCheckpoint(file: string, c: Checkpoint, d: GateDims): Promise<void> {
  const tensors = PARAMS.flatMap((n) => [
    { name: `param.${n}`, dtype: 'F32' as const, shape: paramShape(n, d), data: c.params[n] },
    { name: `buf.${n}`, dtype: 'F32' as const, shape: paramShape(n, d), data: c.bufs[n] },
  ]);
  await writeSafetensors(file, tensors, { identity: c.identity, next_block: String(c.nextBlock), metrics: JSON.stringify(c.metrics) });
}

export function readCheckpoint(file: string, d: GateDims): Checkpoint {
  const st = openSafetensors(file);
  const get = (name: string, shape: number[]) => {
    if (!st.has(name)) throw fileError(file, `checkpoint lacks ${name}`);
    if (st.info(name).shape.join(',') !== shape.join(',')) throw fileError(file, `checkpoint tensor ${name} has the wrong shape`);
    return st.readF32(name);
  };
  return {
    identity: st.metadata.identity ?? '',
    params: Object.fromEntries(PARAMS.map((n) => [n, get(`param.${n}`, paramShape(n, d))])) as StackedParams,
    bufs: Object.fromEntries(PARAMS.map((n) => [n, get(`buf.${n}`, paramShape(n, d))])) as StackedParams,
    nextBlock: Number(st.metadata.next_block ?? 0),
    metrics: JSON.parse(st.metadata.metrics ?? '[]'),
  };
}

