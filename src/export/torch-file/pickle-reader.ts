// A small pickle virtual machine: the opcodes of protocols 0-4 that torch.save and numpy
// emit for state dicts and metric arrays. Globals are resolved through an explicit table
// of safe constructors (never arbitrary Python), so reading a file cannot run code.
//
// Python values map to JS as: None -> null, bool -> boolean, int -> number (bigint past
// 2^53), float -> number, str -> string, bytes -> Uint8Array, list and tuple -> array,
// dict and OrderedDict -> Map. Objects built by `globals` are whatever those return.

/** A Python callable or class the unpickler may call (REDUCE / NEWOBJ). */
export interface PyCallable {
  readonly pyName: string;
  call(args: unknown[]): unknown;
}

/** An object whose state BUILD sets (numpy arrays and dtypes). */
export interface PyBuildable {
  setState(state: unknown): void;
}

export interface UnpickleOptions {
  /** `module.name` -> callable; anything else is refused. */
  globals: ReadonlyMap<string, PyCallable>;
  /** Turns a persistent id (torch: the storage tuple) into a value. */
  persistentLoad?: (pid: unknown) => unknown;
  /** Bounds on what the program may build: stack items and memo entries (default 2^20 each). */
  maxStack?: number;
  maxMemo?: number;
  /** What the caller expects, named when a bound is hit ("...; not <expected>"). */
  expected?: string;
}

export class UnpickleError extends Error {}

/** Default bounds on what a pickle program may build (UnpickleOptions.maxStack, maxMemo). */
const DEFAULT_MAX_STACK = 1 << 20;
const DEFAULT_MAX_MEMO = 1 << 20;

const MARK = Symbol('mark');

