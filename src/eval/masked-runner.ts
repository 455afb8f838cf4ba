// A KV cache with per-(layer, head, position) visibility, over the masked step graphs
// (GraphKind step_masked / step_masked_full). Eviction is simulated by masking: evicted
// entries stay in the host-side cache buffers (no memory is freed) but no later query can
// attend to them, which is what matters for measuring quality.
import { ort } from '../runtime/session.js';
import type { ModelSpec } from '../model/config.js';
import type { DType } from '../onnx/builder.js';

export interface MaskedSessions {
  /** step_masked: last-token logits, attention inputs and SnapKV attention of the scored layers */
  step: ort.InferenceSession;
  /** step_masked_full: logits at every position (teacher forcing); optional */
  full?: ort.InferenceSession;
}

export interface MaskedStep {
  /** [V] for 'last', [T, V] for 'all' */
  logits: Float32Array;
  /** per scored layer: attention inputs [T, D] (fp32, or fp16 bits from half graphs) — 'last' runs only */
  attnInputs: (Float32Array | Uint16Array)[];
  /** per scored layer: SnapKV window attention [H, T] — 'last' runs with snapWindow only */
  snap: Float32Array[];
}

export interface ForwardOptions {
  /** keep the chunk's KV in the cache (default true); false drops it afterwards (queries, repeat passes) */
  keepCache?: boolean;
  /** 'last' (step_masked, default) or 'all' (step_masked_full) */
  logits?: 'last' | 'all';
  /** SnapKV observation window (number of last queries of the chunk); 0 = not needed */
  snapWindow?: number;
}

function emptyData(dtype: DType): Float32Array | Uint16Array {
  return dtype === 'float32' ? new Float32Array(0) : new Uint16Array(0);
}

export class MaskedCache {
  private past: { key: ort.Tensor; value: ort.Tensor }[];
  private position = 0;
  /** [L_s][H][capacity] visibility (1 = visible) */
  private keep: Uint8Array[][];
  private capacity = 0;

  constructor(
    private readonly sessions: MaskedSessions,
    private readonly spec: ModelSpec,
    cacheDtype: DType,
  ) {
    const dims = [1, spec.numKvHeads, 0, spec.headDim];
    const type = cacheDtype as 'float32' | 'float16';
    this.past = Array.from({ length: spec.numLayers }, () => ({
      key: new ort.Tensor(type, emptyData(cacheDtype), dims),
      value: new ort.Tensor(type, emptyData(cacheDtype), dims),
    }));
    this.keep = spec.scoredLayers.map(() => Array.from({ length: spec.numKvHeads }, () => new Uint8Array(0)));
  }

  /** tokens in the cache (= next position) */
  get length(): number {
    return this.position;
  }

  /** is cache position `pos` of scored layer `s`, KV head `h` visible? */
  visible(s: number, h: number, pos: number): boolean {
    return this.keep[s]![h]![pos] === 1;
  }

  /** hide cache position `pos` of scored layer `s`, KV head `h` from every later query */
  evict(s: number, h: number, pos: number): void {
    if (pos >= this.position) throw new Error(`evict: position ${pos} is not cached (length ${this.position})`);
    this.keep[s]![h]![pos] = 0;
  }

  /** visible entries of scored layer s, head h in [start, end) */
  countVisible(s: number, h: number, start: number, end: number): number {
    let n = 0;
    const k = this.keep[s]![h]!;
    for (let i = start; i < end; i++) n += k[i]!;
    return n;
  }

  private grow(to: number): void {
    if (to <= this.capacity) return;
    const cap = Math.max(to, this.capacity * 2, 1024);
    this.keep = this.keep.map((heads) =>
      heads.map((k) => {
        const n = new Uint8Array(cap);
        n.set(k);
        return n;
      }),
    );
    this.capacity = cap;
  }

  private keepTensor(): ort.Tensor {
    const L = this.spec.scoredLayers.length;
    const H = this.spec.numKvHeads;
    const P = this.position;
    const data = new Uint8Array(L * H * P);
    for (let s = 0; s < L; s++) for (let h = 0; h < H; h++) data.set(this.keep[s]![h]!.subarray(0, P), (s * H + h) * P);
    return new ort.Tensor('bool', data, [L, H, P]);
  }

  /** Run `ids` after the cached tokens (new tokens are visible to everything after them). */
  async forward(ids: number[], o: ForwardOptions = {}): Promise<MaskedStep> {
    const T = ids.length;
    if (T === 0) throw new Error('forward: no tokens');
    const all = o.logits === 'all';
    const session = all ? this.sessions.full : this.sessions.step;
    if (!session) throw new Error('forward: the step_masked_full session is needed for logits at every position');
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, T]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: T }, (_, i) => BigInt(this.position + i)), [1, T]),
      kv_keep: this.keepTensor(),
    };
    if (session.inputNames.includes('snap_window')) feeds.snap_window = new ort.Tensor('int64', BigInt64Array.of(BigInt(o.snapWindow ?? 1)), []);
    this.past.forEach((p, l) => {
      feeds[`past_key.${l}`] = p.key;
      feeds[`past_value.${l}`] = p.value;
    });
    const out = await session.run(feeds);
    const scored = this.spec.scoredLayers;
    const step: MaskedStep = {
      logits: out.logits!.data as Float32Array,
      attnInputs: all ? [] : scored.map((l) => out[`attn_input.${l}`]!.data as Float32Array | Uint16Array),
      snap: !all && o.snapWindow ? scored.map((l) => out[`snap.${l}`]!.data as Float32Array) : [],
    };
    if (o.keepCache !== false) {
      this.past = this.past.map((_, l) => ({ key: out[`present_key.${l}`]!, value: out[`present_value.${l}`]! }));
      this.grow(this.position + T);
      for (const heads of this.keep) for (const k of heads) k.fill(1, this.position, this.position + T);
      this.position += T;
    }
    return step;
  }
}
