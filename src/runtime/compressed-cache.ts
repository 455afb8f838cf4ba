// A KV cache that really shrinks, over the step_compressed graphs (src/onnx/compressed-graph.ts).
// Evicted entries leave the buffers fed to ONNX Runtime: after an eviction round the cache is
// compacted, each layer to the largest head count it keeps, the shorter heads right-padded
// (GQA masks the padding through per-head lengths, so padding costs memory, not attention).
// Kept entries keep the RoPE of their original positions and new tokens continue at the
// original token count. onnxruntime-node returns outputs in host memory, so the cache lives
// there between runs (the same as StepRunner's).
import { ort } from './session.js';
import type { ModelSpec } from '../model/config.js';
import type { DType } from '../onnx/builder.js';

export interface CompressedSessions {
  /** step_compressed: last-token logits and the scored layers' attention inputs */
  step: ort.InferenceSession;
  /** step_compressed_full: logits at every position (teacher forcing); optional */
  full?: ort.InferenceSession;
  /** step_compressed_decode: single-token steps (decoding); optional, faster than `step` there */
  decode?: ort.InferenceSession;
}

export interface CompressedStep {
  /** [V] for 'last', [T, V] for 'all' */
  logits: Float32Array;
  /** per scored layer: attention inputs [T, D] ('last' runs only) */
  attnInputs: (Float32Array | Uint16Array)[];
  /** per scored layer: SnapKV window attention [H, T] over the held entries ('last' runs with snapWindow only) */
  snap: Float32Array[];
}

export interface CompressedForwardOptions {
  /** keep the chunk's KV in the cache (default true) */
  keepCache?: boolean;
  /** 'last' (default) or 'all' */
  logits?: 'last' | 'all';
  /** SnapKV observation window (number of last queries of the chunk); 0 = not needed */
  snapWindow?: number;
}

/** What the cache holds right now. */
export interface CacheFootprint {
  /** bytes of the key and value buffers fed to ONNX Runtime (padding included) */
  bytes: number;
  /** of which padding (heads shorter than their layer's longest) */
  paddingBytes: number;
  /** bytes the full, uncompressed cache of the same tokens would hold */
  fullBytes: number;
  /** entries (layer, head, position) held / padded */
  entries: number;
  paddingEntries: number;
  /** padded length of every layer's buffer */
  layerLengths: number[];
}

type Data = Float32Array | Uint16Array;

interface LayerCache {
  key: Data;
  value: Data;
  /** padded length P of the buffer [1, H, P, d] */
  length: number;
  /** valid entries per head */
  lens: Int32Array;
}

/** Original positions of head h's slots, ascending (scored layers only). */
class Positions {
  data: Int32Array = new Int32Array(0);
  size = 0;
  push(from: number, count: number): void {
    if (this.size + count > this.data.length) {
      const n = new Int32Array(Math.max(this.size + count, this.data.length * 2, 256));
      n.set(this.data.subarray(0, this.size));
      this.data = n;
    }
    for (let i = 0; i < count; i++) this.data[this.size + i] = from + i;
    this.size += count;
  }
  /** slot of `pos`, or -1 */
  find(pos: number): number {
    let lo = 0;
    let hi = this.size - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = this.data[mid]!;
      if (v === pos) return mid;
      if (v < pos) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }
  /** first slot with position >= pos */
  lowerBound(pos: number): number {
    let lo = 0;
    let hi = this.size;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.data[mid]! < pos) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

export class CompressedCache {
  private readonly layers: LayerCache[];
  /** scored layer s -> head h -> slot positions */
  private readonly positions: Positions[][];
  /** scored layer s -> head h -> slots marked for eviction (applied at the next compaction) */
  private readonly doomed: Set<number>[][];
  private dirty = false;
  private position = 0;
  private readonly elemBytes: number;
  private readonly scoredOf: Map<number, number>;
  /** compactions done and entries removed by them (for reports) */
  compactions = 0;
  removed = 0;

  constructor(
    private readonly sessions: CompressedSessions,
    private readonly spec: ModelSpec,
    private readonly cacheDtype: DType,
  ) {
    if (cacheDtype !== 'float32' && cacheDtype !== 'float16') throw new Error(`compressed cache: unsupported cache dtype ${cacheDtype}`);
    this.elemBytes = cacheDtype === 'float32' ? 4 : 2;
    const H = spec.numKvHeads;
    this.layers = Array.from({ length: spec.numLayers }, () => ({ key: this.alloc(0), value: this.alloc(0), length: 0, lens: new Int32Array(H) }));
    this.positions = spec.scoredLayers.map(() => Array.from({ length: H }, () => new Positions()));
    this.doomed = spec.scoredLayers.map(() => Array.from({ length: H }, () => new Set<number>()));
    this.scoredOf = new Map(spec.scoredLayers.map((l, s) => [l, s]));
  }

  private alloc(n: number): Data {
    return this.cacheDtype === 'float32' ? new Float32Array(n) : new Uint16Array(n);
  }

  /** tokens processed so far (= next position) */
  get length(): number {
    return this.position;
  }

  /** is `pos` of scored layer s, KV head h still cached (and not marked for eviction)? */
  visible(s: number, h: number, pos: number): boolean {
    const slot = this.positions[s]![h]!.find(pos);
    return slot >= 0 && !this.doomed[s]![h]!.has(slot);
  }

