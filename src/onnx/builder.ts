// A small ONNX graph builder over the ONNX protobuf schema (onnx-proto, a maintained
// protobufjs build of onnx.proto). Graph code elsewhere reads like the model; this file
// only knows about nodes, values, initializers and subgraphs.
import onnxProto from 'onnx-proto';
import { f32ToF16Bits as f32ToF16, f32ToBf16Bits as f32ToBf16 } from '../util/half.js';
import { DTYPE_BYTES, type Dtype } from '../util/dtype.js';

export const onnx = onnxProto.onnx;
type NodeProto = InstanceType<typeof onnx.NodeProto>;
type TensorProto = InstanceType<typeof onnx.TensorProto>;
type ValueInfoProto = InstanceType<typeof onnx.ValueInfoProto>;
type GraphProto = InstanceType<typeof onnx.GraphProto>;

/** The element types our graphs use (names and sizes from util/dtype.ts). */
export type DType = Extract<Dtype, 'float32' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'bool' | 'uint8' | 'uint16' | 'int8'>;

export const ONNX_DTYPE: Record<DType, number> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  uint16: 4,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  bfloat16: 16,
};

export type Dim = number | string;
export type AttrValue = number | string | number[] | Graph | { float: number } | { ints: number[] } | { floats: number[] };
export type Attrs = Record<string, AttrValue | undefined>;

/** Where an initializer's bytes live when they are not inline. */
export interface ExternalRef {
  location: string;
  offset: number;
  length: number;
}

const MS = 'com.microsoft';

/** A value carried from one Loop iteration to the next; the body sees it as `<name>_in`. */
export interface LoopCarry {
  name: string;
  dtype: DType;
  shape?: Dim[];
  /** its value before the first iteration (a value of the enclosing graph) */
  init: string;
}

/** A per-iteration value of a Loop body, stacked over the iterations on a new axis 0. */
export interface LoopScan {
  value: string;
  /** the body output's name */
  name: string;
  dtype: DType;
  shape?: Dim[];
}

export interface LoopBodyResult {
  carried: string[];
  scans: LoopScan[];
  /** bool scalar: run another iteration (early exit; without it the Loop runs all `trips`) */
  cond?: string;
}

export interface LoopResult {
  /** final values of the carried ones, in the order given */
  carried: string[];
  /** the stacked scans, in the order returned */
  scans: string[];
}

/**
 * One ONNX graph (the main graph or a Loop/If body). Names are unique across the whole
 * model because subgraphs share their root's counter (outer-scope references must not clash).
 */
export class Graph {
  readonly nodes: NodeProto[] = [];
  readonly inputs: ValueInfoProto[] = [];
  readonly outputs: ValueInfoProto[] = [];
  readonly initializers: TensorProto[] = [];
  private readonly root: Graph;
  private counter = 0;
  private scope: string[] = [];

  constructor(
    readonly name: string,
    parent?: Graph,
  ) {
    this.root = parent ? parent.root : this;
  }

  /** A fresh value name, prefixed by the current scope (e.g. "layers.3/attn/q"). */
  fresh(hint: string): string {
    const prefix = this.scope.length ? this.scope.join('/') + '/' : '';
    return `${prefix}${hint}_${this.root.counter++}`;
  }

  /** Run `body` with names prefixed by `name` (purely cosmetic; helps reading graphs). */
  within<T>(name: string, body: () => T): T {
    this.scope.push(name);
    try {
      return body();
    } finally {
      this.scope.pop();
    }
  }

  subgraph(name: string): Graph {
    const g = new Graph(name, this);
    g.scope = [...this.scope, name];
    return g;
  }

  input(name: string, dtype: DType, shape: Dim[]): string {
    this.inputs.push(valueInfo(name, dtype, shape));
    return name;
  }

  /** Declare `value` as a graph output under `name` (an Identity is added when the names differ). */
  output(value: string, name: string, dtype: DType, shape?: Dim[]): string {
    if (value !== name) this.node('Identity', [value], {}, { outputs: [name] });
    this.outputs.push(valueInfo(name, dtype, shape));
    return name;
  }

