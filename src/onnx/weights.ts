// Model weights -> one external-data file beside the ONNX graphs, in the compute dtype and
// in the layout MatMul wants ([in, out]). Written once per (model, dtype) and shared by every
// graph of that model. Streams tensor by tensor, so host memory stays at one tensor.
import { openSync, writeSync, closeSync, renameSync, fsyncSync, existsSync, readFileSync, fstatSync } from 'node:fs';
import { writeFileAtomicSync } from '../util/atomic.js';
import * as path from 'node:path';
import type { DType, Graph } from './builder.js';
import { f32ArrayToBf16, f32ArrayToF16 } from '../util/half.js';

/** What the graph builder needs from a checkpoint: fp32 values by HF name. */
export interface TensorSource {
  shape(name: string): number[];
  has(name: string): boolean;
  /** Values converted to float32, row-major in the checkpoint's layout. */
  readF32(name: string): Float32Array;
  /** Raw little-endian bytes and their dtype, when cheaper than readF32 (fast path for same-dtype copies). */
  readRaw?(name: string): { dtype: 'float32' | 'float16' | 'bfloat16'; data: Uint8Array };
}

export type ComputeDType = 'float32' | 'float16' | 'bfloat16';

interface Entry {
  name: string;
  dtype: DType;
  dims: number[];
  offset: number;
  length: number;
}

const ALIGN = 64;

/**
 * Collects weights into `<dir>/<file>` (index in `<file>.json`); `register(graph)` adds the ones
 * the graph used as external initializers. Each tensor is written once even when several
 * graphs use it, also across builds: an existing file is reopened and only appended to.
 */
export class WeightFile {
  private fd: number;
  private tmp: string | null;
  private offset = 0;
  private readonly entries = new Map<string, Entry>();
  /** keys asked for since the last register() */
  private used = new Set<string>();

  constructor(
    readonly dir: string,
    readonly file: string,
    readonly dtype: ComputeDType,
  ) {
    const final = path.join(dir, file);
    const index = `${final}.json`;
    if (existsSync(final) && existsSync(index)) {
      const saved = JSON.parse(readFileSync(index, 'utf8')) as { dtype: ComputeDType; entries: Entry[] };
      if (saved.dtype !== dtype) throw new Error(`${final} holds ${saved.dtype} weights, not ${dtype}`);
      for (const e of saved.entries) this.entries.set(e.name, e);
      this.tmp = null;
      this.fd = openSync(final, 'r+');
      this.offset = fstatSync(this.fd).size;
    } else {
      this.tmp = path.join(dir, `.${file}.tmp-${process.pid}`);
      this.fd = openSync(this.tmp, 'w');
    }
  }

  private append(bytes: Uint8Array): number {
    const pad = (ALIGN - (this.offset % ALIGN)) % ALIGN;
    if (pad) writeSync(this.fd, new Uint8Array(pad), 0, pad, this.offset);
    this.offset += pad;
    const at = this.offset;
    let done = 0;
    while (done < bytes.length) done += writeSync(this.fd, bytes, done, bytes.length - done, at + done);
    this.offset += bytes.length;
    return at;
  }

  /** Add values (already in their final layout) under `key`, converted to `dtype` (default: compute dtype). */
  add(key: string, values: Float32Array, dims: number[], dtype: DType = this.dtype): string {
    this.used.add(key);
    if (this.entries.has(key)) return key;
    let bytes: Uint8Array;
    if (dtype === 'float32') bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    else if (dtype === 'float16') bytes = new Uint8Array(f32ArrayToF16(values).buffer);
    else if (dtype === 'bfloat16') bytes = new Uint8Array(f32ArrayToBf16(values).buffer);
    else throw new Error(`weights of dtype ${dtype} are not supported`);
    const offset = this.append(bytes);
    this.entries.set(key, { name: key, dtype, dims, offset, length: bytes.length });
    return key;
  }

  /** true when stored (and marks it used by the graph being built) */
  has(key: string): boolean {
    if (this.entries.has(key)) this.used.add(key);
    return this.entries.has(key);
  }

  /**
   * Add checkpoint tensor `name` under `key`, transposed to [in, out] when `transpose`.
   * Same-dtype tensors are copied as 16/32-bit words without a float round trip.
   */
  addTensor(key: string, source: TensorSource, name: string, opts: { transpose?: boolean; dtype?: DType } = {}): string {
    this.used.add(key);
    if (this.entries.has(key)) return key;
    const dtype = opts.dtype ?? this.dtype;
    const shape = source.shape(name);
    const dims = opts.transpose ? [shape[1]!, shape[0]!] : shape;
    const raw = source.readRaw?.(name);
    if (raw && raw.dtype === dtype && (dtype === 'float16' || dtype === 'bfloat16')) {
      const aligned = raw.data.byteOffset % 2 === 0 ? raw.data : raw.data.slice();
      let words = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2);
      if (opts.transpose) words = transpose2d(words, shape[0]!, shape[1]!);
      const bytes = new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
      const offset = this.append(bytes);
      this.entries.set(key, { name: key, dtype, dims, offset, length: bytes.length });
      return key;
    }
    let values = source.readF32(name);
    if (opts.transpose) values = transpose2d(values, shape[0]!, shape[1]!);
    return this.add(key, values, dims, dtype);
  }

  /** Declare the tensors used since the last call (or `keys`) as initializers of `graph` (external data). */
  register(graph: Graph, keys: Iterable<string> = this.used): void {
    for (const key of [...keys]) {
      const e = this.entries.get(key);
      if (!e) throw new Error(`weight ${key} was never added`);
      graph.externalInitializer(e.name, e.dtype, e.dims, { location: this.file, offset: e.offset, length: e.length });
    }
    this.used = new Set();
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  /** Flush, move a new file to its final name, and save the index. */
  close(): void {
    fsyncSync(this.fd);
    closeSync(this.fd);
    if (this.tmp) renameSync(this.tmp, path.join(this.dir, this.file));
    writeFileAtomicSync(path.join(this.dir, `${this.file}.json`), JSON.stringify({ dtype: this.dtype, entries: [...this.entries.values()] }));
  }

  get bytes(): number {
    return this.offset;
  }
}

/** Row-major [rows, cols] -> [cols, rows]; cache-blocked because projections reach 100M+ elements. */
export function transpose2d<T extends Float32Array | Uint16Array>(src: T, rows: number, cols: number): T {
  const dst = new (src.constructor as { new (n: number): T })(src.length);
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(r0 + B, rows);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(c0 + B, cols);
      for (let r = r0; r < r1; r++) {
        const base = r * cols;
        for (let c = c0; c < c1; c++) dst[c * rows + r] = src[base + c]!;
      }
    }
  }
  return dst;
}
