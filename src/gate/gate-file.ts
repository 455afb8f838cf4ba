// The trainer's own output: fp32 master gates in PyTorch layouts, as safetensors with the
// GateSet description in the metadata. `export` turns it into the public formats.
import { openSafetensors, writeSafetensors, type TensorToWrite } from '../model/safetensors/index.js';
import { fileError } from '../util/errors.js';
import type { GateLayerParams, GateSet } from './types.js';
import { GATE_STATE_KEYS, PARAM_FIELD, gateStateShapes } from './gate-tensors.js';

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
  return { ...desc, params };
}
