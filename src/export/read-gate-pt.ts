// Read a gate checkpoint (ours, or a public one made by torch.save) back into a GateSet;
// tensors come back as fp32 copies.
import type { GateLayerParams, GateMetrics, GateModelDtype, GateSet } from '../gate/types.js';
import { GATE_STATE_KEYS, METRIC_KEYS, gateStateShapes, type GateStateKey } from '../gate/gate-tensors.js';
import { NdArray, openTorchCheckpoint, TensorRef, type CheckpointLimits, type TorchCheckpoint } from './torch-file/index.js';
import { fileError } from '../util/errors.js';

export interface ReadGatePtOptions {
  /** Model layer index of each entry of "module" (default 0, 1, 2, ...). */
  layers?: number[];
  /** Copied into the GateSet (the file itself carries none). */
  meta?: Record<string, string>;
}

/**
 * What a gate checkpoint can hold: its data.pkl is a state dict plus metric lists (kilobytes even
 * for 64 layers x thousands of evaluations, a few thousand pickle stack items and memo entries),
 * and one storage is one projection of a ~10k-wide model.
 */
const GATE_CHECKPOINT_LIMITS: CheckpointLimits = {
  expected: 'a gate checkpoint',
  maxPickleBytes: 16 << 20,
  maxPickleStack: 1 << 20,
  maxPickleMemo: 1 << 20,
  maxStorageBytes: 2 ** 31,
};

/** Read a Fast KVzip gate checkpoint into a GateSet (fp32 values; dims inferred from shapes). */
export async function readGatePt(file: string, options: ReadGatePtOptions = {}): Promise<GateSet> {
  const ckpt = await openTorchCheckpoint(file, GATE_CHECKPOINT_LIMITS);
  try {
    const bad = (problem: string): never => {
      throw fileError(file, problem);
    };
    const root = ckpt.root;
    if (!(root instanceof Map)) return bad('top level is not a dict');
    const modules = root.get('module');
    if (!Array.isArray(modules) || modules.length === 0) return bad('"module" is not a non-empty list of state dicts');
    const first = stateDict(modules[0], 0, bad);
    const tensorOf = (sd: Map<string, TensorRef>, key: GateStateKey, i: number): TensorRef => {
      const t = sd.get(key);
      if (!t) return bad(`module[${i}] has no ${key}`);
      return t;
    };
    const qw = tensorOf(first, 'q_proj.weight', 0).shape;
    const kw = tensorOf(first, 'k_proj.weight', 0).shape;
    const qn = tensorOf(first, 'q_norm.weight', 0).shape;
    const kb = first.get('k_base')?.shape;
    if (qw.length !== 2 || kw.length !== 2 || qn.length !== 1) bad('module[0] projection or norm has an unexpected rank');
    const r = qn[0]!;
    const D = qw[1]!;
    const H = kw[0]! / r;
    const G = qw[0]! / kw[0]!;
    const S = kb ? kb[2] ?? -1 : 0;
    if (!Number.isInteger(H) || !Number.isInteger(G) || r < 1 || S < 0) bad('module[0] shapes are not those of a Fast KVzip gate');
    const dims = { D, H, G, r, S };
    const shapes = gateStateShapes(dims);
    const qDtype = tensorOf(first, 'q_proj.weight', 0).dtype;
    if (qDtype !== 'float32' && qDtype !== 'float16' && qDtype !== 'bfloat16') return bad(`q_proj.weight has unsupported dtype ${qDtype}`);
    const modelDtype: GateModelDtype = qDtype;

    const params: GateLayerParams[] = [];
    for (let i = 0; i < modules.length; i++) {
      const sd = stateDict(modules[i], i, bad);
      for (const key of sd.keys()) {
        if (!(GATE_STATE_KEYS as readonly string[]).includes(key)) bad(`module[${i}] has an unexpected key ${key}`);
      }
      const layer: Partial<GateLayerParams> = {};
      for (const key of GATE_STATE_KEYS) {
        const t = key === 'k_base' && S === 0 && !sd.has(key) ? null : tensorOf(sd, key, i);
        if (t && t.shape.join(',') !== shapes[key].join(',')) {
          bad(`module[${i}] ${key} has shape [${t.shape.join(', ')}], expected [${shapes[key].join(', ')}]`);
        }
        const values = t ? await ckpt.readTensor(t) : new Float32Array(0);
        layer[key] = values instanceof Float32Array ? values : Float32Array.from(values);
      }
      params.push(layer as GateLayerParams);
    }

    const layers = options.layers ?? modules.map((_, i) => i);
    if (layers.length !== modules.length) bad(`${layers.length} layer indices given for ${modules.length} gates`);
    const metrics = await readMetrics(root, ckpt, modules.length, bad);
    const gates: GateSet = { ...dims, layers: [...layers], params, modelDtype };
    if (metrics) gates.metrics = metrics;
    if (options.meta) gates.meta = { ...options.meta };
    return gates;
  } finally {
    await ckpt.close();
  }
}

function stateDict(v: unknown, i: number, bad: (p: string) => never): Map<string, TensorRef> {
  if (!(v instanceof Map)) return bad(`module[${i}] is not a state dict`);
  for (const [k, t] of v) {
    if (typeof k !== 'string' || !(t instanceof TensorRef)) bad(`module[${i}] holds a non-tensor entry ${String(k)}`);
  }
  return v as Map<string, TensorRef>;
}

/** The four metric arrays, or undefined when absent or all empty. */
async function readMetrics(
  root: Map<unknown, unknown>,
  ckpt: TorchCheckpoint,
  numLayers: number,
  bad: (p: string) => never,
): Promise<GateMetrics | undefined> {
  if (!METRIC_KEYS.every(([k]) => root.has(k))) return undefined;
  const out: Partial<GateMetrics> = {};
  for (const [pyKey, field] of METRIC_KEYS) {
    const v = root.get(pyKey);
    let shape: number[];
    let values: ArrayLike<number>;
    if (v instanceof NdArray) {
      shape = v.shape;
      values = v.toNumbers();
    } else if (v instanceof TensorRef) {
      shape = v.shape;
      values = await ckpt.readTensor(v);
    } else return bad(`"${pyKey}" is neither a numpy array nor a tensor`);
    if (shape.length === 1 && shape[0] === 0) shape = [0, numLayers];
    if (shape.length !== 2 || shape[1] !== numLayers) bad(`"${pyKey}" has shape [${shape.join(', ')}], expected [numEvals, ${numLayers}]`);
    const rows: number[][] = [];
    for (let e = 0; e < shape[0]!; e++) rows.push(Array.from({ length: numLayers }, (_, c) => values[e * numLayers + c]!));
    out[field] = rows;
  }
  const m = out as GateMetrics;
  return METRIC_KEYS.every(([, f]) => m[f].length === 0) ? undefined : m;
}
