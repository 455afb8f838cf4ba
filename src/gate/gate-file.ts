// The trainer's own output: fp32 master gates in PyTorch layouts, as safetensors with the
// GateSet description in the metadata. `export` turns it into the public formats.
import { openSafetensors, writeSafetensors, type TensorToWrite } from '../model/safetensors/index.js';
import { fileError } from '../util/errors.js';
import type { GateLayerParams, GateSet } from './types.js';
import { GATE_STATE_KEYS, PARAM_FIELD, gateStateShapes, validateGateSet } from '../export/gateTensors.js';
import { UserError } from '../util/errors.js';

/** (GateLayerParams field, state-dict key, shape) of every gate tensor, in the public key order. */
const FIELDS: [keyof GateLayerParams, string, (g: GateSet) => number[]][] = GATE_STATE_KEYS.map((key) => [PARAM_FIELD[key], key, (g: GateSet) => gateStateShapes(g)[key]]);

export async function writeGateSetFile(file: string, gates: GateSet): Promise<void> {
  const tensors: TensorToWrite[] = [];
  gates.params.forEach((p, i) => {
    for (const [key, name, shape] of FIELDS) tensors.push({ name: `layers.${i}.${name}`, dtype: 'F32', shape: shape(gates), data: p[key] });
  });
  const { params: _params, ...desc } = gates;
  await writeSafetensors(file, tensors, { fastkvzip_gates: JSON.stringify(desc) });
}

export function readGateSetFile(file: string): GateSet {
  const st = openSafetensors(file);
  const raw = st.metadata.fastkvzip_gates;
  if (!raw) throw fileError(file, 'not a fastkvzip gates file (no fastkvzip_gates metadata)');
  let desc: Omit<GateSet, 'params'>;
  try {
    desc = JSON.parse(raw);
  } catch {
    throw fileError(file, 'corrupt fastkvzip_gates metadata');
  }
  checkDescription(file, desc);
  const params = desc.layers.map((_, i) => {
    const p = {} as GateLayerParams;
    for (const [key, name, shape] of FIELDS) {
      const t = `layers.${i}.${name}`;
      if (!st.has(t)) throw fileError(file, `missing tensor ${t}`);
      const info = st.info(t);
      const want = shape(desc as GateSet);
      if (info.shape.join(',') !== want.join(',')) throw fileError(file, `tensor ${t} has shape [${info.shape}], expected [${want}]`);
      p[key] = st.readF32(t);
    }
    return p;
  });
  const gates = { ...desc, params };
  try {
    validateGateSet(gates); // finite values, dtype, metrics per layer: nothing corrupt becomes exported gates
  } catch (e) {
    if (e instanceof UserError) throw fileError(file, e.message.replace(/^gate set: /, ''));
    throw e;
  }
  return gates;
}

/** The metadata must describe a gate set before any of it is used to find tensors. */
function checkDescription(file: string, desc: unknown): asserts desc is Omit<GateSet, 'params'> {
  const d = desc as Record<string, unknown> | null;
  if (!d || typeof d !== 'object' || Array.isArray(d)) throw fileError(file, 'fastkvzip_gates metadata is not an object');
  if (!Array.isArray(d.layers)) throw fileError(file, 'fastkvzip_gates metadata has no "layers" list');
  for (const k of ['D', 'H', 'G', 'r', 'S']) {
    const v = d[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < (k === 'S' ? 0 : 1) || v > 1 << 20) throw fileError(file, `fastkvzip_gates metadata: ${k} must be a ${k === 'S' ? 'non-negative' : 'positive'} integer (got ${JSON.stringify(v)})`);
  }
}