  /** Add a node; returns its output names (one unless `outputs` says otherwise). */
  node(opType: string, inputs: string[], attrs: Attrs = {}, opts: { domain?: string; outputs?: number | string[]; name?: string } = {}): string[] {
    const outputs =
      typeof opts.outputs === 'number' || opts.outputs === undefined
        ? Array.from({ length: (opts.outputs as number | undefined) ?? 1 }, (_, i) => this.fresh(`${opType}${i ? `_o${i}` : ''}`))
        : opts.outputs;
    const attribute = Object.entries(attrs)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => attr(k, v as AttrValue));
    this.nodes.push(
      onnx.NodeProto.create({
        opType,
        domain: opts.domain ?? '',
        input: inputs,
        output: outputs,
        name: opts.name ?? this.fresh(`n_${opType}`),
        attribute,
      }),
    );
    return outputs;
  }

  /** Single-output node. */
  op(opType: string, inputs: string[], attrs: Attrs = {}, domain?: string): string {
    return this.node(opType, inputs, attrs, { domain })[0]!;
  }

  ms(opType: string, inputs: string[], attrs: Attrs = {}, outputs = 1): string[] {
    return this.node(opType, inputs, attrs, { domain: MS, outputs });
  }

  /** Small constant tensor stored inline as an initializer. */
  constant(values: ArrayLike<number> | number, dtype: DType, dims?: number[], hint = 'const'): string {
    const arr = typeof values === 'number' ? [values] : Array.from(values);
    const shape = dims ?? (typeof values === 'number' ? [] : [arr.length]);
    const name = this.fresh(hint);
    this.initializers.push(onnx.TensorProto.create({ name, dataType: ONNX_DTYPE[dtype], dims: shape, rawData: encodeRaw(arr, dtype) }));
    return name;
  }

  /** Inline initializer from raw little-endian bytes. */
  rawInitializer(name: string, dtype: DType, dims: number[], bytes: Uint8Array): string {
    this.initializers.push(onnx.TensorProto.create({ name, dataType: ONNX_DTYPE[dtype], dims, rawData: bytes }));
    return name;
  }

  /** Initializer whose bytes live in an external file beside the model. */
  externalInitializer(name: string, dtype: DType, dims: number[], ref: ExternalRef): string {
    this.initializers.push(
      onnx.TensorProto.create({
        name,
        dataType: ONNX_DTYPE[dtype],
        dims,
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: ref.location },
          { key: 'offset', value: String(ref.offset) },
          { key: 'length', value: String(ref.length) },
        ],
      }),
    );
    return name;
  }

  /**
   * An ONNX Loop of `trips` iterations: `body(b, i, carriedIn)` builds the iteration in subgraph
   * `b` and returns the next values of the carried ones (same order) and the per-iteration scan
   * values; the Loop's outputs are the final carried values and the scans stacked on a new axis 0.
   * ONNX's ordering of the body's inputs (i, cond, carried...) and outputs (cond, carried...,
   * scans...) is kept here, so callers never arrange it by hand.
   */
  loop(name: string, trips: string, carried: LoopCarry[], body: (b: Graph, i: string, carriedIn: string[]) => LoopBodyResult): LoopResult {
    const b = this.subgraph(name);
    const i = b.input('i', 'int64', []);
    b.input('cond', 'bool', []);
    // A Loop without carried values is valid ONNX; we carry one unused int64 instead, as the
    // loops have since the first builder (the form every measured run used).
    const all: LoopCarry[] = carried.length ? carried : [{ name: 'dummy', dtype: 'int64', shape: [], init: this.constant(0, 'int64') }];
    const carriedIn = all.map((c) => b.input(`${c.name}_in`, c.dtype, c.shape ?? []));
    const result = body(b, i, carriedIn.slice(0, carried.length));
    if (result.carried.length !== carried.length) throw new Error(`loop ${name}: ${result.carried.length} carried values returned for ${carried.length}`);
    const next = carried.length ? result.carried : carriedIn;
    b.output(b.op('Identity', [result.cond ?? 'cond']), 'cond_out', 'bool', []);
    all.forEach((c, j) => b.output(next[j]!, `${c.name}_out`, c.dtype, c.shape));
    result.scans.forEach((s) => b.output(s.value, s.name, s.dtype, s.shape));
    // with a body condition the Loop needs an initial one too (a for loop with early exit)
    const cond = result.cond ? this.constant(1, 'bool') : '';
    const outs = this.node('Loop', [trips, cond, ...all.map((c) => c.init)], { body: b }, { outputs: all.length + result.scans.length });
    return { carried: outs.slice(0, carried.length), scans: outs.slice(all.length) };
  }

  toProto(): GraphProto {
    return onnx.GraphProto.create({
      name: this.name,
      node: this.nodes,
      input: this.inputs,
      output: this.outputs,
      initializer: this.initializers,
    });
  }

  // ---- thin wrappers that keep model code readable -------------------------------
  add(a: string, b: string) { return this.op('Add', [a, b]); }
  sub(a: string, b: string) { return this.op('Sub', [a, b]); }
  mul(a: string, b: string) { return this.op('Mul', [a, b]); }
  div(a: string, b: string) { return this.op('Div', [a, b]); }
  matmul(a: string, b: string) { return this.op('MatMul', [a, b]); }
  cast(x: string, to: DType) { return this.op('Cast', [x], { to: ONNX_DTYPE[to] }); }
  reshape(x: string, shape: number[] | string) {
    return this.op('Reshape', [x, typeof shape === 'string' ? shape : this.constant(shape, 'int64', undefined, 'shape')]);
  }
  transpose(x: string, perm: number[]) { return this.op('Transpose', [x], { perm }); }
  concat(xs: string[], axis: number) { return this.op('Concat', xs, { axis }); }
  unsqueeze(x: string, axes: number[]) { return this.op('Unsqueeze', [x, this.constant(axes, 'int64', undefined, 'axes')]); }
  squeeze(x: string, axes: number[]) { return this.op('Squeeze', [x, this.constant(axes, 'int64', undefined, 'axes')]); }
  gather(data: string, indices: string, axis = 0) { return this.op('Gather', [data, indices], { axis }); }
  shape(x: string, start?: number, end?: number) { return this.op('Shape', [x], { start, end }); }
  /** Slice along `axes` with start/end given as int64 value names or numbers. */
  slice(x: string, starts: (string | number)[], ends: (string | number)[], axes: number[]) {
    const vec = (v: (string | number)[]) =>
      v.every((e) => typeof e === 'number')
        ? this.constant(v as number[], 'int64', undefined, 'idx')
        : this.concat(v.map((e) => (typeof e === 'number' ? this.constant([e], 'int64', undefined, 'idx') : this.reshape(e, [1]))), 0);
    return this.sliceVec(x, vec(starts), vec(ends), axes);
  }
  /** Slice with start/end already built as 1-D int64 tensors (share them between many slices). */
  sliceVec(x: string, starts: string, ends: string, axes: number[]) {
    return this.op('Slice', [x, starts, ends, this.constant(axes, 'int64', undefined, 'axes')]);
  }
  reduce(op: 'ReduceMax' | 'ReduceSum' | 'ReduceMean', x: string, axes: number[], keepdims = true) {
    return this.op(op, [x, this.constant(axes, 'int64', undefined, 'axes')], { keepdims: keepdims ? 1 : 0 });
  }
}

