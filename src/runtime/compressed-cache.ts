// A KV cache that really shrinks, over the step_compressed graphs (src/onnx/compressed-graph.ts).
// Every (layer, KV head) has a buffer of its own, holding exactly the entries it keeps: evicted
// entries leave the buffers at the next compaction (on the host), or, when decoding in blocks,
// at the next block's start (gathered out on the device), and no head is padded to another's length.
// Kept entries keep the RoPE of their original positions and new tokens continue at the
// original token count. onnxruntime-node returns outputs in host memory, so the cache lives
// there between runs (the same as StepRunner's); the decode-block graph
// (src/onnx/decode-block-graph.ts) takes it to the device once per block of decode steps. On
// WebGPU the cache can stay in device memory instead (`DeviceResidency`): the sessions return
// their presents as gpu-buffer tensors, fed back as they are, and compaction gathers the held
// slots on the device.
import { ort } from './session.js';
import type { ModelSpec } from '../model/config.js';
import type { DType } from '../onnx/builder.js';

export interface CompressedSessions {
  /** step_compressed: last-token logits and the scored layers' attention inputs */
  step: ort.InferenceSession;
  /** step_compressed_full: logits at every position (teacher forcing); optional */
  full?: ort.InferenceSession;
  /** step_compressed_decode: single-token steps (decoding) without SnapKV outputs; optional */
  decode?: ort.InferenceSession;
  /** step_compressed_block: greedy decode steps in one run (decodeBlock); optional */
  block?: ort.InferenceSession;
  /** keep the buffers in device memory between runs (WebGPU; not with `block`) */
  device?: DeviceResidency;
}

/**
 * Keep the buffers in device memory between runs (WebGPU's gpu-buffer tensors): the step
 * sessions must return every present_key/present_value as 'gpu-buffer' (deviceOutputs()).
 */
export interface DeviceResidency {
  /** headGatherModel's session (gpu-buffer outputs): compaction on the device */
  gather: ort.InferenceSession;
  /** headDownloadModel's session (host outputs): hostBuffers() (onnxruntime-node 1.29 aborts the process on a gpu-buffer tensor's getData()) */
  download: ort.InferenceSession;
}

/** preferredOutputLocation for the step_compressed sessions of a device-resident cache. */
export function deviceOutputs(spec: ModelSpec): Record<string, 'gpu-buffer'> {
  const o: Record<string, 'gpu-buffer'> = {};
  for (let l = 0; l < spec.numLayers; l++) for (let h = 0; h < spec.numKvHeads; h++) o[`present_key.${l}.${h}`] = o[`present_value.${l}.${h}`] = 'gpu-buffer';
  return o;
}

/** What one decode block produced. */
export interface DecodeBlock {
  /** the greedy token after each fed one (the last may be a stop id) */
  tokens: number[];
  /** per scored layer: the fed tokens' attention inputs [k, D] */
  attnInputs: Data[];
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
  /**
   * bytes of the held entries' keys and values (what the buffers hold after compact(); between an
   * eviction round settled for the decode block and that block, the host buffers still hold the
   * round's evicted entries too)
   */
  bytes: number;
  /** of which padding: 0 (one buffer per KV head, each exactly its kept entries); kept in reports for comparison */
  paddingBytes: number;
  /** bytes the full, uncompressed cache of the same tokens would hold */
  fullBytes: number;
  /** entries (layer, head, position) held / padded (0) */
  entries: number;
  paddingEntries: number;
}

type Data = Float32Array | Uint16Array;

/** One KV head's buffers [1, 1, n, d] (n = len): host arrays, or device tensors (DeviceResidency). */
export interface HeadBuffers {
  key: Data | ort.Tensor;
  value: Data | ort.Tensor;
  len: number;
  /**
   * slots of the buffers still held, ascending, when an eviction round dropped some and the
   * buffers were not copied yet (the decode-block graph gathers them on the device); absent: all
   */
  keep?: Int32Array;
}

const held = (b: HeadBuffers) => (b.keep ? b.keep.length : b.len);

