// Reading one layer of a feature store for training: from every shard, only that layer's
// record batch is read (the footer says where it lies), so memory and I/O scale with one
// layer, not with the whole store.
import { promises as fs } from 'node:fs';
import { RecordBatchReader, type AsyncRecordBatchFileReader, type RecordBatch, type Schema } from 'apache-arrow';
import { fileError } from '../util/errors.js';
import { readManifest, shardAbsPath } from './manifest.js';
import { ATTN_INPUT_DTYPES, META, storeFormOf, type FeatureManifest, type AttnInputDtype, type ShardEntry } from './types.js';

export interface LayerChunk {
  contextId: string;
  /** position of the context in the recipe order */
  index: number;
  tokens: number;
  /** [tokens, D] fp16 or bf16 bits, or 8-bit codes (see `scales`), row-major */
  hidden: Uint16Array | Int8Array | Uint8Array;
  /** [tokens, H] row-major */
  scores: Float32Array;
  /** 8-bit forms: [tokens, D / quantBlock] */
  scales?: Float32Array;
  /** subsampled stores: each row's token position in its context */
  positions?: Int32Array;
}

export interface ReadLayerOptions {
  /** stop after this many tokens in total (the last shard is cut short) */
  maxTokens?: number;
  /** only these contexts (by id), still in store order */
  contexts?: Iterable<string>;
}

/** What a shard's schema says about its contents, checked against the manifest. */
export interface ShardLayout {
  layers: number[];
  D: number;
  H: number;
  hiddenDtype: AttnInputDtype;
  quantBlock: number | null;
  keep: { fraction: number; seed: number } | null;
}

export function shardLayout(file: string, schema: Schema): ShardLayout {
  const meta = schema.metadata;
  const num = (key: string) => {
    const v = Number(meta.get(key));
    if (!Number.isInteger(v) || v <= 0) throw fileError(file, `schema metadata ${key} is missing or not a positive integer`);
    return v;
  };
  let layers: unknown;
  try {
    layers = JSON.parse(meta.get(META.layers) ?? 'null');
  } catch {
    layers = null;
  }
  if (!Array.isArray(layers) || !layers.every((l) => Number.isInteger(l))) throw fileError(file, `schema metadata ${META.layers} is not a list of layers`);
  const hiddenDtype = meta.get(META.hiddenDtype);
  if (!ATTN_INPUT_DTYPES.includes(hiddenDtype as AttnInputDtype)) throw fileError(file, `schema metadata ${META.hiddenDtype} is ${JSON.stringify(hiddenDtype)}`);
  const quantBlock = meta.has(META.quantBlock) ? num(META.quantBlock) : null;
  const keep = meta.has(META.keepFraction) ? { fraction: Number(meta.get(META.keepFraction)), seed: Number(meta.get(META.keepSeed)) } : null;
  const want = ['hidden', 'score', ...(quantBlock ? ['scale'] : []), ...(keep ? ['position'] : [])].join(',');
  const names = schema.fields.map((f) => f.name).join(',');
  if (names !== want) throw fileError(file, `columns are [${names}], expected [${want}]`);
  return { layers: layers as number[], D: num(META.hiddenSize), H: num(META.kvHeads), hiddenDtype: hiddenDtype as AttnInputDtype, quantBlock, keep };
}

export function checkLayoutAgainstManifest(file: string, layout: ShardLayout, m: FeatureManifest): void {
  const form = storeFormOf(m);
  const want = { layers: m.model.scoredLayers, D: m.model.D, H: m.model.H, hiddenDtype: m.hiddenDtype, quantBlock: form.quantBlock };
  for (const key of ['D', 'H', 'hiddenDtype', 'quantBlock'] as const) {
    if (layout[key] !== want[key]) throw fileError(file, `${key} is ${layout[key]} but the manifest says ${want[key]}`);
  }
  if (JSON.stringify(layout.keep) !== JSON.stringify(form.keep)) {
    throw fileError(file, `kept fraction ${JSON.stringify(layout.keep)} but the manifest says ${JSON.stringify(form.keep)}`);
  }
  if (JSON.stringify(layout.layers) !== JSON.stringify(want.layers)) {
    throw fileError(file, `holds layers ${JSON.stringify(layout.layers)} but the manifest says ${JSON.stringify(want.layers)}`);
  }
}

/** Index of `layer` among the store's scored layers (= its record batch index). */
export function batchIndexOf(m: FeatureManifest, layer: number, storeDir: string): number {
  const i = m.model.scoredLayers.indexOf(layer);
  if (i < 0) throw fileError(storeDir, `layer ${layer} is not stored (stored layers: ${m.model.scoredLayers.join(', ')})`);
  return i;
}