export function valueInfo(name: string, dtype: DType, shape?: Dim[]): ValueInfoProto {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType: ONNX_DTYPE[dtype],
        shape: shape ? { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } : undefined,
      },
    },
  });
}

function attr(name: string, v: AttrValue) {
  const A = onnx.AttributeProto.AttributeType;
  if (v instanceof Graph) return onnx.AttributeProto.create({ name, type: A.GRAPH, g: v.toProto() });
  if (typeof v === 'string') return onnx.AttributeProto.create({ name, type: A.STRING, s: new TextEncoder().encode(v) });
  if (typeof v === 'number') {
    return Number.isInteger(v) && !Object.is(v, -0)
      ? onnx.AttributeProto.create({ name, type: A.INT, i: v })
      : onnx.AttributeProto.create({ name, type: A.FLOAT, f: v });
  }
  if (Array.isArray(v)) return onnx.AttributeProto.create({ name, type: A.INTS, ints: v });
  if ('float' in v) return onnx.AttributeProto.create({ name, type: A.FLOAT, f: v.float });
  if ('ints' in v) return onnx.AttributeProto.create({ name, type: A.INTS, ints: v.ints });
  return onnx.AttributeProto.create({ name, type: A.FLOATS, floats: v.floats });
}

export function encodeRaw(values: ArrayLike<number>, dtype: DType): Uint8Array {
  const n = values.length;
  const buf = new ArrayBuffer(n * DTYPE_BYTES[dtype]);
  const dv = new DataView(buf);
  for (let i = 0; i < n; i++) {
    const v = values[i]!;
    switch (dtype) {
      case 'float32': dv.setFloat32(i * 4, v, true); break;
      case 'float16': dv.setUint16(i * 2, f32ToF16(v), true); break;
      case 'bfloat16': dv.setUint16(i * 2, f32ToBf16(v), true); break;
      case 'int64': dv.setBigInt64(i * 8, BigInt(v), true); break;
      case 'int32': dv.setInt32(i * 4, v, true); break;
      case 'bool': case 'uint8': dv.setUint8(i, v); break;
      case 'int8': dv.setInt8(i, v); break;
      case 'uint16': dv.setUint16(i * 2, v, true); break;
    }
  }
  return new Uint8Array(buf);
}

export interface ModelOptions {
  opset?: number;
  msOpset?: number;
  producer?: string;
  metadata?: Record<string, string>;
}

/** Serialize a main graph into ONNX model bytes (opset 21 + com.microsoft 1). */
export function encodeModel(graph: Graph, opts: ModelOptions = {}): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: 10,
    producerName: opts.producer ?? 'fastkvzip',
    producerVersion: '0.1.0',
    opsetImport: [
      { domain: '', version: opts.opset ?? 21 },
      { domain: MS, version: opts.msOpset ?? 1 },
    ],
    graph: graph.toProto(),
    metadataProps: Object.entries(opts.metadata ?? {}).map(([key, value]) => ({ key, value })),
  });
  return onnx.ModelProto.encode(model).finish();
}
