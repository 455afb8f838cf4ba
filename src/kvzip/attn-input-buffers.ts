// Host buffers the KVzip graph writes each context's attention inputs into (ONNX Runtime
// pre-allocated outputs), recycled once their shard is written. Without them every context
// costs a fresh multi-GB allocation (page faults) and a copy from ONNX Runtime's output into
// a JavaScript buffer on the main thread (5.9 GB per 20k-token context of an 8B model).
// int8 graphs also write their scales: a set is then the code buffers and the scale buffers.
import { ort } from '../runtime/session.js';
import type { DType } from '../onnx/builder.js';

const { Tensor } = ort;

export type AttnInputArray = Uint16Array | Float32Array | Int8Array | Uint8Array;

export class AttnInputBuffers {
  private free: ArrayBuffer[][] = [];

  /**
   * @param layers scored layers (one buffer each)
   * @param D hidden size (values per attention input)
   * @param type the graph's output type: uint16 (bf16 bits), float16, float32, or 8-bit codes (int8, uint8: e4m3fn)
   * @param scaleColumns 8-bit codes: fp32 scales per row (D / block)
   */
  constructor(
    private readonly layers: number,
    private readonly D: number,
    readonly type: AttnInputTarget['type'],
    private readonly scaleColumns = 0,
  ) {
    if ((type === 'int8' || type === 'uint8') !== scaleColumns > 0) throw new Error('attention-input buffers: 8-bit codes, and only they, come with scales');
  }

  private get bytesPerValue(): number {
    return this.type === 'float32' ? 4 : this.type === 'int8' || this.type === 'uint8' ? 1 : 2;
  }

  private get buffersPerSet(): number {
    return this.scaleColumns ? 2 * this.layers : this.layers;
  }

  /** Per layer a [rows, D] view over a recycled buffer (or a new one when none is large enough); int8: and [rows, D / block] scales. */
  take(rows: number): AttnInputTarget {
    const need = rows * this.D * this.bytesPerValue;
    const i = this.free.findIndex((set) => set[0]!.byteLength >= need);
    const sizes = Array.from({ length: this.buffersPerSet }, (_, j) => (j < this.layers ? need : rows * this.scaleColumns * 4));
    const set = i >= 0 ? this.free.splice(i, 1)[0]! : sizes.map((n) => new ArrayBuffer(n));
    const n = rows * this.D;
    const view = { float32: Float32Array, int8: Int8Array, uint8: Uint8Array, uint16: Uint16Array, float16: Uint16Array }[this.type];
    const arrays = set.slice(0, this.layers).map((b) => new view(b, 0, n));
    if (!this.scaleColumns) return { arrays, type: this.type };
    return { arrays, type: this.type, scales: set.slice(this.layers).map((b) => new Float32Array(b, 0, rows * this.scaleColumns)) };
  }

  /** Returns a set's buffers for reuse (keeps at most `keep` sets, dropping the smallest). */
  give(buffers: ArrayBuffer[], keep = 4): void {
    if (buffers.length !== this.buffersPerSet || buffers.some((b) => b.byteLength === 0)) return; // detached or foreign
    this.free.push(buffers);
    this.free.sort((a, b) => b[0]!.byteLength - a[0]!.byteLength);
    this.free.length = Math.min(this.free.length, keep);
  }
}

/** Where a run writes its attention inputs: one [rows, D] array per scored layer (int8: and its scales). */
export interface AttnInputTarget {
  arrays: AttnInputArray[];
  /** the graph's output type: uint16 (bf16 bits), float16, float32 or int8 */
  type: Extract<DType, 'uint16' | 'float16' | 'float32' | 'int8' | 'uint8'>;
  /** 8-bit codes: per layer [rows, D / block] fp32 scales */
  scales?: Float32Array[];
}

/** ONNX Runtime fetches writing the outputs hidden.<s> [rows, D] (and scale.<s>) into `t`'s arrays. */
export function attnInputFetches(t: AttnInputTarget, rows: number): Record<string, ort.Tensor> {
  return Object.fromEntries([
    ...t.arrays.map((a, s) => [`hidden.${s}`, new Tensor(t.type, a, [rows, a.length / rows])]),
    ...(t.scales ?? []).map((a, s) => [`scale.${s}`, new Tensor('float32', a, [rows, a.length / rows])]),
  ]);
}

/** Every buffer of a target (codes, then scales): what travels to a worker and comes back. */
export function targetArrays(t: { arrays: AttnInputArray[]; scales?: Float32Array[] }): ArrayBufferView[] {
  return [...t.arrays, ...(t.scales ?? [])];
}
