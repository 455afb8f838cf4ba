// The Python-side objects of a torch.save checkpoint, both directions: pickle trees that
// rebuild tensors and numpy arrays (for writing), and the safe constructors the pickle VM
// may call when reading (torch storages/tensors, numpy arrays/dtypes, OrderedDict).
import { py, type PyValue } from './pickle-writer.js';
import type { PyBuildable, PyCallable } from './pickle-reader.js';
import { UnpickleError } from './pickle-reader.js';
import type { TensorDtype } from '../../util/dtype.js';

/** torch.<Name>Storage for each dtype we write. */
export const TORCH_STORAGE: Record<TensorDtype, string> = {
  float32: 'FloatStorage',
  float16: 'HalfStorage',
  bfloat16: 'BFloat16Storage',
  float64: 'DoubleStorage',
};

export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= shape[i]!;
  }
  return strides;
}

const ints = (xs: readonly number[]): PyValue[] => xs.map((x) => py.int(x));
const orderedDict = py.global('collections', 'OrderedDict');

/** `torch._utils._rebuild_tensor_v2(storage, 0, shape, strides, False, OrderedDict())` over storage `key`. */
export function tensorPickle(key: string, dtype: TensorDtype, shape: readonly number[]): PyValue {
  const n = shape.reduce((a, b) => a * b, 1);
  const storage = py.persid(py.tuple('storage', py.global('torch', TORCH_STORAGE[dtype]), key, 'cpu', py.int(n)));
  return py.call(py.global('torch._utils', '_rebuild_tensor_v2'), [
    storage,
    py.int(0),
    py.tuple(...ints(shape)),
    py.tuple(...ints(contiguousStrides(shape))),
    false,
    py.call(orderedDict, []),
  ]);
}

/** `collections.OrderedDict` with these items (what Module.state_dict() returns). */
export function orderedDictPickle(items: [string, PyValue][]): PyValue {
  return py.call(orderedDict, [], { dictItems: items });
}

/**
 * A C-order float64 numpy array, pickled the way numpy 1.x does for protocol 2. The
 * `numpy.core` path also loads under numpy 2, which keeps it as an alias of numpy._core.
 */
export function float64ArrayPickle(shape: readonly number[], values: Float64Array): PyValue {
  const dtype = py.call(py.global('numpy', 'dtype'), ['f8', false, true], {
    state: py.tuple(py.int(3), '<', null, null, null, py.int(-1), py.int(-1), py.int(0)),
  });
  const data = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  return py.call(
    py.global('numpy.core.multiarray', '_reconstruct'),
    [py.global('numpy', 'ndarray'), py.tuple(py.int(0)), py.bytes(Uint8Array.of(0x62))],
    { state: py.tuple(py.int(1), py.tuple(...ints(shape)), dtype, false, py.bytes(data)) },
  );
}

// ---------------------------------------------------------------------------------------
// Reading side

/** torch.<X>Storage: appears as a class inside persistent ids. */
export class StorageType implements PyCallable {
  constructor(
    readonly pyName: string,
    /** null for storage types we can name but not decode */
    readonly dtype: TensorDtype | null,
  ) {}
  call(): unknown {
    throw new UnpickleError(`${this.pyName} cannot be called`);
  }
}

export class StorageRef {
  constructor(
    readonly key: string,
    readonly type: StorageType,
    readonly numel: number,
  ) {}
}

export class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
  get dtype(): TensorDtype | null {
    return this.storage.type.dtype;
  }
}

export class NpDtype implements PyBuildable {
  byteOrder = '=';
  constructor(readonly code: string) {}
  setState(state: unknown): void {
    if (Array.isArray(state) && typeof state[1] === 'string') this.byteOrder = state[1];
  }
}