/** Run the pickle program in `data` and return the value it builds. */
export function unpickle(data: Uint8Array, options: UnpickleOptions): unknown {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  let pos = 0;

  const need = (n: number): void => {
    if (pos + n > buf.length) throw new UnpickleError('truncated pickle');
  };
  const u8 = (): number => {
    need(1);
    return buf[pos++]!;
  };
  const u16 = (): number => {
    need(2);
    const v = buf.readUInt16LE(pos);
    pos += 2;
    return v;
  };
  const u32 = (): number => {
    need(4);
    const v = buf.readUInt32LE(pos);
    pos += 4;
    return v;
  };
  const u64 = (): number => {
    need(8);
    const v = Number(buf.readBigUInt64LE(pos));
    pos += 8;
    return v;
  };
  const take = (n: number): Buffer => {
    need(n);
    const v = buf.subarray(pos, pos + n);
    pos += n;
    return v;
  };
  const line = (): string => {
    const end = buf.indexOf(0x0a, pos);
    if (end < 0) throw new UnpickleError('truncated pickle (missing newline)');
    const s = buf.toString('latin1', pos, end);
    pos = end + 1;
    return s;
  };
  const pop = (): unknown => {
    if (stack.length === 0) throw new UnpickleError('pickle stack underflow');
    const v = stack.pop();
    if (v === MARK) throw new UnpickleError('unexpected MARK on pickle stack');
    return v;
  };
  const top = (): unknown => {
    const v = stack[stack.length - 1];
    if (stack.length === 0 || v === MARK) throw new UnpickleError('pickle stack underflow');
    return v;
  };
  const popMark = (): unknown[] => {
    const at = stack.lastIndexOf(MARK);
    if (at < 0) throw new UnpickleError('pickle MARK not found');
    const items = stack.splice(at + 1);
    stack.pop();
    return items;
  };
  const resolve = (module: string, name: string): PyCallable => {
    const fn = options.globals.get(`${module}.${name}`);
    if (!fn) throw new UnpickleError(`unsupported Python global ${module}.${name}`);
    return fn;
  };
  const callOf = (fn: unknown, args: unknown): unknown => {
    if (!isCallable(fn)) throw new UnpickleError('pickle REDUCE on a non-callable');
    if (!Array.isArray(args)) throw new UnpickleError(`pickle REDUCE of ${fn.pyName} without an argument tuple`);
    return fn.call(args);
  };
  const setItems = (target: unknown, items: unknown[]): void => {
    if (!(target instanceof Map)) throw new UnpickleError('pickle SETITEM on a non-dict');
    for (let i = 0; i + 1 < items.length; i += 2) target.set(hashKey(items[i]), items[i + 1]);
  };
  const persistent = (pid: unknown): unknown => {
    if (!options.persistentLoad) throw new UnpickleError('pickle has a persistent id but no loader was given');
    return options.persistentLoad(pid);
  };

  const maxStack = options.maxStack ?? DEFAULT_MAX_STACK;
  const maxMemo = options.maxMemo ?? DEFAULT_MAX_MEMO;
  const notExpected = options.expected ? `; not ${options.expected}` : '';
  for (;;) {
    if (stack.length > maxStack) throw new UnpickleError(`pickle stack grows beyond ${maxStack} items${notExpected}`);
    if (memo.size > maxMemo) throw new UnpickleError(`pickle memo grows beyond ${maxMemo} items${notExpected}`);
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) throw new UnpickleError('unsupported pickle protocol');
        break;
      case 0x95: // FRAME
        u64();
        break;
      case 0x2e: // STOP
        return pop();
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x30: // POP
        if (stack.pop() === undefined) throw new UnpickleError('pickle stack underflow');
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        need(4);
        stack.push(buf.readInt32LE(pos));
        pos += 4;
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x49: {
        // INT (text); "00"/"01" are protocol-0 booleans
        const s = line();
        stack.push(s === '00' ? false : s === '01' ? true : textInt(s));
        break;
      }
      case 0x4c: // LONG (text)
        stack.push(textInt(line().replace(/L$/, '')));
        break;
      case 0x8a: // LONG1
        stack.push(longFromBytes(take(u8())));
        break;
      case 0x8b: // LONG4
        stack.push(longFromBytes(take(u32())));
        break;
      case 0x47: // BINFLOAT
        need(8);
        stack.push(buf.readDoubleBE(pos));
        pos += 8;
        break;
      case 0x46: // FLOAT (text)
        stack.push(Number.parseFloat(line()));
        break;
      case 0x58: // BINUNICODE
        stack.push(take(u32()).toString('utf8'));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(take(u8()).toString('utf8'));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(take(u64()).toString('utf8'));
        break;
      case 0x55: // SHORT_BINSTRING (py2 str; decoded as latin-1 text)
        stack.push(take(u8()).toString('latin1'));
        break;
      case 0x54: // BINSTRING
        stack.push(take(u32()).toString('latin1'));
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(Uint8Array.from(take(u8())));
        break;
      case 0x42: // BINBYTES
        stack.push(Uint8Array.from(take(u32())));
        break;
      case 0x8e: // BINBYTES8
        stack.push(Uint8Array.from(take(u64())));
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        const list = top();
        if (!Array.isArray(list)) throw new UnpickleError('pickle APPEND on a non-list');
        list.push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const list = top();
        if (!Array.isArray(list)) throw new UnpickleError('pickle APPENDS on a non-list');
        list.push(...items);
        break;
      }
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x74: // TUPLE
        stack.push(popMark());
        break;
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        stack.push([pop(), b]);
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        stack.push([pop(), b, c]);
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x64: {
        // DICT
        const m = new Map();
        setItems(m, popMark());
        stack.push(m);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x63: {
        // GLOBAL
        const module = line();
        const name = line();
        stack.push(resolve(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw new UnpickleError('bad STACK_GLOBAL operands');
        stack.push(resolve(module, name));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const fn = pop();
        stack.push(callOf(fn, args));
        break;
      }
      case 0x81: {
        // NEWOBJ: cls.__new__(cls, *args); our classes construct directly
        const args = pop();
        const cls = pop();
        stack.push(callOf(cls, args));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const obj = top();
        if (isBuildable(obj)) obj.setState(state);
        else if (!(obj instanceof Map)) throw new UnpickleError('pickle BUILD on an object that takes no state');
        // a Map's state is its instance __dict__ (e.g. a state dict's _metadata): not needed
        break;
      }
      case 0x50: // PERSID
        stack.push(persistent(line()));
        break;
      case 0x51: // BINPERSID
        stack.push(persistent(pop()));
        break;
      case 0x70: // PUT
        memo.set(Number(line()), top());
        break;
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x67: // GET
        stack.push(memoGet(memo, Number(line())));
        break;
      case 0x68: // BINGET
        stack.push(memoGet(memo, u8()));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(memoGet(memo, u32()));
        break;
      default:
        throw new UnpickleError(`unsupported pickle opcode 0x${op.toString(16)} at byte ${pos - 1}`);
    }
  }
}

function memoGet(memo: Map<number, unknown>, idx: number): unknown {
  if (!memo.has(idx)) throw new UnpickleError(`pickle memo ${idx} missing`);
  return memo.get(idx);
}

function isCallable(v: unknown): v is PyCallable {
  return typeof v === 'object' && v !== null && typeof (v as PyCallable).call === 'function' && 'pyName' in v;
}

function isBuildable(v: unknown): v is PyBuildable {
  return typeof v === 'object' && v !== null && typeof (v as PyBuildable).setState === 'function';
}

/** Dict keys: strings and numbers compare by value in a Map; tuples would not, so refuse them. */
function hashKey(k: unknown): unknown {
  if (typeof k === 'string' || typeof k === 'number' || typeof k === 'bigint' || typeof k === 'boolean' || k === null) return k;
  throw new UnpickleError('unsupported dict key type in pickle');
}

function textInt(s: string): number | bigint {
  const n = BigInt(s);
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
}

function longFromBytes(b: Uint8Array): number | bigint {
  if (b.length === 0) return 0;
  let n = 0n;
  for (let i = b.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i]!);
  if (b[b.length - 1]! & 0x80) n -= 1n << BigInt(8 * b.length);
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
}
