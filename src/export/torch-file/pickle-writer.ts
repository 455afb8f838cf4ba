// Python pickle (protocol 2) serializer for a small tree of Python values, enough to
// write what torch.save writes: dicts, lists, tuples, str, int, float, bool, None, bytes,
// globals, REDUCE/BUILD calls and persistent ids. Output is deterministic: the same tree
// gives the same bytes (globals are memoized, nothing else is).

export type PyValue =
  | null
  | boolean
  | string
  | PyInt
  | PyFloat
  | PyBytes
  | PyTuple
  | PyList
  | PyDict
  | PyGlobal
  | PyCall
  | PyPersistentId;

export interface PyInt {
  kind: 'int';
  value: number | bigint;
}
export interface PyFloat {
  kind: 'float';
  value: number;
}
export interface PyBytes {
  kind: 'bytes';
  value: Uint8Array;
}
export interface PyTuple {
  kind: 'tuple';
  items: PyValue[];
}
export interface PyList {
  kind: 'list';
  items: PyValue[];
}
/** A plain `dict`; for another mapping type use a PyCall with `dictItems`. */
export interface PyDict {
  kind: 'dict';
  entries: [PyValue, PyValue][];
}
export interface PyGlobal {
  kind: 'global';
  module: string;
  name: string;
}
/** `callable(*args)`, then `obj[k] = v` for dictItems, then `obj.__setstate__(state)` (BUILD). */
export interface PyCall {
  kind: 'call';
  callable: PyValue;
  args: PyValue[];
  dictItems?: [PyValue, PyValue][];
  state?: PyValue;
}
/** The unpickler replaces this by `persistent_load(value)` (torch: a storage). */
export interface PyPersistentId {
  kind: 'persid';
  value: PyValue;
}

export const py = {
  int: (value: number | bigint): PyInt => ({ kind: 'int', value }),
  float: (value: number): PyFloat => ({ kind: 'float', value }),
  bytes: (value: Uint8Array): PyBytes => ({ kind: 'bytes', value }),
  tuple: (...items: PyValue[]): PyTuple => ({ kind: 'tuple', items }),
  list: (items: PyValue[]): PyList => ({ kind: 'list', items }),
  dict: (entries: [PyValue, PyValue][]): PyDict => ({ kind: 'dict', entries }),
  global: (module: string, name: string): PyGlobal => ({ kind: 'global', module, name }),
  call: (callable: PyValue, args: PyValue[], extra: { dictItems?: [PyValue, PyValue][]; state?: PyValue } = {}): PyCall => ({
    kind: 'call',
    callable,
    args,
    ...extra,
  }),
  persid: (value: PyValue): PyPersistentId => ({ kind: 'persid', value }),
};

// opcodes (pickletools names)
const OP = {
  MARK: 0x28,
  STOP: 0x2e,
  BININT: 0x4a,
  BININT1: 0x4b,
  BININT2: 0x4d,
  NONE: 0x4e,
  BINPERSID: 0x51,
  REDUCE: 0x52,
  BINUNICODE: 0x58,
  EMPTY_LIST: 0x5d,
  APPENDS: 0x65,
  BUILD: 0x62,
  GLOBAL: 0x63,
  BINFLOAT: 0x47,
  BINGET: 0x68,
  LONG_BINGET: 0x6a,
  BINPUT: 0x71,
  LONG_BINPUT: 0x72,
  SETITEMS: 0x75,
  EMPTY_DICT: 0x7d,
  EMPTY_TUPLE: 0x29,
  TUPLE: 0x74,
  PROTO: 0x80,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  LONG1: 0x8a,
} as const;

/** Growable byte buffer. */
class ByteSink {
  private buf = Buffer.alloc(4096);
  length = 0;

  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
  byte(b: number): void {
    this.ensure(1);
    this.buf[this.length++] = b;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  u16(v: number): void {
    this.ensure(2);
    this.buf.writeUInt16LE(v, this.length);
    this.length += 2;
  }
  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32LE(v, this.length);
    this.length += 4;
  }
  i32(v: number): void {
    this.ensure(4);
    this.buf.writeInt32LE(v, this.length);
    this.length += 4;
  }
  f64be(v: number): void {
    this.ensure(8);
    this.buf.writeDoubleBE(v, this.length);
    this.length += 8;
  }
  result(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.length));
  }
}