export class NdArray implements PyBuildable {
  shape: number[] = [];
  dtype: NpDtype | null = null;
  fortran = false;
  data: Uint8Array | null = null;
  setState(state: unknown): void {
    if (!Array.isArray(state)) throw new UnpickleError('numpy array state is not a tuple');
    const s = state.length === 5 ? state.slice(1) : state; // (version, shape, dtype, fortran, data) or without version
    const [shape, dtype, fortran, data] = s;
    if (!Array.isArray(shape) || !(dtype instanceof NpDtype)) throw new UnpickleError('malformed numpy array state');
    this.shape = shape.map(Number);
    this.dtype = dtype;
    this.fortran = fortran === true;
    if (data instanceof Uint8Array) this.data = data;
    else if (typeof data === 'string') this.data = Uint8Array.from(Buffer.from(data, 'latin1'));
    else throw new UnpickleError('numpy object arrays are not supported');
  }

  /** Values as numbers in C order. */
  toNumbers(): Float64Array {
    if (!this.dtype || !this.data) throw new UnpickleError('numpy array without data');
    if (this.dtype.byteOrder === '>') throw new UnpickleError('big-endian numpy arrays are not supported');
    const n = this.shape.reduce((a, b) => a * b, 1);
    const view = new DataView(this.data.buffer, this.data.byteOffset, this.data.byteLength);
    const read = NUMPY_READERS[this.dtype.code.replace(/^[<=|]/, '')];
    if (!read) throw new UnpickleError(`numpy dtype ${this.dtype.code} is not supported`);
    if (view.byteLength !== n * read.bytes) throw new UnpickleError('numpy array data has the wrong size');
    const flat = new Float64Array(n);
    for (let i = 0; i < n; i++) flat[i] = read.get(view, i * read.bytes);
    if (!this.fortran || this.shape.length < 2) return flat;
    // Fortran order: flat index runs over the first axis fastest
    const out = new Float64Array(n);
    const cStrides = cOrder(this.shape);
    const fStrides = fOrder(this.shape);
    for (let i = 0; i < n; i++) {
      let rest = i;
      let f = 0;
      for (let d = 0; d < this.shape.length; d++) {
        const idx = Math.floor(rest / cStrides[d]!);
        rest -= idx * cStrides[d]!;
        f += idx * fStrides[d]!;
      }
      out[i] = flat[f]!;
    }
    return out;
  }
}

function cOrder(shape: number[]): number[] {
  return contiguousStrides(shape);
}
function fOrder(shape: number[]): number[] {
  const s: number[] = [];
  let acc = 1;
  for (const d of shape) {
    s.push(acc);
    acc *= d;
  }
  return s;
}

const NUMPY_READERS: Record<string, { bytes: number; get: (v: DataView, at: number) => number }> = {
  f8: { bytes: 8, get: (v, at) => v.getFloat64(at, true) },
  f4: { bytes: 4, get: (v, at) => v.getFloat32(at, true) },
  i8: { bytes: 8, get: (v, at) => Number(v.getBigInt64(at, true)) },
  i4: { bytes: 4, get: (v, at) => v.getInt32(at, true) },
  i2: { bytes: 2, get: (v, at) => v.getInt16(at, true) },
  i1: { bytes: 1, get: (v, at) => v.getInt8(at) },
  u1: { bytes: 1, get: (v, at) => v.getUint8(at) },
};

function callable(pyName: string, call: (args: unknown[]) => unknown): PyCallable {
  return { pyName, call };
}

function asInt(v: unknown, what: string): number {
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  throw new UnpickleError(`${what} is not an integer`);
}

function asIntList(v: unknown, what: string): number[] {
  if (!Array.isArray(v)) throw new UnpickleError(`${what} is not a tuple`);
  return v.map((x) => asInt(x, what));
}

function rebuildTensor(args: unknown[]): TensorRef {
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof StorageRef)) throw new UnpickleError('_rebuild_tensor_v2 without a storage');
  return new TensorRef(storage, asInt(offset, 'tensor offset'), asIntList(size, 'tensor size'), asIntList(stride, 'tensor stride'));
}

