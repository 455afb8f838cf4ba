// `--format safetensors`: the same tensors and dtypes as the .pt, named `layers.{i}.{key}`
// (i = position in gates.layers), with the description in `__metadata__` (strings only).
import type { GateLayerParams, GateModelDtype, GateSet } from '../gate/types.js';
import { openSafetensors, rawToF32, writeSafetensors, type SafetensorsDType, type TensorToWrite } from '../model/safetensors/index.js';
import { encodeTensor, gateLayerTensors, gateStateDtypes, gateStateShapes, GATE_STATE_KEYS, METRIC_KEYS, PARAM_FIELD, validateGateSet, type TensorDtype } from '../gate/gate-tensors.js';
import { fileError } from '../util/errors.js';

const ST_DTYPE: Record<Exclude<TensorDtype, 'float64'>, SafetensorsDType> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };

/** Metadata keys this writer sets; other keys come from gates.meta. */
export const GATE_ST_KEYS = ['format', 'fastkvzip_format', 'layers', 'D', 'H', 'G', 'r', 'S', 'model_dtype', 'metrics'] as const;

/** Per-layer value of the last evaluation, and the mean over layers, for each metric. */
export function metricsSummary(gates: GateSet): Record<string, unknown> | undefined {
  const m = gates.metrics;
  if (!m) return undefined;
  const out: Record<string, unknown> = { evals: m.loss.length };
  for (const [pyKey, field] of METRIC_KEYS) {
    const last = m[field].at(-1);
    if (!last) continue;
    out[`final_${pyKey}`] = last;
    out[`mean_final_${pyKey}`] = last.reduce((a, b) => a + b, 0) / last.length;
  }
  return out;
}

export function gateSafetensorsMetadata(gates: GateSet): Record<string, string> {
  const meta: Record<string, string> = { ...(gates.meta ?? {}) };
  meta.format = 'pt'; // what transformers expects; tensors use PyTorch layouts
  meta.fastkvzip_format = 'gates-v1';
  meta.layers = JSON.stringify(gates.layers);
  for (const k of ['D', 'H', 'G', 'r', 'S'] as const) meta[k] = String(gates[k]);
  meta.model_dtype = gates.modelDtype;
  const summary = metricsSummary(gates);
  if (summary) meta.metrics = JSON.stringify(summary);
  return meta;
}

/** Write `gates` as safetensors (atomic; tensors are converted one at a time while writing). */
export async function writeGateSafetensors(file: string, gates: GateSet): Promise<void> {
  validateGateSet(gates);
  const tensors: TensorToWrite[] = [];
  gates.layers.forEach((_, pos) => {
    for (const t of gateLayerTensors(gates, pos)) {
      const dtype = t.dtype as Exclude<TensorDtype, 'float64'>;
      tensors.push({
        name: `layers.${pos}.${t.key}`,
        dtype: ST_DTYPE[dtype],
        shape: t.shape,
        // a generator, so the fp32 -> bf16 copy exists only while this tensor is written
        data: (function* () {
          yield encodeTensor(t.values, dtype);
        })(),
      });
    }
  });
  await writeSafetensors(file, tensors, gateSafetensorsMetadata(gates));
}

/** Read a file written by writeGateSafetensors back into a GateSet (fp32 values). */
export function readGateSafetensors(file: string): GateSet {
  const st = openSafetensors(file);
  const md = st.metadata;
  if (md.fastkvzip_format !== 'gates-v1') throw fileError(file, 'not a fastkvzip gate export (metadata fastkvzip_format is not gates-v1)');
  const int = (k: string): number => {
    const v = Number(md[k]);
    if (!Number.isInteger(v) || v < 0) throw fileError(file, `metadata ${k} is not an integer`);
    return v;
  };
  let layers: number[];
  try {
    layers = JSON.parse(md.layers ?? '');
  } catch {
    throw fileError(file, 'metadata "layers" is not a JSON list');
  }
  if (!Array.isArray(layers)) throw fileError(file, 'metadata "layers" is not a JSON list');
  const modelDtype = md.model_dtype as GateModelDtype;
  if (!['float32', 'float16', 'bfloat16'].includes(modelDtype)) throw fileError(file, `metadata model_dtype "${md.model_dtype}" is unknown`);
  const dims = { D: int('D'), H: int('H'), G: int('G'), r: int('r'), S: int('S') };
  const shapes = gateStateShapes(dims);
  const dtypes = gateStateDtypes(modelDtype);
  const params = layers.map((_, pos) => {
    const p = {} as GateLayerParams;
    for (const key of GATE_STATE_KEYS) {
      const name = `layers.${pos}.${key}`;
      if (!st.has(name)) throw fileError(file, `missing tensor ${name}`);
      const info = st.info(name);
      if (info.shape.join(',') !== shapes[key].join(',')) throw fileError(file, `tensor ${name} has shape [${info.shape.join(', ')}], expected [${shapes[key].join(', ')}]`);
      const want = ST_DTYPE[dtypes[key] as Exclude<TensorDtype, 'float64'>];
      if (info.dtype !== want) throw fileError(file, `tensor ${name} is ${info.dtype}, expected ${want}`);
      p[PARAM_FIELD[key]] = Float32Array.from(rawToF32(info.dtype, st.readRawSync(name), name));
    }
    return p;
  });
  const meta: Record<string, string> = {};
  for (const [k, v] of Object.entries(md)) if (!(GATE_ST_KEYS as readonly string[]).includes(k)) meta[k] = v;
  const gates: GateSet = { ...dims, layers, params, modelDtype };
  if (Object.keys(meta).length > 0) gates.meta = meta;
  return gates;
}