/** Opens a shard with random access; the caller must close the returned handle. */
export async function openShardFile(file: string): Promise<{ handle: fs.FileHandle; reader: AsyncRecordBatchFileReader }> {
  const handle = await fs.open(file, 'r');
  try {
    const reader = (await RecordBatchReader.from(handle)) as AsyncRecordBatchFileReader;
    if (!reader.isFile()) throw fileError(file, 'not an Arrow IPC file (stream format?)');
    await reader.open();
    return { handle, reader };
  } catch (e: any) {
    await handle.close();
    if (e?.name === 'UserError') throw e;
    throw fileError(file, `not a readable Arrow IPC file (${e?.message ?? e})`);
  }
}

/** Reads record batch `batchIndex` of one shard and checks it holds `layer` with `entry.tokens` rows. */
export async function readShardLayer(storeDir: string, m: FeatureManifest, entry: ShardEntry, layer: number): Promise<LayerChunk> {
  const file = shardAbsPath(storeDir, entry);
  const batchIndex = batchIndexOf(m, layer, storeDir);
  const { handle, reader } = await openShardFile(file);
  let batch: RecordBatch | null;
  try {
    checkLayoutAgainstManifest(file, shardLayout(file, reader.schema), m);
    if (reader.numRecordBatches !== m.model.scoredLayers.length) {
      throw fileError(file, `has ${reader.numRecordBatches} record batches, expected ${m.model.scoredLayers.length} (one per layer)`);
    }
    batch = await reader.readRecordBatch(batchIndex);
  } catch (e: any) {
    if (e?.name === 'UserError') throw e;
    throw fileError(file, `cannot read layer ${layer}: ${e?.message ?? e}`);
  } finally {
    await handle.close();
  }
  if (!batch) throw fileError(file, `record batch ${batchIndex} (layer ${layer}) is missing`);
  const tagged = batch.metadata.get(META.batchLayer);
  if (tagged !== undefined && Number(tagged) !== layer) throw fileError(file, `record batch ${batchIndex} is tagged layer ${tagged}, expected ${layer}`);
  if (batch.numRows !== entry.tokens) throw fileError(file, `layer ${layer} has ${batch.numRows} rows, the manifest records ${entry.tokens} tokens`);
  const form = storeFormOf(m);
  const chunk: LayerChunk = {
    contextId: entry.contextId,
    index: entry.index,
    tokens: entry.tokens,
    hidden: childValues(batch, 'hidden', entry.tokens * m.model.D) as LayerChunk['hidden'],
    scores: childValues(batch, 'score', entry.tokens * m.model.H) as Float32Array,
  };
  if (form.quantBlock) chunk.scales = childValues(batch, 'scale', entry.tokens * (m.model.D / form.quantBlock)) as Float32Array;
  if (form.keep) {
    const data = batch.getChild('position')!.data;
    if (data.length !== 1) throw fileError(file, `column position has ${data.length} chunks`);
    chunk.positions = (data[0]!.values as Int32Array).subarray(data[0]!.offset, data[0]!.offset + entry.tokens);
  }
  return chunk;
}

type Values = Uint16Array | Int8Array | Uint8Array | Float32Array;

/** The flat values of a FixedSizeList column (a view into the batch's body buffer). */
function childValues(batch: RecordBatch, column: string, count: number): Values {
  const data = batch.getChild(column)!.data;
  if (data.length !== 1) throw new Error(`column ${column} has ${data.length} chunks`);
  const list = data[0]!;
  const child = list.children[0]!;
  const start = (list.offset * (list.type as any).listSize) + child.offset;
  const values = child.values as Values;
  return values.subarray(start, start + count);
}

/** Yields layer `layer` of every shard, in the canonical context order. */
export async function* readLayer(storeDir: string, layer: number, options: ReadLayerOptions = {}): AsyncGenerator<LayerChunk> {
  const m = await readManifest(storeDir);
  batchIndexOf(m, layer, storeDir);
  const only = options.contexts ? new Set(options.contexts) : null;
  let budget = options.maxTokens ?? Infinity;
  for (const entry of m.shards) {
    if (budget <= 0) return;
    if (only && !only.has(entry.contextId)) continue;
    const chunk = await readShardLayer(storeDir, m, entry, layer);
    if (chunk.tokens > budget) {
      const T = budget;
      const cut: LayerChunk = { ...chunk, tokens: T, hidden: chunk.hidden.subarray(0, T * m.model.D), scores: chunk.scores.subarray(0, T * m.model.H) };
      if (chunk.scales) cut.scales = chunk.scales.subarray(0, (T * chunk.scales.length) / chunk.tokens);
      if (chunk.positions) cut.positions = chunk.positions.subarray(0, T);
      yield cut;
      return;
    }
    budget -= chunk.tokens;
    yield chunk;
  }
}