/** Python globals a torch.save checkpoint of tensors, dicts and numpy values may reference, keyed `module.name`. */
export function torchCheckpointGlobals(): Map<string, PyCallable> {
  const g = new Map<string, PyCallable>();
  const add = (module: string, name: string, fn: (args: unknown[]) => unknown): void => {
    g.set(`${module}.${name}`, callable(`${module}.${name}`, fn));
  };
  add('collections', 'OrderedDict', (args) => new Map(Array.isArray(args[0]) ? (args[0] as [unknown, unknown][]) : []));
  add('builtins', 'dict', () => new Map());
  add('__builtin__', 'dict', () => new Map());
  add('torch._utils', '_rebuild_tensor_v2', rebuildTensor);
  add('torch._utils', '_rebuild_tensor', rebuildTensor);
  add('torch._utils', '_rebuild_parameter', (args) => args[0]);
  add('torch._utils', '_rebuild_parameter_with_state', (args) => args[0]);
  // torch >= 2 wraps tensor subclasses (e.g. nn.Parameter) as (func, type, args, state)
  add('torch._tensor', '_rebuild_from_type_v2', (args) => {
    const [fn, , fnArgs] = args;
    if (!fn || typeof (fn as PyCallable).call !== 'function' || !Array.isArray(fnArgs)) {
      throw new UnpickleError('malformed _rebuild_from_type_v2');
    }
    return (fn as PyCallable).call(fnArgs);
  });
  add('torch._tensor', 'Tensor', () => null);
  add('torch.nn.parameter', 'Parameter', () => null);
  const storages: [string, TensorDtype | null][] = [
    ['FloatStorage', 'float32'],
    ['HalfStorage', 'float16'],
    ['BFloat16Storage', 'bfloat16'],
    ['DoubleStorage', 'float64'],
    ['LongStorage', null],
    ['IntStorage', null],
    ['ShortStorage', null],
    ['CharStorage', null],
    ['ByteStorage', null],
    ['BoolStorage', null],
  ];
  for (const [name, dtype] of storages) {
    g.set(`torch.${name}`, new StorageType(`torch.${name}`, dtype));
  }
  for (const core of ['numpy.core.multiarray', 'numpy._core.multiarray']) {
    add(core, '_reconstruct', () => new NdArray());
    add(core, 'scalar', (args) => {
      const [dtype, data] = args;
      if (!(dtype instanceof NpDtype)) throw new UnpickleError('numpy scalar without a dtype');
      const a = new NdArray();
      a.setState([[], dtype, false, data]);
      return a.toNumbers()[0];
    });
  }
  add('numpy', 'ndarray', () => new NdArray());
  add('numpy', 'dtype', (args) => new NpDtype(String(args[0])));
  add('_codecs', 'encode', (args) => {
    const [text, encoding] = args;
    if (typeof text !== 'string') throw new UnpickleError('_codecs.encode of a non-string');
    const enc = String(encoding ?? 'utf-8').toLowerCase();
    return Uint8Array.from(Buffer.from(text, enc === 'latin1' || enc === 'latin-1' || enc === 'iso-8859-1' ? 'latin1' : 'utf8'));
  });
  return g;
}

/** Turn a persistent id from a torch zip checkpoint, ('storage', type, key, location, numel), into a StorageRef. */
export function torchPersistentLoad(pid: unknown): StorageRef {
  if (!Array.isArray(pid) || pid[0] !== 'storage') throw new UnpickleError('unknown persistent id (not a torch storage)');
  const [, type, key, , numel] = pid;
  if (!(type instanceof StorageType)) {
    throw new UnpickleError(`unsupported storage type ${(type as PyCallable | undefined)?.pyName ?? String(type)}`);
  }
  return new StorageRef(String(key), type, asInt(numel, 'storage size'));
}
