// The one gate file format. Every command that writes gates as safetensors writes it (`train`
// its fp32 master copies, `export --format safetensors` the published dtypes), the ONNX gate
// carries the same description in its metadata, and one reader takes them all:
//   tensors   `layers.{i}.{state-dict key}` (i = position in `layers`), PyTorch layouts, each in
//             fp32 or in its published dtype (projections and `b` in the model dtype)
//   metadata  strings: fastkvzip_format, layers, D, H, G, r, S, model_dtype, metrics (the last
//             evaluation, for readers of the hub page), metric_history (every evaluation), and
//             the gate set's own meta (model id, revision, recipe, ...).
import type { GateLayerParams, GateMetrics, GateModelDtype, GateSet } from './types.js';
import { openSafetensors, writeSafetensors, type SafetensorsDType, type TensorToWrite } from '../model/safetensors/index.js';
import { encodeTensor, gateLayerTensors, gateStateDtypes, gateStateShapes, GATE_STATE_KEYS, METRIC_KEYS, validateGateSet } from './gate-tensors.js';
import type { TensorDtype } from '../util/dtype.js';
import { fileError, UserError } from '../util/errors.js';

const ST_DTYPE: Record<Exclude<TensorDtype, 'float64'>, SafetensorsDType> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };

export const GATE_FORMAT = 'gates-v1';

/** Metadata keys of the description; any other key is the gate set's meta (or `format`, which safetensors readers expect). */
export const GATE_DESCRIPTION_KEYS = ['fastkvzip_format', 'layers', 'D', 'H', 'G', 'r', 'S', 'model_dtype', 'metrics', 'metric_history'] as const;
const NOT_META = new Set<string>([...GATE_DESCRIPTION_KEYS, 'format']);

/** How the tensors are stored: the trainer's fp32 master copies, or the dtypes of the public .pt. */
export type GateTensorDtypes = 'master' | 'published';

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

/** The gate set without its tensors, as string metadata (safetensors `__metadata__`, ONNX metadata_props). */
export function describeGates(gates: GateSet): Record<string, string> {
  const md: Record<string, string> = { ...(gates.meta ?? {}) };
  md.fastkvzip_format = GATE_FORMAT;
  md.layers = JSON.stringify(gates.layers);
  for (const k of ['D', 'H', 'G', 'r', 'S'] as const) md[k] = String(gates[k]);
  md.model_dtype = gates.modelDtype;
  const summary = metricsSummary(gates);
  if (summary) md.metrics = JSON.stringify(summary);
  if (gates.metrics) md.metric_history = JSON.stringify(Object.fromEntries(METRIC_KEYS.map(([pyKey, field]) => [pyKey, gates.metrics![field]])));
  return md;
}

/** Parse what describeGates wrote (errors name `file`). */
export function parseGateDescription(file: string, md: Record<string, string>): Omit<GateSet, 'params'> {
  if (md.fastkvzip_format !== GATE_FORMAT) throw fileError(file, `not a fastkvzip gates file (metadata fastkvzip_format is not ${GATE_FORMAT})`);
  const int = (k: string): number => {
    const v = Number(md[k]);
    if (md[k] === undefined || !Number.isInteger(v) || v < 0) throw fileError(file, `metadata ${k} is not an integer`);
    return v;
  };
  const json = (k: string): unknown => {
    try {
      return JSON.parse(md[k] ?? '');
    } catch {
      throw fileError(file, `metadata "${k}" is not JSON`);
    }
  };
  const layers = json('layers');
  if (!Array.isArray(layers) || !layers.every((l) => Number.isInteger(l) && l >= 0)) throw fileError(file, 'metadata "layers" is not a list of layer indices');
  const modelDtype = md.model_dtype as GateModelDtype;
  if (!['float32', 'float16', 'bfloat16'].includes(modelDtype)) throw fileError(file, `metadata model_dtype "${md.model_dtype}" is unknown`);
  const desc: Omit<GateSet, 'params'> = { D: int('D'), H: int('H'), G: int('G'), r: int('r'), S: int('S'), layers, modelDtype };
  if (md.metric_history !== undefined) {
    const h = json('metric_history') as Record<string, unknown>;
    const metrics = {} as GateMetrics;
    for (const [pyKey, field] of METRIC_KEYS) {
      const rows = h?.[pyKey];
      if (!Array.isArray(rows) || !rows.every((row) => Array.isArray(row) && row.length === layers.length && row.every((v) => typeof v === 'number'))) {
        throw fileError(file, `metadata metric_history.${pyKey} is not a list of per-layer rows`);
      }
      metrics[field] = rows as number[][];
    }
    desc.metrics = metrics;
  }
  const meta: Record<string, string> = {};
  for (const [k, v] of Object.entries(md)) if (!NOT_META.has(k)) meta[k] = v;
  if (Object.keys(meta).length > 0) desc.meta = meta;
  return desc;
}

/** Write `gates` (atomic; tensors are converted one at a time while writing). */
export async function writeGateFile(file: string, gates: GateSet, o: { dtypes?: GateTensorDtypes; /** false: write as given (tests of damaged files) */ validate?: boolean } = {}): Promise<void> {
  if (o.validate !== false) validateGateSet(gates);
  const master = (o.dtypes ?? 'master') === 'master';
  const tensors: TensorToWrite[] = [];
  gates.layers.forEach((_, pos) => {
    for (const t of gateLayerTensors(gates, pos)) {
      const dtype = master ? 'float32' : (t.dtype as Exclude<TensorDtype, 'float64'>);
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
  await writeSafetensors(file, tensors, { format: 'pt', ...describeGates(gates) }); // format: what transformers expects; the layouts are PyTorch's
}

/** Read a gate file (either tensor dtypes) into a GateSet with fp32 values. */
export function readGateFile(file: string): GateSet {
  const st = openSafetensors(file);
  const desc = parseGateDescription(file, legacyDescription(st.metadata));
  const shapes = gateStateShapes(desc);
  const published = gateStateDtypes(desc.modelDtype);
  const params = desc.layers.map((_, pos) => {
    const p = {} as GateLayerParams;
    for (const key of GATE_STATE_KEYS) {
      const name = `layers.${pos}.${key}`;
      if (!st.has(name)) throw fileError(file, `missing tensor ${name}`);
      const info = st.info(name);
      if (info.shape.join(',') !== shapes[key].join(',')) throw fileError(file, `tensor ${name} has shape [${info.shape.join(', ')}], expected [${shapes[key].join(', ')}]`);
      const allowed = new Set(['F32', ST_DTYPE[published[key] as Exclude<TensorDtype, 'float64'>]]);
      if (!allowed.has(info.dtype)) throw fileError(file, `tensor ${name} is ${info.dtype}, expected ${[...allowed].join(' or ')}`);
      p[key] = st.readF32(name);
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

/**
 * `train` output written before the formats were one: the same tensors (fp32), the description
 * as one JSON value under `fastkvzip_gates`. Rewritten into today's metadata.
 */
function legacyDescription(md: Record<string, string>): Record<string, string> {
  if (md.fastkvzip_format !== undefined || md.fastkvzip_gates === undefined) return md;
  try {
    const { params: _params, ...desc } = JSON.parse(md.fastkvzip_gates) as GateSet;
    return describeGates({ ...desc, params: [] });
  } catch {
    return md; // parseGateDescription names what is missing
  }
}
