// Chunked forward with a KV cache over the step graph: feed tokens chunk by chunk, keep
// the cache between calls (host memory: onnxruntime-node has no CUDA-resident tensors),
// and read logits / attention inputs.
import { ort } from './session.js';
import type { ModelSpec } from '../model/config.js';
import type { DType } from '../onnx/builder.js';

export interface StepResult {
  /** [T, V] (or [1, V] for a 'last' graph) */
  logits?: Float32Array;
  /** layer -> [T, D] */
  attnInputs: Map<number, Float32Array | Uint16Array>;
  /** every output by name (present_key.<l>, query.<l>, ...) for callers that need more */
  raw: Record<string, ort.Tensor>;
}

function emptyData(dtype: DType): Float32Array | Uint16Array {
  return dtype === 'float32' ? new Float32Array(0) : new Uint16Array(0);
}

export class StepRunner {
  private past: { key: ort.Tensor; value: ort.Tensor }[];
  private position = 0;

  constructor(
    private readonly session: ort.InferenceSession,
    private readonly spec: ModelSpec,
    private readonly cacheDtype: DType,
  ) {
    this.past = this.emptyCache();
  }

  private emptyCache() {
    const dims = [1, this.spec.numKvHeads, 0, this.spec.headDim];
    const type = this.cacheDtype as 'float32' | 'float16';
    return Array.from({ length: this.spec.numLayers }, () => ({
      key: new ort.Tensor(type, emptyData(this.cacheDtype), dims),
      value: new ort.Tensor(type, emptyData(this.cacheDtype), dims),
    }));
  }

  /** tokens processed so far (= next position) */
  get length(): number {
    return this.position;
  }

  reset(): void {
    this.past = this.emptyCache();
    this.position = 0;
  }

  /** Run `ids` as one chunk after the cached tokens; `keepCache: false` drops the chunk's KV afterwards. */
  async forward(ids: number[], opts: { keepCache?: boolean } = {}): Promise<StepResult> {
    const T = ids.length;
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, T]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: T }, (_, i) => BigInt(this.position + i)), [1, T]),
    };
    this.past.forEach((p, l) => {
      feeds[`past_key.${l}`] = p.key;
      feeds[`past_value.${l}`] = p.value;
    });
    const out = await this.session.run(feeds);
    const attnInputs = new Map<number, Float32Array | Uint16Array>();
    for (const [name, t] of Object.entries(out)) {
      if (name.startsWith('attn_input.')) attnInputs.set(Number(name.slice('attn_input.'.length)), t.data as Float32Array | Uint16Array);
    }
    if (opts.keepCache !== false) {
      this.past = this.past.map((_, l) => ({ key: out[`present_key.${l}`]!, value: out[`present_value.${l}`]! }));
      this.position += T;
    }
    return { logits: out.logits?.data as Float32Array | undefined, attnInputs, raw: out };
  }
}
