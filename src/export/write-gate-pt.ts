// `--format pt`: the public gate checkpoint, written without Python. Layout is torch.save's
// zip (archive/data.pkl, archive/byteorder, archive/data/<key>, archive/version) holding
//   {"module": [OrderedDict state dict per gate], "loss", "acc", "loss_train", "acc_train"}
// with metric arrays [numEvals, numGates] in float64. Tensors are converted and written one
// storage at a time, so memory stays at the size of the largest tensor.
import * as path from 'node:path';
import type { GateSet } from '../gate/types.js';
import { encodeTensor, gateLayerTensors, gateStateDtypes, gateStateShapes, GATE_STATE_KEYS, METRIC_KEYS, numel, validateGateSet } from '../gate/gate-tensors.js';
import { float64ArrayPickle, orderedDictPickle, pickle, py, StoredZipWriter, tensorPickle, type PyValue } from './torch-file/index.js';
import type { TensorDtype } from '../util/dtype.js';
import { UserError } from '../util/errors.js';

export interface WriteGatePtOptions {
  /**
   * How the metric arrays are stored: 'numpy' (default; numpy float64 ndarrays as in the
   * public files, needs torch.load(weights_only=False)) or 'tensor' (float64 torch tensors,
   * which also load with weights_only=True).
   */
  metricsAs?: 'numpy' | 'tensor';
  /**
   * Write one state dict per model layer (list index = model layer index) instead of one
   * per gate, filling ungated layers with neutral placeholders (zero projections, unit
   * norms) and NaN metric columns. kvpress indexes its gate list by model layer, so models
   * whose gates skip layers (Gemma-3) need this to be used there.
   */
  modelLayerCount?: number;
  /** Testing: zip64 records even for small files (see ZipWriterOptions). */
  forceZip64?: 'end-records' | 'all';
}

interface PendingStorage {
  key: string;
  dtype: TensorDtype;
  /** produced when the entry is written, so large tensors never coexist in converted form */
  values: () => Float32Array | Float64Array;
}

/** Write `gates` to `file` as a PyTorch checkpoint; atomic (temp file, then rename). */
export async function writeGatePt(file: string, gates: GateSet, options: WriteGatePtOptions = {}): Promise<void> {
  validateGateSet(gates);
  const slots = layerSlots(gates, options.modelLayerCount);
  const storages: PendingStorage[] = [];
  const addStorage = (dtype: TensorDtype, shape: number[], values: () => Float32Array | Float64Array): PyValue => {
    const key = String(storages.length);
    storages.push({ key, dtype, values });
    return tensorPickle(key, dtype, shape);
  };

  const shapes = gateStateShapes(gates);
  const dtypes = gateStateDtypes(gates.modelDtype);
  const modules: PyValue[] = slots.map((pos) => {
    if (pos < 0) {
      return orderedDictPickle(
        GATE_STATE_KEYS.map((key) => [key, addStorage(dtypes[key], shapes[key], () => placeholderValues(key, numel(shapes[key])))]),
      );
    }
    return orderedDictPickle(gateLayerTensors(gates, pos).map((t) => [t.key, addStorage(t.dtype, t.shape, () => t.values)]));
  });

  const top: [PyValue, PyValue][] = [['module', py.list(modules)]];
  for (const [pyKey, field] of METRIC_KEYS) {
    const rows = gates.metrics?.[field] ?? [];
    const shape = [rows.length, slots.length];
    const values = new Float64Array(rows.length * slots.length);
    rows.forEach((row, e) => slots.forEach((pos, c) => (values[e * slots.length + c] = pos < 0 ? NaN : row[pos]!)));
    top.push([pyKey, options.metricsAs === 'tensor' ? addStorage('float64', shape, () => values) : float64ArrayPickle(shape, values)]);
  }

  const archive = archiveName(file);
  const zip = await StoredZipWriter.create(file, { forceZip64: options.forceZip64 });
  try {
    await zip.addEntry(`${archive}/data.pkl`, pickle(py.dict(top)));
    await zip.addEntry(`${archive}/byteorder`, Buffer.from('little'));
    for (const s of storages) await zip.addEntry(`${archive}/data/${s.key}`, encodeStorage(s));
    await zip.addEntry(`${archive}/version`, Buffer.from('3\n'));
  } catch (err) {
    await zip.abort();
    throw err;
  }
  await zip.finish();
}

function encodeStorage(s: PendingStorage): Uint8Array {
  const v = s.values();
  if (v instanceof Float64Array) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  return encodeTensor(v, s.dtype);
}

/** Position in gates.layers for each list slot; -1 marks a placeholder. */
function layerSlots(gates: GateSet, modelLayerCount: number | undefined): number[] {
  if (modelLayerCount === undefined) return gates.layers.map((_, pos) => pos);
  if (!Number.isInteger(modelLayerCount) || modelLayerCount < 1) throw new UserError(`modelLayerCount must be a positive integer (got ${modelLayerCount})`);
  const slots = new Array<number>(modelLayerCount).fill(-1);
  gates.layers.forEach((layer, pos) => {
    if (layer >= modelLayerCount) throw new UserError(`gate for model layer ${layer} does not fit modelLayerCount ${modelLayerCount}`);
    slots[layer] = pos;
  });
  return slots;
}

function placeholderValues(key: string, n: number): Float32Array {
  const v = new Float32Array(n);
  if (key === 'q_norm.weight' || key === 'k_norm.weight') v.fill(1);
  return v;
}

/** torch names the archive folder after the file (without extension); keep it to safe characters. */
function archiveName(file: string): string {
  const base = path.basename(file).replace(/\.[^.]*$/, '');
  return /^[A-Za-z0-9_.-]+$/.test(base) ? base : 'archive';
}
