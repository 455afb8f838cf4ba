// Open a checkpoint written by torch.save (the zip format of torch >= 1.6): unpickle data.pkl
// with the allow-list of torch-pickle.ts and read tensor views out of their storages, one
// storage at a time. Knows nothing about what the checkpoint holds.
import { unpickle, UnpickleError } from './pickle-reader.js';
import { contiguousStrides, torchCheckpointGlobals, torchPersistentLoad, type TensorRef } from './torch-pickle.js';
import { ZipReader } from './zip-reader.js';
import { bf16ArrayToF32, f16ArrayToF32 } from '../../util/half.js';
import { fileError, UserError } from '../../util/errors.js';

const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/**
 * What the caller's kind of checkpoint can hold: a deflated bomb or a hostile pickle stops at
 * these sizes instead of exhausting memory. The caller knows the contents; this file does not.
 */
export interface CheckpointLimits {
  /** the kind of file, named in messages ("not <expected>", "more than <expected> holds") */
  expected: string;
  /** inflated size of data.pkl */
  maxPickleBytes: number;
  /** pickle stack items and memo entries */
  maxPickleStack: number;
  maxPickleMemo: number;
  /** bytes of one tensor storage */
  maxStorageBytes: number;
}

/** An opened torch.save checkpoint: its unpickled root and a way to read tensor values. */
export interface TorchCheckpoint {
  root: unknown;
  readTensor(t: TensorRef): Promise<Float32Array | Float64Array>;
  close(): Promise<void>;
}

export async function openTorchCheckpoint(file: string, limits: CheckpointLimits): Promise<TorchCheckpoint> {
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
      root = unpickle(await zip.read(pkl, limits.maxPickleBytes), {
        globals: torchCheckpointGlobals(),
        persistentLoad: torchPersistentLoad,
        maxStack: limits.maxPickleStack,
        maxMemo: limits.maxPickleMemo,
        expected: limits.expected,
      });
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
      if (!Number.isSafeInteger(n) || n < 0 || n * width > limits.maxStorageBytes) throw fileError(file, `tensor storage ${key} claims ${n} elements, more than ${limits.expected} holds`);
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
