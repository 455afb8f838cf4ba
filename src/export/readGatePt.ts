// Read a gate checkpoint (ours, or a public one made by torch.save) back into a GateSet.
// Only the zip format (torch >= 1.6) is understood; tensors come back as fp32 copies.
import type { GateLayerParams, GateMetrics, GateModelDtype, GateSet } from '../gate/types.js';
import { GATE_STATE_KEYS, METRIC_KEYS, PARAM_FIELD, gateStateShapes, numel, type GateStateKey } from './gateTensors.js';
import { unpickle, UnpickleError } from './pickleReader.js';
import { contiguousStrides, NdArray, TensorRef, torchCheckpointGlobals, torchPersistentLoad } from './torchPickle.js';
import { ZipReader } from './zipReader.js';
import { bf16ArrayToF32, f16ArrayToF32 } from '../util/half.js';
import { fileError, UserError } from '../util/errors.js';

/** An opened torch.save checkpoint: its unpickled root and a way to read tensor values. */
export interface TorchCheckpoint {
  root: unknown;
  readTensor(t: TensorRef): Promise<Float32Array | Float64Array>;
  close(): Promise<void>;
}

/**
 * What a gate checkpoint can hold: its data.pkl is a state dict plus metric lists (kilobytes even
 * for 64 layers x thousands of evaluations), one storage is one projection of a ~10k-wide model.
 */
const MAX_GATE_PICKLE_BYTES = 16 << 20;
const MAX_GATE_STORAGE_BYTES = 2 ** 31;

export async function openTorchCheckpoint(file: string): Promise<TorchCheckpoint> {
  const zip = await ZipReader.open(file).catch(async (err: unknown) => {
    if (err instanceof UserError && /not a zip archive/.test(err.message)) {
      throw fileError(file, 'not a zip-format PyTorch checkpoint (the legacy torch.save format is not supported; re-save with torch >= 1.6)');
    }
    throw err;
  });
  try {
    const pkl = zip.entries.find((e) => /^[^/]+\/data\.pkl$/.test(e.name));
    if (!pkl) throw fileError(file, 'no <archive>/data.pkl entry: not a PyTorch checkpoint');
    const prefix = pkl.name.slice(0, -'data.pkl'.length);
    const byteorder = zip.find(`${prefix}byteorder`);
    if (byteorder && Buffer.from(await zip.read(byteorder, 16)).toString('latin1') !== 'little') {
      throw fileError(file, 'big-endian checkpoints are not supported');
    }
    let root: unknown;
    try {
      root = unpickle(await zip.read(pkl, MAX_GATE_PICKLE_BYTES), { globals: torchCheckpointGlobals(), persistentLoad: torchPersistentLoad });
    } catch (err) {
      if (err instanceof UnpickleError) throw fileError(file, err.message);
      throw err;
    }
    // no storage cache: each tensor decodes its own storage, so a tensor that is its whole
    // storage (the usual case) is returned without a second copy
    const readStorage = async (t: TensorRef): Promise<Float32Array | Float64Array> => {
      const { key, type, numel: n } = t.storage;
      if (!type.dtype) throw fileError(file, `tensor storage ${key} is ${type.pyName}; only floating-point tensors are supported`);
      const entry = zip.find(`${prefix}data/${key}`);
      if (!entry) throw fileError(file, `storage entry data/${key} is missing`);
      const width = type.dtype === 'float64' ? 8 : type.dtype === 'float32' ? 4 : 2;
      if (!Number.isSafeInteger(n) || n < 0 || n * width > MAX_GATE_STORAGE_BYTES) throw fileError(file, `tensor storage ${key} claims ${n} elements, more than a gate file holds`);
      return decodeStorage(await zip.read(entry, n * width), type.dtype, n, file, key);
    };
    return {
      root,
      async readTensor(t) {
        return gather(await readStorage(t), t, file);
      },
      close: () => zip.close(),
    };
  } catch (err) {
    await zip.close();
    throw err;
  }
}

function decodeStorage(bytes: Uint8Array, dtype: string, n: number, file: string, key: string): Float32Array | Float64Array {
  const width = dtype === 'float64' ? 8 : dtype === 'float32' ? 4 : 2;
  if (bytes.length !== n * width) throw fileError(file, `storage data/${key} has ${bytes.length} bytes, expected ${n * width}`);
  // typed-array views need an aligned offset; copy only when the bytes are not aligned
  const aligned = bytes.byteOffset % 8 === 0 ? bytes : new Uint8Array(bytes);
  const { buffer, byteOffset } = aligned;
  switch (dtype) {
    case 'float64':
      return new Float64Array(buffer, byteOffset, n);
    case 'float32':
      return new Float32Array(buffer, byteOffset, n);
    case 'bfloat16':
      return bf16ArrayToF32(new Uint16Array(buffer, byteOffset, n));
    default:
      return f16ArrayToF32(new Uint16Array(buffer, byteOffset, n));
  }
}

/** Copy the (possibly strided, offset) view `t` out of its storage in C order. */
function gather(storage: Float32Array | Float64Array, t: TensorRef, file: string): Float32Array | Float64Array {
  const n = numel(t.shape);
  if (n === 0) return storage instanceof Float64Array ? new Float64Array(0) : new Float32Array(0);
  let maxIndex = t.offset;
  t.shape.forEach((d, i) => (maxIndex += (d - 1) * t.stride[i]!));
  if (t.offset < 0 || maxIndex >= storage.length) throw fileError(file, `tensor view runs past its storage (${t.storage.key})`);
  if (contiguousStrides(t.shape).every((s, i) => s === t.stride[i] || t.shape[i] === 1)) {
    return t.offset === 0 && n === storage.length ? storage : storage.slice(t.offset, t.offset + n);
  }
  const out = storage instanceof Float64Array ? new Float64Array(n) : new Float32Array(n);
  const idx = new Array<number>(t.shape.length).fill(0);
  for (let i = 0; i < n; i++) {
    let at = t.offset;
    for (let d = 0; d < idx.length; d++) at += idx[d]! * t.stride[d]!;
    out[i] = storage[at]!;
    for (let d = idx.length - 1; d >= 0; d--) {
      if (++idx[d]! < t.shape[d]!) break;
      idx[d] = 0;
    }
  }
  return out;
}

export interface ReadGatePtOptions {
  /** Model layer index of each entry of "module" (default 0, 1, 2, ...). */
  layers?: number[];
  /** Copied into the GateSet (the file itself carries none). */
  meta?: Record<string, string>;
}

/** Read a Fast KVzip gate checkpoint into a GateSet (fp32 values; dims inferred from shapes). */
export async function readGatePt(file: string, options: ReadGatePtOptions = {}): Promise<GateSet> {
  const ckpt = await openTorchCheckpoint(file);
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
        layer[PARAM_FIELD[key]] = values instanceof Float32Array ? values : Float32Array.from(values);
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
