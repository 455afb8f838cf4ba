// Streams one context's features into shards/<contextId>.arrow, one record batch per layer.
//
// apache-arrow's file writer queues every byte it produces until someone drains it, so a
// shard of tens of GB would sit in memory. Here the writer's sink is a queue whose chunks we
// take and write to a file handle right after each layer: memory stays at about one layer.
//
// Each layer's `hidden` values start on a page boundary (4096 by default), so ONNX Runtime can
// memory-map them as external data: the record batch's custom metadata carries a padding
// string whose length is chosen to push the message body to that boundary.
import { createHash, type Hash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import {
  AsyncByteQueue,
  Field,
  FixedSizeList,
  Float16,
  Float32,
  Int8,
  Int32,
  RecordBatch,
  RecordBatchFileWriter,
  RecordBatchStreamWriter,
  Schema,
  Struct,
  Uint16,
  Uint8,
  makeData,
} from 'apache-arrow';
import { tempPathFor } from '../util/atomic.js';
import { fsyncDir, shardRelPath } from './manifest.js';
import { ATTN_INPUT_DTYPES, META, MANIFEST_FORMAT, MANIFEST_VERSION, SHARDS_DIR, type AttnInputDtype, type ShardInfo } from './types.js';
import { DTYPE_BYTES } from '../util/dtype.js';

export interface ShardWriterOptions {
  /** hidden size */
  D: number;
  /** KV heads */
  H: number;
  /** scored layers, in the order writeLayer must be called */
  layers: number[];
  hiddenDtype: AttnInputDtype;
  /** 8-bit forms: channels per scale (a `scale` column of D / quantBlock fp32 values per row) */
  quantBlock?: number;
  /** subsampled stores: a `position` column, and the kept fraction and seed for the metadata */
  keep?: { fraction: number; seed: number };
  /** recorded in the schema metadata */
  modelId?: string;
  /** subsampled stores: the context's full length, reported by close() */
  contextTokens?: number;
  /** file-offset alignment of each layer's hidden values, a power of two >= 8 (default 4096) */
  align?: number;
}

export interface ShardWriter {
  readonly contextId: string;
  /**
   * Appends the next layer. `hidden` holds [T, D] fp16/bf16 bits (or 8-bit codes) row-major;
   * `scores` is [H, T] head-major as the scorer produces it (scores[h*T + t]); `extra` the
   * compact forms' columns ([T, D/B] scales, [T] positions). Await it before the next call and
   * before reusing the arrays: they are written without a copy.
   */
  writeLayer(layerIdx: number, hidden: StoredHidden, scores: Float32Array, extra?: CompactColumns): Promise<void>;
  /** Writes the footer, fsyncs and renames the shard to its final name. */
  close(): Promise<ShardInfo>;
  /** Drops the temp file (after an error, or to give up on this context). */
  abort(): Promise<void>;
}

export type StoredHidden = Uint16Array | Int8Array | Uint8Array;

export interface CompactColumns {
  /** [T, D / quantBlock] (8-bit forms) */
  scales?: Float32Array;
  /** [T] ascending token positions in the context (subsampled stores) */
  positions?: Int32Array;
}

/** Chunks the Arrow writer emits, kept until we write them out. */
class ChunkQueue extends AsyncByteQueue {
  private chunks: Uint8Array[] = [];
  override write(value: ArrayBufferView): void {
    const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    if (bytes.byteLength > 0) this.chunks.push(bytes);
  }
  take(): Uint8Array[] {
    const out = this.chunks;
    this.chunks = [];
    return out;
  }
}

const SMALL_CHUNK = 1 << 16;
export const DEFAULT_ALIGN = 4096;
/** Arrow cannot read a record batch body of 4 GiB or more into one buffer (Node's typed-array limit). */
const MAX_BODY = 2 ** 32 - 2 ** 16;
/** Linux writes at most ~2 GiB per call; stay well below. */
const MAX_WRITE = 1 << 30;

const hiddenItemType = (d: AttnInputDtype) => (d === 'float16' ? new Float16() : d === 'bfloat16' ? new Uint16() : d === 'int8' ? new Int8() : new Uint8());
const FP8_TAG = 'float8e4m3fn'; // field metadata: the bytes are OCP e4m3fn (no infinities), as ONNX's FLOAT8E4M3FN

export function shardSchema(contextId: string, opts: ShardWriterOptions): Schema {
  const hiddenChild = new Field('item', hiddenItemType(opts.hiddenDtype), false);
  const hidden = new Field('hidden', new FixedSizeList(opts.D, hiddenChild), false, new Map([[META.fieldDtype, opts.hiddenDtype === 'float8e4m3' ? FP8_TAG : opts.hiddenDtype]]));
  const score = new Field('score', new FixedSizeList(opts.H, new Field('item', new Float32(), false)), false, new Map([[META.fieldDtype, 'float32']]));
  const fields: Field[] = [hidden, score];
  if (opts.quantBlock) {
    fields.push(new Field('scale', new FixedSizeList(opts.D / opts.quantBlock, new Field('item', new Float32(), false)), false, new Map([[META.fieldDtype, 'float32'], [META.quantBlock, String(opts.quantBlock)]])));
  }
  if (opts.keep) fields.push(new Field('position', new Int32(), false, new Map([[META.fieldDtype, 'int32']])));
  const meta = new Map<string, string>([
    [META.format, MANIFEST_FORMAT],
    [META.version, String(MANIFEST_VERSION)],
    [META.contextId, contextId],
    [META.modelId, opts.modelId ?? ''],
    [META.layers, JSON.stringify(opts.layers)],
    [META.hiddenSize, String(opts.D)],
    [META.kvHeads, String(opts.H)],
    [META.hiddenDtype, opts.hiddenDtype],
    [META.scoreDtype, 'float32'],
  ]);
  if (opts.quantBlock) meta.set(META.quantBlock, String(opts.quantBlock));
  if (opts.keep) {
    meta.set(META.keepFraction, String(opts.keep.fraction));
    meta.set(META.keepSeed, String(opts.keep.seed));
  }
  return new Schema(fields, meta);
}

/**
 * The record batch for one layer, with a padding string in its metadata sized so that the
 * body (whose first non-empty buffer is the hidden values) starts at a multiple of `align`.
 * Falls back to no padding if no length hits the boundary (the file stays valid, only unaligned).
 */
function alignedBatch(schema: Schema, rows: ReturnType<typeof makeData>, layer: number, position: number, align: number, sizer: MessageSizer): RecordBatch {
  const make = (pad: number) =>
    new RecordBatch(schema, rows as any, new Map([[META.batchLayer, String(layer)], [META.batchPad, '0'.repeat(pad)]]));
  const base = sizer.metadataLength(make(0));
  const need = (align - ((position + base) % align)) % align;
  if (need === 0) return make(0);
  // metadata grows in steps of 8 as the string grows; look around the obvious length
  for (let pad = Math.max(0, need - 16); pad <= need + 16; pad++) {
    if ((position + sizer.metadataLength(make(pad))) % align === 0) return make(pad);
  }
  return make(0);
}

/** scores[h*T + t] -> out[t*H + h] */
export function scoresToRows(scores: Float32Array, H: number, T: number): Float32Array {
  const out = new Float32Array(H * T);
  for (let h = 0; h < H; h++) {
    const base = h * T;
    for (let t = 0; t < T; t++) out[t * H + h] = scores[base + t]!;
  }
  return out;
}

function checkOptions(opts: ShardWriterOptions): void {
  const posInt = (v: number) => Number.isInteger(v) && v > 0;
  if (!posInt(opts.D) || !posInt(opts.H)) throw new Error(`shard writer: D and H must be positive integers (got D=${opts.D}, H=${opts.H})`);
  if (opts.layers.length === 0 || !opts.layers.every((l) => Number.isInteger(l) && l >= 0)) {
    throw new Error('shard writer: layers must be a non-empty list of layer numbers');
  }
  if (new Set(opts.layers).size !== opts.layers.length) throw new Error('shard writer: layers contain duplicates');
  if (!ATTN_INPUT_DTYPES.includes(opts.hiddenDtype)) throw new Error(`shard writer: unknown hidden dtype ${opts.hiddenDtype}`);
  const quant = DTYPE_BYTES[opts.hiddenDtype] === 1;
  if (quant !== !!opts.quantBlock) throw new Error(`shard writer: ${opts.hiddenDtype} ${quant ? 'needs' : 'takes no'} quantBlock`);
  if (opts.quantBlock && (!Number.isInteger(opts.quantBlock) || opts.quantBlock <= 0 || opts.D % opts.quantBlock !== 0)) {
    throw new Error(`shard writer: quantBlock ${opts.quantBlock} must divide D=${opts.D}`);
  }
  if (opts.keep && !(opts.keep.fraction > 0 && opts.keep.fraction < 1)) throw new Error(`shard writer: keep fraction ${opts.keep.fraction} must be in (0, 1)`);
  const align = opts.align ?? DEFAULT_ALIGN;
  if (!Number.isInteger(align) || align < 8 || (align & (align - 1)) !== 0) throw new Error(`shard writer: align ${align} must be a power of two >= 8`);
}

/**
 * Measures how many bytes the IPC message (metadata) of a batch takes, by writing it to a
 * throwaway stream writer: the body is only referenced, never copied.
 */
class MessageSizer {
  private readonly queue = new ChunkQueue();
  private readonly writer = new RecordBatchStreamWriter();
  constructor(schema: Schema) {
    this.writer.reset(this.queue, schema);
    this.queue.take();
  }
  metadataLength(batch: RecordBatch): number {
    this.writer.write(batch);
    const chunks = this.queue.take();
    // chunks: continuation marker (-1), then the padded metadata length, then the flatbuffer, …
    const len = chunks[1]!;
    return new DataView(len.buffer, len.byteOffset, 4).getInt32(0, true) + 8;
  }
}

export async function openShardWriter(storeDir: string, contextId: string, opts: ShardWriterOptions): Promise<ShardWriter> {
  checkOptions(opts);
  const file = shardRelPath(contextId); // validates the id
  const finalPath = path.join(storeDir, file);
  const shardsDir = path.join(storeDir, SHARDS_DIR);
  await fs.mkdir(shardsDir, { recursive: true });
  const tmpPath = tempPathFor(finalPath);
  const fh = await fs.open(tmpPath, 'wx');

  const schema = shardSchema(contextId, opts);
  const structType = new Struct(schema.fields);
  const queue = new ChunkQueue();
  const writer = new RecordBatchFileWriter();
  writer.reset(queue, schema); // emits the leading magic now, so file positions are known
  const sizer = new MessageSizer(schema);
  const align = opts.align ?? DEFAULT_ALIGN;
  const hash: Hash = createHash('sha256');
  let bytes = 0;
  let next = 0; // index into opts.layers
  let tokens = -1;
  let state: 'open' | 'busy' | 'closed' | 'failed' = 'open';

  async function writeFully(chunk: Uint8Array): Promise<void> {
    for (let off = 0; off < chunk.byteLength; ) {
      const len = Math.min(MAX_WRITE, chunk.byteLength - off);
      const { bytesWritten } = await fh.write(chunk, off, len, null);
      off += bytesWritten;
    }
  }

  /** Hashes and writes what the Arrow writer queued, coalescing its many tiny chunks. */
  async function flush(): Promise<void> {
    let small: Uint8Array[] = [];
    let smallBytes = 0;
    const emit = async (chunk: Uint8Array) => {
      // the write goes to libuv's pool first, so the sha256 on this thread runs beside it (a shard's time
      // is about the larger of the two, not their sum; both near 1.3 GB/s on the GPU machine)
      const written = writeFully(chunk);
      hash.update(chunk);
      bytes += chunk.byteLength;
      await written;
    };
    const emitSmall = async () => {
      if (smallBytes > 0) await emit(small.length === 1 ? small[0]! : Buffer.concat(small, smallBytes));
      small = [];
      smallBytes = 0;
    };
    for (const chunk of queue.take()) {
      if (chunk.byteLength < SMALL_CHUNK) {
        small.push(chunk);
        smallBytes += chunk.byteLength;
        if (smallBytes >= SMALL_CHUNK) await emitSmall();
      } else {
        await emitSmall();
        await emit(chunk);
      }
    }
    await emitSmall();
  }

  async function fail(e: unknown): Promise<never> {
    state = 'failed';
    await fh.close().catch(() => {});
    await fs.rm(tmpPath, { force: true }).catch(() => {});
    throw e;
  }

  function enter(what: string): void {
    if (state === 'busy') throw new Error(`shard ${contextId}: ${what} called while a previous writeLayer is still running (await it)`);
    if (state !== 'open') throw new Error(`shard ${contextId}: ${what} called on a ${state} writer`);
  }

  return {
    contextId,
    async writeLayer(layerIdx, hidden, scores, extra = {}) {
      enter('writeLayer');
      if (next >= opts.layers.length) throw new Error(`shard ${contextId}: all ${opts.layers.length} layers are already written`);
      const expected = opts.layers[next]!;
      if (layerIdx !== expected) throw new Error(`shard ${contextId}: layer ${layerIdx} written out of order, expected layer ${expected}`);
      if (hidden.length % opts.D !== 0 || hidden.length === 0) {
        throw new Error(`shard ${contextId}: layer ${layerIdx}: hidden has ${hidden.length} values, not a positive multiple of D=${opts.D}`);
      }
      const T = hidden.length / opts.D;
      if (tokens >= 0 && T !== tokens) throw new Error(`shard ${contextId}: layer ${layerIdx} has ${T} tokens, earlier layers ${tokens}`);
      if (scores.length !== opts.H * T) throw new Error(`shard ${contextId}: layer ${layerIdx}: scores has ${scores.length} values, expected H*T = ${opts.H}*${T}`);
      const wantHidden = opts.hiddenDtype === 'int8' ? Int8Array : opts.hiddenDtype === 'float8e4m3' ? Uint8Array : Uint16Array;
      if (!(hidden instanceof wantHidden)) throw new Error(`shard ${contextId}: layer ${layerIdx}: ${opts.hiddenDtype} values must come as a ${wantHidden.name}`);
      const nb = opts.quantBlock ? opts.D / opts.quantBlock : 0;
      if (nb && extra.scales?.length !== T * nb) throw new Error(`shard ${contextId}: layer ${layerIdx}: scales has ${extra.scales?.length ?? 0} values, expected ${T}*${nb}`);
      if (opts.keep && extra.positions?.length !== T) throw new Error(`shard ${contextId}: layer ${layerIdx}: positions has ${extra.positions?.length ?? 0} values, expected ${T}`);
      if (T * (opts.D * DTYPE_BYTES[opts.hiddenDtype] + opts.H * 4 + nb * 4 + (opts.keep ? 4 : 0)) > MAX_BODY) {
        throw new Error(`shard ${contextId}: ${T} tokens make one layer larger than 4 GiB, which Arrow in Node cannot read back; split the context`);
      }
      state = 'busy';
      try {
        tokens = T;
        const hiddenField = schema.fields[0]!.type as FixedSizeList;
        const scoreField = schema.fields[1]!.type as FixedSizeList;
        const hiddenValues = makeData({ type: hiddenField.children[0]!.type, length: T * opts.D, nullCount: 0, data: hidden } as any);
        const scoreValues = makeData({ type: new Float32(), length: T * opts.H, nullCount: 0, data: scoresToRows(scores, opts.H, T) });
        const hiddenData = makeData({ type: hiddenField, length: T, nullCount: 0, child: hiddenValues });
        const scoreData = makeData({ type: scoreField, length: T, nullCount: 0, child: scoreValues });
        const children = [hiddenData, scoreData];
        if (nb) {
          const scaleField = schema.fields[2]!.type as FixedSizeList;
          children.push(makeData({ type: scaleField, length: T, nullCount: 0, child: makeData({ type: new Float32(), length: T * nb, nullCount: 0, data: extra.scales! }) }) as any);
        }
        if (opts.keep) children.push(makeData({ type: new Int32(), length: T, nullCount: 0, data: extra.positions! }) as any);
        const rows = makeData({ type: structType, length: T, nullCount: 0, children });
        await flush(); // everything before this batch is on disk: `bytes` is where it starts
        writer.write(alignedBatch(schema, rows, layerIdx, bytes, align, sizer));
        await flush();
        next++;
        state = 'open';
      } catch (e) {
        await fail(e);
      }
    },
    async close() {
      enter('close');
      if (next !== opts.layers.length) {
        throw new Error(`shard ${contextId}: close() after ${next} of ${opts.layers.length} layers (missing layer ${opts.layers[next]})`);
      }
      state = 'busy';
      try {
        writer.close(); // queues the footer
        await flush();
        await fh.sync();
        await fh.close();
        await fs.rename(tmpPath, finalPath);
        await fsyncDir(shardsDir);
        state = 'closed';
        return { file, contextId, tokens, ...(opts.keep ? { contextTokens: opts.contextTokens ?? tokens } : {}), bytes, sha256: hash.digest('hex') };
      } catch (e) {
        return fail(e);
      }
    },
    async abort() {
      if (state === 'closed' || state === 'failed') return;
      state = 'failed';
      await fh.close().catch(() => {});
      await fs.rm(tmpPath, { force: true });
    },
  };
}