/** Serialize `root` as a protocol-2 pickle. */
export function pickle(root: PyValue): Buffer {
  const out = new ByteSink();
  const memo = new Map<string, number>();

  const put = (): number => {
    const idx = memo.size;
    if (idx < 256) {
      out.byte(OP.BINPUT);
      out.byte(idx);
    } else {
      out.byte(OP.LONG_BINPUT);
      out.u32(idx);
    }
    return idx;
  };

  const emitGlobal = (module: string, name: string): void => {
    const key = `${module}\n${name}`;
    const known = memo.get(key);
    if (known !== undefined) {
      if (known < 256) {
        out.byte(OP.BINGET);
        out.byte(known);
      } else {
        out.byte(OP.LONG_BINGET);
        out.u32(known);
      }
      return;
    }
    out.byte(OP.GLOBAL);
    out.bytes(Buffer.from(`${module}\n${name}\n`, 'utf8'));
    memo.set(key, put());
  };

  const emitStr = (s: string): void => {
    const b = Buffer.from(s, 'utf8');
    out.byte(OP.BINUNICODE);
    out.u32(b.length);
    out.bytes(b);
  };

  const emitInt = (v: number | bigint): void => {
    const n = typeof v === 'bigint' ? v : BigInt(v);
    if (typeof v === 'number' && !Number.isSafeInteger(v)) throw new Error(`pickle: ${v} is not a safe integer`);
    if (n >= 0n && n < 256n) {
      out.byte(OP.BININT1);
      out.byte(Number(n));
    } else if (n >= 0n && n < 65536n) {
      out.byte(OP.BININT2);
      out.u16(Number(n));
    } else if (n >= -(2n ** 31n) && n < 2n ** 31n) {
      out.byte(OP.BININT);
      out.i32(Number(n));
    } else {
      out.byte(OP.LONG1);
      const bytes = longBytes(n);
      out.byte(bytes.length);
      out.bytes(bytes);
    }
  };

  const emitItems = (items: PyValue[]): void => {
    for (const it of items) emit(it);
  };

  const emitTuple = (items: PyValue[]): void => {
    if (items.length === 0) return out.byte(OP.EMPTY_TUPLE);
    if (items.length <= 3) {
      emitItems(items);
      out.byte([OP.TUPLE1, OP.TUPLE2, OP.TUPLE3][items.length - 1]!);
      return;
    }
    out.byte(OP.MARK);
    emitItems(items);
    out.byte(OP.TUPLE);
  };

  const emitSetItems = (entries: [PyValue, PyValue][]): void => {
    if (entries.length === 0) return;
    out.byte(OP.MARK);
    for (const [k, v] of entries) {
      emit(k);
      emit(v);
    }
    out.byte(OP.SETITEMS);
  };

  const emit = (v: PyValue): void => {
    if (v === null) return out.byte(OP.NONE);
    if (v === true) return out.byte(OP.NEWTRUE);
    if (v === false) return out.byte(OP.NEWFALSE);
    if (typeof v === 'string') return emitStr(v);
    switch (v.kind) {
      case 'int':
        return emitInt(v.value);
      case 'float':
        out.byte(OP.BINFLOAT);
        return out.f64be(v.value);
      case 'bytes':
        // protocol 2 has no bytes opcode: Python writes _codecs.encode(latin-1 text, 'latin1')
        return emit(py.call(py.global('_codecs', 'encode'), [Buffer.from(v.value).toString('latin1'), 'latin1']));
      case 'tuple':
        return emitTuple(v.items);
      case 'list':
        out.byte(OP.EMPTY_LIST);
        if (v.items.length > 0) {
          out.byte(OP.MARK);
          emitItems(v.items);
          out.byte(OP.APPENDS);
        }
        return;
      case 'dict':
        out.byte(OP.EMPTY_DICT);
        return emitSetItems(v.entries);
      case 'global':
        return emitGlobal(v.module, v.name);
      case 'call':
        emit(v.callable);
        emitTuple(v.args);
        out.byte(OP.REDUCE);
        if (v.dictItems) emitSetItems(v.dictItems);
        if (v.state !== undefined) {
          emit(v.state);
          out.byte(OP.BUILD);
        }
        return;
      case 'persid':
        emit(v.value);
        return out.byte(OP.BINPERSID);
    }
  };

  out.byte(OP.PROTO);
  out.byte(2);
  emit(root);
  out.byte(OP.STOP);
  return out.result();
}

/** Two's-complement little-endian bytes, shortest form (LONG1 payload). */
function longBytes(n: bigint): Uint8Array {
  const bytes: number[] = [];
  let x = n;
  for (;;) {
    const b = Number(x & 0xffn);
    bytes.push(b);
    x >>= 8n;
    if ((x === 0n && (b & 0x80) === 0) || (x === -1n && (b & 0x80) !== 0)) break;
  }
  return Uint8Array.from(bytes);
}