/** Free a head's device buffers (host arrays need nothing). */
function release(b: HeadBuffers): void {
  for (const x of [b.key, b.value]) if (!ArrayBuffer.isView(x) && x.location === 'gpu-buffer') x.dispose();
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
  /** layer l -> KV head h -> its buffers */
  private readonly layers: HeadBuffers[][];
  /** scored layer s -> head h -> slot positions */
  private readonly positions: Positions[][];
  /** scored layer s -> head h -> slots marked for eviction (applied at the next compaction) */
  private readonly doomed: Set<number>[][];
  private dirty = false;
  private position = 0;
  private readonly elemBytes: number;
  private readonly scoredOf: Map<number, number>;
  private readonly device?: DeviceResidency;
  /** compactions done and entries removed by them (for reports) */
  compactions = 0;
  removed = 0;

  constructor(
    private readonly sessions: CompressedSessions,
    private readonly spec: ModelSpec,
    private readonly cacheDtype: DType,
  ) {
    if (cacheDtype !== 'float32' && cacheDtype !== 'float16') throw new Error(`compressed cache: unsupported cache dtype ${cacheDtype}`);
    this.device = sessions.device;
    if (this.device && sessions.block) throw new Error('compressed cache: the decode block (an ONNX Loop, on the CPU provider) cannot take a device-resident cache');
    this.elemBytes = cacheDtype === 'float32' ? 4 : 2;
    const H = spec.numKvHeads;
    this.layers = Array.from({ length: spec.numLayers }, () => Array.from({ length: H }, () => ({ key: this.alloc(0), value: this.alloc(0), len: 0 })));
    this.positions = spec.scoredLayers.map(() => Array.from({ length: H }, () => new Positions()));
    this.doomed = spec.scoredLayers.map(() => Array.from({ length: H }, () => new Set<number>()));
    this.scoredOf = new Map(spec.scoredLayers.map((l, s) => [l, s]));
  }

  private ids = new Int32Array(0);
  /** 0, 1, ..., n - 1 (a view of one shared array) */
  private identity(n: number): Int32Array {
    if (this.ids.length < n) this.ids = Int32Array.from({ length: Math.max(n, 2 * this.ids.length) }, (_, i) => i);
    return this.ids.subarray(0, n);
  }

  /** the buffer as a feed [1, 1, n, d] */
  private tensor(x: Data | ort.Tensor, n: number): ort.Tensor {
    return ArrayBuffer.isView(x) ? new ort.Tensor(this.cacheDtype as 'float32' | 'float16', x, [1, 1, n, this.spec.headDim]) : x;
  }

  /** where the buffers live between runs */
  get location(): 'host' | 'device' {
    return this.device ? 'device' : 'host';
  }

  /** Free the device buffers (a device-resident cache; the host arrays are garbage-collected). */
  dispose(): void {
    for (const heads of this.layers) for (const b of heads) release(b);
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
    this.settle(); // the positions follow the evictions at once; the buffers may wait
    const p = this.positions[s]![h]!;
    return p.data.slice(0, p.size);
  }

  /**
   * Apply the marked evictions to the bookkeeping: each head that lost entries gets the list of
   * buffer slots it still holds (HeadBuffers.keep); no key or value is copied. compact() copies
   * on the host; decodeBlock() lets the graph gather on the device.
   */
  settle(): void {
    if (!this.dirty) return;
    const H = this.spec.numKvHeads;
    this.spec.scoredLayers.forEach((l, s) => {
      for (let h = 0; h < H; h++) {
        const doomed = this.doomed[s]![h]!;
        if (doomed.size === 0) continue;
        const b = this.layers[l]![h]!;
        const pos = this.positions[s]![h]!;
        const n = pos.size;
        const keep = new Int32Array(n - doomed.size);
        let w = 0;
        for (let j = 0; j < n; j++) {
          if (doomed.has(j)) continue;
          keep[w] = b.keep ? b.keep[j]! : j;
          pos.data[w++] = pos.data[j]!;
        }
        pos.size = w;
        this.removed += doomed.size;
        doomed.clear();
        this.layers[l]![h] = { ...b, keep };
      }
    });
    this.dirty = false;
    this.compactions++;
  }

  /** Drop the evicted entries from the host buffers (only the heads that lost entries are copied). */
  compact(): void {
    if (this.device) throw new Error('compact: a device-resident cache compacts with compactOnDevice()');
    this.settle();
    const d = this.spec.headDim;
    for (const heads of this.layers) {
      heads.forEach((b, h) => {
        if (!b.keep) return;
        if (!ArrayBuffer.isView(b.key) || !ArrayBuffer.isView(b.value)) throw new Error('compact: host buffers expected');
        const n = b.keep.length;
        const key = this.alloc(n * d);
        const value = this.alloc(n * d);
        // copy the runs of consecutive held slots in one call each (decode rounds evict few)
        for (let j = 0; j < n; ) {
          let e = j + 1;
          while (e < n && b.keep[e] === b.keep[e - 1]! + 1) e++;
          const from = b.keep[j]!;
          key.set(b.key.subarray(from * d, (from + e - j) * d), j * d);
          value.set(b.value.subarray(from * d, (from + e - j) * d), j * d);
          j = e;
        }
        heads[h] = { key, value, len: n };
      });
    }
  }

  /** Drop the evicted entries: on the host, or (device-resident) gathered on the device. */
  async compactAny(): Promise<void> {
    if (!this.device) return this.compact();
    this.settle();
    const gather = this.device.gather;
    for (const heads of this.layers) {
      for (let h = 0; h < heads.length; h++) {
        const b = heads[h]!;
        if (!b.keep) continue;
        const out = await gather.run({ key: this.tensor(b.key, b.len), value: this.tensor(b.value, b.len), keep: new ort.Tensor('int32', b.keep, [b.keep.length]) });
        release(b);
        heads[h] = { key: out.key_kept!, value: out.value_kept!, len: b.keep.length };
      }
    }
  }

  footprint(): CacheFootprint {
    const H = this.spec.numKvHeads;
    let entries = 0;
    for (const layer of this.layers) for (let h = 0; h < H; h++) entries += held(layer[h]!);
    const perEntry = 2 * this.spec.headDim * this.elemBytes;
    return { bytes: entries * perEntry, paddingBytes: 0, fullBytes: this.spec.numLayers * H * this.position * perEntry, entries, paddingEntries: 0 };
  }

  /** The buffers of layer l, KV head h (compacted; read-only; a host cache). */
  buffers(l: number, h: number): HeadBuffers {
    this.compact();
    return this.layers[l]![h]!;
  }

  /** The buffers of layer l, KV head h as host arrays (compacted; copied from the device when device-resident). */
  async hostBuffers(l: number, h: number): Promise<{ key: Data; value: Data; len: number }> {
    await this.compactAny();
    const b = this.layers[l]![h]!;
    if (!this.device) return { key: b.key as Data, value: b.value as Data, len: b.len };
    const out = await this.device.download.run({ key: this.tensor(b.key, b.len), value: this.tensor(b.value, b.len) });
    return { key: out.key_host!.data as Data, value: out.value_host!.data as Data, len: b.len };
  }

  /**
   * Take `count` new tokens' entries: every head's buffers are replaced by `next(l, h)`, which
   * must hold the held entries followed by the new ones at positions length .. length + count - 1.
   */
  append(count: number, next: (l: number, h: number) => HeadBuffers): void {
    if (this.dirty) throw new Error('append: settle the evictions first');
    const H = this.spec.numKvHeads;
    this.layers.forEach((heads, l) => {
      for (let h = 0; h < H; h++) {
        const b = next(l, h);
        if (b.len !== held(heads[h]!) + count || b.keep) throw new Error(`append: layer ${l} head ${h} got ${b.len} entries, expected ${held(heads[h]!) + count}`);
        release(heads[h]!);
        heads[h] = b;
      }
      const s = this.scoredOf.get(l);
      if (s !== undefined) for (let h = 0; h < H; h++) this.positions[s]![h]!.push(this.position, count);
    });
    this.position += count;
  }

  /**
   * Greedy decoding in one run of the decode-block graph: feed `first`, then each argmax, at most
   * `steps` tokens, stopping after a token in `stopIds`; the fed tokens' entries join the cache.
   */
  async decodeBlock(first: number, steps: number, stopIds: number[]): Promise<DecodeBlock> {
    const session = this.sessions.block;
    if (!session) throw new Error('decodeBlock: the step_compressed_block session is needed');
    if (!(steps >= 1)) throw new Error(`decodeBlock: steps must be >= 1 (got ${steps})`);
    this.settle(); // the graph drops the evicted entries on the device (keep.<l>.<h>)
    const d = this.spec.headDim;
    const type = this.cacheDtype as 'float32' | 'float16';
    const stops = stopIds.length ? stopIds : [-1]; // an empty list would reduce to nothing
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.of(BigInt(first)), [1, 1]),
      position: new ort.Tensor('int64', BigInt64Array.of(BigInt(this.position)), []),
      steps: new ort.Tensor('int64', BigInt64Array.of(BigInt(steps)), []),
      stop_ids: new ort.Tensor('int64', BigInt64Array.from(stops.map(BigInt)), [stops.length]),
    };
    this.layers.forEach((heads, l) =>
      heads.forEach((b, h) => {
        feeds[`past_key.${l}.${h}`] = this.tensor(b.key, b.len);
        feeds[`past_value.${l}.${h}`] = this.tensor(b.value, b.len);
        const keep = b.keep ?? this.identity(b.len);
        feeds[`keep.${l}.${h}`] = new ort.Tensor('int32', keep, [keep.length]);
      }),
    );
    const out = await session.run(feeds);
    const tokens = Array.from(out.tokens!.data as BigInt64Array, Number);
    const k = tokens.length;
    this.append(k, (l, h) => ({
      key: out[`present_key.${l}.${h}`]!.data as Data,
      value: out[`present_value.${l}.${h}`]!.data as Data,
      len: held(this.layers[l]![h]!) + k,
    }));
    return { tokens, attnInputs: this.spec.scoredLayers.map((l) => out[`attn_input.${l}`]!.data as Data) };
  }

  /** Run `ids` after the cached tokens (at positions length, length + 1, ...). */
  async forward(ids: number[], o: CompressedForwardOptions = {}): Promise<CompressedStep> {
    const T = ids.length;
    if (T === 0) throw new Error('forward: no tokens');
    const all = o.logits === 'all';
    const session = all ? this.sessions.full : T === 1 && this.sessions.decode && !o.snapWindow ? this.sessions.decode : this.sessions.step;
    if (!session) throw new Error('forward: the step_compressed_full session is needed for logits at every position');
    await this.compactAny();
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, T]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: T }, (_, i) => BigInt(this.position + i)), [1, T]),
    };
    if (session.inputNames.includes('snap_window')) feeds.snap_window = new ort.Tensor('int64', BigInt64Array.of(BigInt(o.snapWindow || 1)), []);
    this.layers.forEach((heads, l) =>
      heads.forEach((b, h) => {
        feeds[`past_key.${l}.${h}`] = this.tensor(b.key, b.len);
        feeds[`past_value.${l}.${h}`] = this.tensor(b.value, b.len);
      }),
    );
    const out = await session.run(feeds);
    const present = (name: string) => (this.device ? out[name]! : (out[name]!.data as Data));
    if (this.device && (out['present_key.0.0']?.location !== 'gpu-buffer')) throw new Error('forward: a device-resident cache needs sessions whose presents stay on the device (deviceOutputs)');
    const step: CompressedStep = {
      logits: out.logits!.data as Float32Array,
      attnInputs: all ? [] : this.spec.scoredLayers.map((l) => out[`attn_input.${l}`]!.data as Data),
      snap: !all && o.snapWindow ? this.spec.scoredLayers.map((l) => out[`snap.${l}`]!.data as Float32Array) : [],
    };
    if (o.keepCache !== false) {
      this.append(T, (l, h) => ({
        key: present(`present_key.${l}.${h}`),
        value: present(`present_value.${l}.${h}`),
        len: this.layers[l]![h]!.len + T,
      }));
    } else if (this.device) {
      for (let l = 0; l < this.spec.numLayers; l++) for (let h = 0; h < this.spec.numKvHeads; h++) release({ key: out[`present_key.${l}.${h}`]!, value: out[`present_value.${l}.${h}`]!, len: 0 });
    }
    return step;
  }
}
