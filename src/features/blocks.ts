// Exact byte ranges of one layer's values inside each shard file, so the trainer can hand
// them to ONNX Runtime as external-data initializers without copying.
//
// An Arrow IPC file lists its record batches in the footer (offset, metadata length, body
// length). A record batch message starts with 0xFFFFFFFF and a 4-byte metadata size, then the
// flatbuffer Message whose RecordBatch header gives every buffer's (offset, length) relative
// to the body, which follows the metadata. Buffers come in schema pre-order:
//   0 hidden validity, 1 hidden.item validity, 2 hidden.item values,
//   3 score validity,  4 score.item validity,  5 score.item values,
// and in the compact forms (issue 16)
//   6 scale validity,  7 scale.item validity,  8 scale.item values   (8-bit forms)
//   then position validity, position values                          (subsampled stores)
import { promises as fs } from 'node:fs';
import { Message, MessageHeader, type AsyncRecordBatchFileReader } from 'apache-arrow';
import { fileError } from '../util/errors.js';
import { readManifest, shardAbsPath } from './manifest.js';
import { batchIndexOf, checkLayoutAgainstManifest, openShardFile, shardLayout } from './reader.js';
import { META, storeFormOf, type FeatureManifest, type AttnInputDtype, type ShardEntry } from './types.js';
import { DTYPE_BYTES } from '../util/dtype.js';

export interface ByteRange {
  /** absolute byte offset in the file (a multiple of 8) */
  offset: number;
  /** exact data length: rows * cols * element size (no padding) */
  length: number;
  rows: number;
  cols: number;
  dtype: AttnInputDtype | 'float32' | 'int32';
}

export interface LayerBlock {
  contextId: string;
  index: number;
  /** absolute path of the shard file */
  file: string;
  rows: number;
  /** [rows, D] fp16 / bf16 */
  hidden: ByteRange;
  /** [rows, H] fp32 */
  score: ByteRange;
  /** 8-bit forms: [rows, D / quantBlock] fp32 scales */
  scale?: ByteRange;
  /** subsampled stores: [rows, 1] int32 token positions */
  position?: ByteRange;
}

const HIDDEN_VALUES = 2;
const SCORE_VALUES = 5;
const SCALE_VALUES = 8;

/** The layer's hidden and score byte ranges in every shard, in the canonical context order. */
export async function layerBlocks(storeDir: string, layer: number): Promise<LayerBlock[]> {
  const m = await readManifest(storeDir);
  const batchIndex = batchIndexOf(m, layer, storeDir);
  const out: LayerBlock[] = [];
  for (const entry of m.shards) out.push(await shardLayerBlock(storeDir, m, entry, batchIndex));
  return out;
}

async function shardLayerBlock(storeDir: string, m: FeatureManifest, entry: ShardEntry, batchIndex: number): Promise<LayerBlock> {
  const file = shardAbsPath(storeDir, entry);
  const { handle, reader } = await openShardFile(file);
  try {
    checkLayoutAgainstManifest(file, shardLayout(file, reader.schema), m);
    return await recordBatchBlock(file, handle, reader, m, entry, batchIndex);
  } finally {
    await handle.close();
  }
}

/** Locates and checks record batch `batchIndex` of an open shard from its metadata alone. */
export async function recordBatchBlock(
  file: string,
  handle: fs.FileHandle,
  reader: AsyncRecordBatchFileReader,
  m: FeatureManifest,
  entry: ShardEntry,
  batchIndex: number,
): Promise<LayerBlock> {
  const layer = m.model.scoredLayers[batchIndex]!;
  const block = reader.footer?.getRecordBatch(batchIndex);
  if (!block) throw fileError(file, `the footer lists no record batch ${batchIndex} (layer ${layer})`);
  const size = (await handle.stat()).size;
  if (block.offset + block.metaDataLength + block.bodyLength > size) throw fileError(file, `record batch ${batchIndex} runs past the end of the file (truncated?)`);

  const meta = Buffer.alloc(block.metaDataLength);
  await readExactly(handle, meta, block.offset, file);
  // 0xFFFFFFFF continuation marker then the length (current format); the length alone (pre-0.15)
  const continuation = meta.readInt32LE(0) === -1;
  const fbStart = continuation ? 8 : 4;
  const fbLength = meta.readInt32LE(continuation ? 4 : 0);
  if (fbLength <= 0 || fbStart + fbLength > meta.length) throw fileError(file, `record batch ${batchIndex}: bad message length ${fbLength}`);
  const message = Message.decode(meta.subarray(fbStart, fbStart + fbLength));
  if (message.headerType !== MessageHeader.RecordBatch) throw fileError(file, `block ${batchIndex} is not a record batch message`);
  if (message.bodyLength !== block.bodyLength) throw fileError(file, `record batch ${batchIndex}: body length differs between footer and message`);
  const header = message.header() as any; // ipc/metadata/message RecordBatch
  if (header.compression) throw fileError(file, 'record batches are compressed; byte ranges need uncompressed buffers');
  const tagged = message.metadata.get(META.batchLayer);
  if (tagged !== undefined && Number(tagged) !== layer) throw fileError(file, `record batch ${batchIndex} is tagged layer ${tagged}, expected ${layer}`);

  const rows = Number(header.length);
  if (rows !== entry.tokens) throw fileError(file, `layer ${layer} has ${rows} rows, the manifest records ${entry.tokens} tokens`);
  const D = m.model.D;
  const H = m.model.H;
  const form = storeFormOf(m);
  const nb = form.quantBlock ? D / form.quantBlock : 0;
  const nodes: { length: number; nullCount: number }[] = header.nodes;
  const expectNodes = [rows, rows * D, rows, rows * H, ...(nb ? [rows, rows * nb] : []), ...(form.keep ? [rows] : [])];
  if (nodes.length !== expectNodes.length || nodes.some((n, i) => Number(n.length) !== expectNodes[i] || Number(n.nullCount) !== 0)) {
    throw fileError(file, `record batch ${batchIndex}: unexpected field nodes (want lengths ${expectNodes.join('/')} and no nulls)`);
  }
  const bufferCount = 6 + (nb ? 3 : 0) + (form.keep ? 2 : 0);
  const buffers: { offset: number; length: number }[] = header.buffers;
  if (buffers.length !== bufferCount) throw fileError(file, `record batch ${batchIndex}: ${buffers.length} buffers, expected ${bufferCount}`);
  const bodyStart = block.offset + block.metaDataLength;
  const range = (i: number, cols: number, elemBytes: number, dtype: ByteRange['dtype']): ByteRange => {
    const region = buffers[i]!;
    const length = rows * cols * elemBytes;
    if (Number(region.length) < length || Number(region.offset) + Number(region.length) > block.bodyLength) {
      throw fileError(file, `record batch ${batchIndex}: buffer ${i} is ${region.length} bytes, expected ${length}`);
    }
    return { offset: bodyStart + Number(region.offset), length, rows, cols, dtype };
  };
  return {
    contextId: entry.contextId,
    index: entry.index,
    file,
    rows,
    hidden: range(HIDDEN_VALUES, D, DTYPE_BYTES[m.hiddenDtype], m.hiddenDtype),
    score: range(SCORE_VALUES, H, 4, 'float32'),
    ...(nb ? { scale: range(SCALE_VALUES, nb, 4, 'float32') } : {}),
    ...(form.keep ? { position: range(bufferCount - 1, 1, 4, 'int32') } : {}),
  };
}

async function readExactly(handle: fs.FileHandle, into: Buffer, position: number, file: string): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await handle.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) throw fileError(file, `unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
}
