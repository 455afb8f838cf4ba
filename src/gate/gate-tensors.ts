// The gate tensor schema: the state-dict keys, shapes and dtypes of one gate layer as the public
// checkpoints have them (docs/method.md §3, §5), plus the checks every writer runs first.
import { endianness } from 'node:os';
import { GATE_STATE_KEYS, type GateDims, type GateModelDtype, type GateSet, type GateStateKey } from './types.js';
import { f32ArrayToBf16, f32ArrayToF16 } from '../util/half.js';
import { UserError } from '../util/errors.js';
import type { TensorDtype } from '../util/dtype.js';

export { GATE_STATE_KEYS, type GateStateKey } from './types.js';

/** Checkpoint key of each GateMetrics field ("loss"/"acc" are the held-out ones). */
export const METRIC_KEYS = [
  ['loss', 'loss'],
  ['acc', 'acc'],
  ['loss_train', 'lossTrain'],
  ['acc_train', 'accTrain'],
] as const;

export function gateStateShapes({ D, H, G, r, S }: Omit<GateDims, 'L'>): Record<GateStateKey, number[]> {
  return {
    'q_proj.weight': [H * G * r, D],
    'q_proj.bias': [H * G * r],
    'k_proj.weight': [H * r, D],
    'q_norm.weight': [r],
    'k_norm.weight': [r],
    b: [H, 1, G],
    k_base: [H, 1, S, r],
  };
}

/** Projections and `b` in the model dtype (nn.Linear / nn.Parameter made with it); norms and sinks fp32. */
export function gateStateDtypes(modelDtype: GateModelDtype): Record<GateStateKey, TensorDtype> {
  return {
    'q_proj.weight': modelDtype,
    'q_proj.bias': modelDtype,
    'k_proj.weight': modelDtype,
    'q_norm.weight': 'float32',
    'k_norm.weight': 'float32',
    b: modelDtype,
    k_base: 'float32',
  };
}

export interface GateTensor {
  key: GateStateKey;
  dtype: TensorDtype;
  shape: number[];
  values: Float32Array;
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Tensors of the gate at position `pos` of `gates.layers`, in GATE_STATE_KEYS order. */
export function gateLayerTensors(gates: GateSet, pos: number): GateTensor[] {
  const shapes = gateStateShapes(gates);
  const dtypes = gateStateDtypes(gates.modelDtype);
  const params = gates.params[pos]!;
  return GATE_STATE_KEYS.map((key) => ({ key, dtype: dtypes[key], shape: shapes[key], values: params[key] }));
}

/** Throws a UserError naming the first inconsistency (dimensions, array sizes, non-finite values, metrics). */
export function validateGateSet(gates: GateSet): void {
  const bad = (problem: string): never => {
    throw new UserError(`gate set: ${problem}`);
  };
  for (const k of ['D', 'H', 'G', 'r'] as const) {
    if (!Number.isInteger(gates[k]) || gates[k] < 1) bad(`${k} must be a positive integer (got ${gates[k]})`);
  }
  if (!Number.isInteger(gates.S) || gates.S < 0) bad(`S must be a non-negative integer (got ${gates.S})`);
  if (!['float32', 'float16', 'bfloat16'].includes(gates.modelDtype)) bad(`unknown modelDtype ${String(gates.modelDtype)}`);
  if (gates.layers.length === 0) bad('no layers');
  if (gates.layers.length !== gates.params.length) bad(`${gates.layers.length} layer indices but ${gates.params.length} parameter sets`);
  const seen = new Set<number>();
  for (const l of gates.layers) {
    if (!Number.isInteger(l) || l < 0) bad(`layer index ${l} is not a non-negative integer`);
    if (seen.has(l)) bad(`layer index ${l} appears twice`);
    seen.add(l);
  }
  const shapes = gateStateShapes(gates);
  gates.params.forEach((p, pos) => {
    for (const key of GATE_STATE_KEYS) {
      const arr = p[key];
      const want = numel(shapes[key]);
      const where = `gate ${pos} (model layer ${gates.layers[pos]}) ${key}`;
      if (!(arr instanceof Float32Array)) bad(`${where} is not a Float32Array`);
      if (arr.length !== want) bad(`${where} has ${arr.length} values, expected ${want} ([${shapes[key].join(', ')}])`);
      for (let i = 0; i < arr.length; i++) {
        if (!Number.isFinite(arr[i]!)) bad(`${where} has a non-finite value (${arr[i]}) at index ${i}`);
      }
    }
  });
  if (gates.metrics) {
    const n = gates.layers.length;
    for (const [name, rows] of Object.entries(gates.metrics)) {
      if (!Array.isArray(rows)) bad(`metrics.${name} is not an array`);
      (rows as unknown[]).forEach((row, i) => {
        if (!Array.isArray(row) || row.length !== n) bad(`metrics.${name}[${i}] must have one value per layer (${n})`);
        if ((row as unknown[]).some((v) => typeof v !== 'number')) bad(`metrics.${name}[${i}] holds a non-number`);
      });
    }
  }
}

function assertLittleEndianHost(): void {
  if (endianness() !== 'LE') throw new Error('exporting tensors needs a little-endian host');
}

/** Little-endian bytes of `values` stored as `dtype` (fp32 -> bf16/fp16 rounds to nearest even). */
export function encodeTensor(values: Float32Array, dtype: TensorDtype): Uint8Array {
  assertLittleEndianHost();
  switch (dtype) {
    case 'float32':
      return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    case 'bfloat16':
      return halfBytes(values, f32ArrayToBf16(values), 0x7f80, dtype);
    case 'float16':
      return halfBytes(values, f32ArrayToF16(values), 0x7c00, dtype);
    case 'float64': {
      const d = Float64Array.from(values);
      return new Uint8Array(d.buffer);
    }
  }
}

/** The 16-bit patterns as bytes, refusing finite inputs that rounded to infinity. */
function halfBytes(values: Float32Array, h: Uint16Array, expMask: number, dtype: TensorDtype): Uint8Array {
  for (let i = 0; i < h.length; i++) {
    if ((h[i]! & expMask) === expMask && Number.isFinite(values[i]!)) {
      throw new UserError(`value ${values[i]} at index ${i} overflows ${dtype}`);
    }
  }
  return new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
}
