// Host buffers the KVzip graph writes each context's attention inputs into (ONNX Runtime
// pre-allocated outputs), recycled once their shard is written. Without them every context
// costs a fresh multi-GB allocation (page faults) and a copy from ONNX Runtime's output into
// a JavaScript buffer on the main thread (5.9 GB per 20k-token context of an 8B model).
import { ort } from '../runtime/session.js';
import type { DType } from '../onnx/builder.js';

const { Tensor } = ort;

export type AttnInputArray = Uint16Array | Float32Array;

export class AttnInputBuffers {
  private free: ArrayBuffer[][] = [];

  /**
   * @param layers scored layers (one buffer each)
   * @param D hidden size (values per attention input)
   * @param type the graph's output type: uint16 (bf16 bits), float16 or float32
   */
  constructor(
    private readonly layers: number,
    private readonly D: number,
    readonly type: AttnInputTarget['type'],
  ) {}

  private get bytesPerValue(): number {
    return this.type === 'float32' ? 4 : 2;
  }

  /** Per layer a [ctxLen, D] view over a recycled buffer (or a new one when none is large enough). */
  take(ctxLen: number): AttnInputTarget {
    const need = ctxLen * this.D * this.bytesPerValue;
    const i = this.free.findIndex((set) => set[0]!.byteLength >= need);
    const set = i >= 0 ? this.free.splice(i, 1)[0]! : Array.from({ length: this.layers }, () => new ArrayBuffer(need));
    const arrays = set.map((b) => (this.type === 'float32' ? new Float32Array(b, 0, ctxLen * this.D) : new Uint16Array(b, 0, ctxLen * this.D)));
    return { arrays, type: this.type };
  }

  /** Returns a set's buffers for reuse (keeps at most `keep` sets, dropping the smallest). */
  give(buffers: ArrayBuffer[], keep = 4): void {
    if (buffers.length !== this.layers || buffers.some((b) => b.byteLength === 0)) return; // detached or foreign
    this.free.push(buffers);
    this.free.sort((a, b) => b[0]!.byteLength - a[0]!.byteLength);
    this.free.length = Math.min(this.free.length, keep);
  }
}

/** Where a run writes its attention inputs: one [ctxLen, D] array per scored layer. */
export interface AttnInputTarget {
  arrays: AttnInputArray[];
  /** the graph's output type: uint16 (bf16 bits), float16 or float32 */
  type: Extract<DType, 'uint16' | 'float16' | 'float32'>;
}

/** ONNX Runtime fetches writing the outputs hidden.<s> [ctxLen, D] into `t.arrays`. */
export function attnInputFetches(t: AttnInputTarget, ctxLen: number): Record<string, ort.Tensor> {
  return Object.fromEntries(t.arrays.map((a, s) => [`hidden.${s}`, new Tensor(t.type, a, [ctxLen, a.length / ctxLen])]));
}