  /** Mark `pos` of scored layer s, head h for eviction; it leaves the buffers at the next compaction. */
  evict(s: number, h: number, pos: number): void {
    if (pos >= this.position) throw new Error(`evict: position ${pos} is not cached (length ${this.position})`);
    const slot = this.positions[s]![h]!.find(pos);
    if (slot < 0) return; // already gone
    this.doomed[s]![h]!.add(slot);
    this.dirty = true;
  }

  /** cached entries of scored layer s, head h with positions in [start, end) */
  countVisible(s: number, h: number, start: number, end: number): number {
    const p = this.positions[s]![h]!;
    const a = p.lowerBound(start);
    const b = p.lowerBound(end);
    let n = b - a;
    for (const slot of this.doomed[s]![h]!) if (slot >= a && slot < b) n--;
    return n;
  }

  /** original positions held by scored layer s, head h (ascending; a copy) */
  heldPositions(s: number, h: number): Int32Array {
    this.compact();
    const p = this.positions[s]![h]!;
    return p.data.slice(0, p.size);
  }

  /** Drop the entries marked for eviction from the buffers; each scored layer shrinks to its longest head. */
  compact(): void {
    if (!this.dirty) return;
    const H = this.spec.numKvHeads;
    const d = this.spec.headDim;
    this.spec.scoredLayers.forEach((l, s) => {
      if (this.doomed[s]!.every((set) => set.size === 0)) return;
      const layer = this.layers[l]!;
      const lens = Int32Array.from({ length: H }, (_, h) => layer.lens[h]! - this.doomed[s]![h]!.size);
      const P = Math.max(0, ...lens);
      const key = this.alloc(H * P * d);
      const value = this.alloc(H * P * d);
      for (let h = 0; h < H; h++) {
        const doomed = this.doomed[s]![h]!;
        const pos = this.positions[s]![h]!;
        // copy the kept runs between evicted slots in one call each (decode rounds evict few)
        const cuts = Int32Array.from(doomed).sort();
        let w = 0;
        let from = 0;
        for (let c = 0; c <= cuts.length; c++) {
          const to = c < cuts.length ? cuts[c]! : layer.lens[h]!;
          const n = to - from;
          if (n > 0) {
            const src = (h * layer.length + from) * d;
            const dst = (h * P + w) * d;
            key.set(layer.key.subarray(src, src + n * d), dst);
            value.set(layer.value.subarray(src, src + n * d), dst);
            pos.data.copyWithin(w, from, to);
            w += n;
          }
          from = to + 1;
        }
        pos.size = w;
        this.removed += doomed.size;
        doomed.clear();
      }
      this.layers[l] = { key, value, length: P, lens };
    });
    this.dirty = false;
    this.compactions++;
  }

  footprint(): CacheFootprint {
    const H = this.spec.numKvHeads;
    const d = this.spec.headDim;
    let entries = 0;
    let padding = 0;
    for (const layer of this.layers) {
      for (let h = 0; h < H; h++) {
        entries += layer.lens[h]!;
        padding += layer.length - layer.lens[h]!;
      }
    }
    const perEntry = 2 * d * this.elemBytes;
    return {
      bytes: (entries + padding) * perEntry,
      paddingBytes: padding * perEntry,
      fullBytes: this.spec.numLayers * H * this.position * perEntry,
      entries,
      paddingEntries: padding,
      layerLengths: this.layers.map((l) => l.length),
    };
  }

  /** Run `ids` after the cached tokens (at positions length, length + 1, ...). */
  async forward(ids: number[], o: CompressedForwardOptions = {}): Promise<CompressedStep> {
    const T = ids.length;
    if (T === 0) throw new Error('forward: no tokens');
    const all = o.logits === 'all';
    const session = all ? this.sessions.full : T === 1 && this.sessions.decode && !o.snapWindow ? this.sessions.decode : this.sessions.step;
    if (!session) throw new Error('forward: the step_compressed_full session is needed for logits at every position');
    this.compact();
    const H = this.spec.numKvHeads;
    const d = this.spec.headDim;
    const type = this.cacheDtype as 'float32' | 'float16';
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, T]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: T }, (_, i) => BigInt(this.position + i)), [1, T]),
    };
    if (session.inputNames.includes('snap_window')) feeds.snap_window = new ort.Tensor('int64', BigInt64Array.of(BigInt(o.snapWindow || 1)), []);
    this.layers.forEach((layer, l) => {
      feeds[`past_key.${l}`] = new ort.Tensor(type, layer.key, [1, H, layer.length, d]);
      feeds[`past_value.${l}`] = new ort.Tensor(type, layer.value, [1, H, layer.length, d]);
      feeds[`past_lens.${l}`] = new ort.Tensor('int32', layer.lens, [H]);
    });
    const out = await session.run(feeds);
    const step: CompressedStep = {
      logits: out.logits!.data as Float32Array,
      attnInputs: all ? [] : this.spec.scoredLayers.map((l) => out[`attn_input.${l}`]!.data as Data),
      snap: !all && o.snapWindow ? this.spec.scoredLayers.map((l) => out[`snap.${l}`]!.data as Float32Array) : [],
    };
    if (o.keepCache !== false) {
      this.layers.forEach((layer, l) => {
        // head h's new entries sit at slots lens[h] .. lens[h] + T - 1 of the padded present
        this.layers[l] = {
          key: out[`present_key.${l}`]!.data as Data,
          value: out[`present_value.${l}`]!.data as Data,
          length: layer.length + T,
          lens: layer.lens.map((n) => n + T),
        };
        const s = this.scoredOf.get(l);
        if (s !== undefined) for (let h = 0; h < H; h++) this.positions[s]![h]!.push(this.position, T);
      });
      this.position += T;
    }
    return step;
  }
}
