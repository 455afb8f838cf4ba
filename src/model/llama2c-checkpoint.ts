// llama2.c legacy checkpoints (export version 0, as run.c reads them): a 7 x int32 header, then
// fp32 weights in a fixed order. This module checks the header against the file size and maps
// the weights to Hugging Face Llama tensors, read lazily so no buffer holds the whole model.
import { closeSync, existsSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { fileError } from '../util/errors.js';
import type { TensorToWrite } from './safetensors/index.js';

export interface Llama2cHeader {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  /** absolute value of the header's vocab_size */
  vocabSize: number;
  seqLen: number;
  /** a positive vocab_size in the header means the classifier is the embedding table */
  sharedClassifier: boolean;
  headDim: number;
}

const HEADER_BYTES = 7 * 4;
const F32 = 4;
/** "ak42" as a little-endian uint32: the magic of llama2.c's newer (version >= 1) exports */
const VERSIONED_MAGIC = 0x616b3432;
const READ_SLICE = 16 << 20;

/** Float counts of each block in file order (classifier last, present only when unshared). */
function blockSizes(h: Llama2cHeader) {
  const { dim: D, hiddenDim: H, nLayers: L, vocabSize: V, seqLen: S, headDim: hd } = h;
  const q = h.nHeads * hd;
  const kv = h.nKvHeads * hd;
  return {
    embed: V * D,
    rmsAtt: L * D,
    wq: L * D * q,
    wk: L * D * kv,
    wv: L * D * kv,
    wo: L * q * D,
    rmsFfn: L * D,
    w1: L * D * H,
    w2: L * H * D,
    w3: L * D * H,
    rmsFinal: D,
    freqCis: S * hd, // freq_cis_real and freq_cis_imag, each seq_len x head_dim/2; unused (RoPE is recomputed)
    wcls: h.sharedClassifier ? 0 : V * D,
  };
}

/** Expected file size in bytes for a header (with or without the trailing classifier). */
export function llama2cFileBytes(h: Llama2cHeader): number {
  const floats = Object.values(blockSizes(h)).reduce((a, b) => a + b, 0);
  return HEADER_BYTES + floats * F32;
}

/** Read and check the header of a legacy llama2.c checkpoint; the file size must match it exactly. */
export function readLlama2cHeader(file: string): Llama2cHeader {
  if (!existsSync(file)) throw fileError(file, 'missing (expected a llama2.c checkpoint .bin)');
  if (!statSync(file).isFile()) throw fileError(file, 'not a file (expected a llama2.c checkpoint .bin)');
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size < HEADER_BYTES) throw fileError(file, `truncated: ${size} bytes, but a llama2.c checkpoint starts with a ${HEADER_BYTES}-byte header`);
    const buf = Buffer.alloc(HEADER_BYTES);
    readSync(fd, buf, 0, HEADER_BYTES, 0);
    if (buf.readUInt32LE(0) === VERSIONED_MAGIC) {
      throw fileError(file, `a llama2.c version-${buf.readInt32LE(4)} export (magic "ak42"); only the legacy format that run.c reads is supported (export.py --version 0)`);
    }
    const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabRaw, seqLen] = Array.from({ length: 7 }, (_, i) => buf.readInt32LE(i * 4)) as [number, number, number, number, number, number, number];
    const fields = { dim, hidden_dim: hiddenDim, n_layers: nLayers, n_heads: nHeads, n_kv_heads: nKvHeads, seq_len: seqLen };
    const describe = `header (dim ${dim}, hidden_dim ${hiddenDim}, n_layers ${nLayers}, n_heads ${nHeads}, n_kv_heads ${nKvHeads}, vocab_size ${vocabRaw}, seq_len ${seqLen})`;
    for (const [name, v] of Object.entries(fields)) {
      if (v <= 0) throw fileError(file, `not a llama2.c checkpoint: ${describe} has ${name} ${v}`);
    }
    if (vocabRaw === 0) throw fileError(file, `not a llama2.c checkpoint: ${describe} has vocab_size 0`);
    if (dim % nHeads !== 0 || (dim / nHeads) % 2 !== 0) throw fileError(file, `not a llama2.c checkpoint: ${describe}: dim must be n_heads x an even head size`);
    if (nHeads % nKvHeads !== 0) throw fileError(file, `not a llama2.c checkpoint: ${describe}: n_heads must be a multiple of n_kv_heads`);
    const header: Llama2cHeader = {
      dim,
      hiddenDim,
      nLayers,
      nHeads,
      nKvHeads,
      vocabSize: Math.abs(vocabRaw),
      seqLen,
      sharedClassifier: vocabRaw > 0,
      headDim: dim / nHeads,
    };
    const want = llama2cFileBytes(header);
    if (size !== want) {
      const other = llama2cFileBytes({ ...header, sharedClassifier: !header.sharedClassifier });
      const kind = header.sharedClassifier ? 'a shared classifier (positive vocab_size)' : 'a separate classifier (negative vocab_size)';
      const hint = size === other ? '; the size fits the other classifier layout, so the sign of vocab_size is wrong' : size < want ? ' (truncated?)' : '';
      throw fileError(file, `is ${size} bytes but its ${describe} with ${kind} implies ${want} bytes${hint}`);
    }
    return header;
  } finally {
    closeSync(fd);
  }
}

/**
 * Row order that turns llama2.c's interleaved RoPE layout into Hugging Face's rotate_half layout.
 * llama2.c rotates the pairs (x[2i], x[2i+1]) of each head; HF rotates (x[i], x[i + hd/2]). So HF
 * row h*hd + half*hd/2 + i is llama2.c row h*hd + 2i + half (transformers' conversion "permute").
 * Returns, for each output row, the source row.
 */
export function rotaryRowOrder(heads: number, headDim: number): Int32Array {
  const half = headDim / 2;
  const order = new Int32Array(heads * headDim);
  for (let h = 0; h < heads; h++) {
    for (let part = 0; part < 2; part++) {
      for (let i = 0; i < half; i++) order[h * headDim + part * half + i] = h * headDim + 2 * i + part;
    }
  }
  return order;
}

export interface Llama2cTensors {
  tensors: TensorToWrite[];
  /** closes the checkpoint file once the tensors have been written */
  close(): void;
}

/** The checkpoint's weights as HF Llama tensors (fp32), each read from the file when written. */
export function llama2cTensors(file: string, h: Llama2cHeader): Llama2cTensors {
  const fd = openSync(file, 'r');
  const sizes = blockSizes(h);
  const offsets: Record<string, number> = {};
  let at = HEADER_BYTES;
  for (const [name, floats] of Object.entries(sizes)) {
    offsets[name] = at;
    at += floats * F32;
  }

  function readExactly(position: number, bytes: number): Buffer {
    const buf = Buffer.allocUnsafe(bytes);
    for (let done = 0; done < bytes; ) {
      const n = readSync(fd, buf, done, bytes - done, position + done);
      if (n === 0) throw fileError(file, `truncated while reading (changed during conversion?)`);
      done += n;
    }
    return buf;
  }

  function* slices(position: number, bytes: number): Generator<Uint8Array> {
    for (let done = 0; done < bytes; done += READ_SLICE) yield readExactly(position + done, Math.min(READ_SLICE, bytes - done));
  }

  function* permutedRows(position: number, rows: number, cols: number, order: Int32Array): Generator<Uint8Array> {
    const rowBytes = cols * F32;
    const src = readExactly(position, rows * rowBytes);
    const out = Buffer.allocUnsafe(rows * rowBytes);
    for (let r = 0; r < rows; r++) src.copy(out, r * rowBytes, order[r]! * rowBytes, (order[r]! + 1) * rowBytes);
    yield out;
  }

  const { dim: D, hiddenDim: H, headDim: hd } = h;
  const qRows = h.nHeads * hd;
  const kvRows = h.nKvHeads * hd;
  const qOrder = rotaryRowOrder(h.nHeads, hd);
  const kOrder = rotaryRowOrder(h.nKvHeads, hd);
  const tensors: TensorToWrite[] = [];
  /** tensor `name` = layer `layer` of block `block`, whose per-layer shape is `shape` */
  const plain = (name: string, block: string, layer: number, shape: number[]) => {
    const bytes = shape.reduce((a, b) => a * b, 1) * F32;
    tensors.push({ name, dtype: 'F32', shape, data: slices(offsets[block]! + layer * bytes, bytes) });
  };

  plain('model.embed_tokens.weight', 'embed', 0, [h.vocabSize, D]);
  for (let l = 0; l < h.nLayers; l++) {
    const p = `model.layers.${l}.`;
    plain(`${p}input_layernorm.weight`, 'rmsAtt', l, [D]);
    tensors.push({ name: `${p}self_attn.q_proj.weight`, dtype: 'F32', shape: [qRows, D], data: permutedRows(offsets.wq! + l * qRows * D * F32, qRows, D, qOrder) });
    tensors.push({ name: `${p}self_attn.k_proj.weight`, dtype: 'F32', shape: [kvRows, D], data: permutedRows(offsets.wk! + l * kvRows * D * F32, kvRows, D, kOrder) });
    plain(`${p}self_attn.v_proj.weight`, 'wv', l, [kvRows, D]);
    plain(`${p}self_attn.o_proj.weight`, 'wo', l, [D, qRows]);
    plain(`${p}post_attention_layernorm.weight`, 'rmsFfn', l, [D]);
    plain(`${p}mlp.gate_proj.weight`, 'w1', l, [H, D]);
    plain(`${p}mlp.down_proj.weight`, 'w2', l, [D, H]);
    plain(`${p}mlp.up_proj.weight`, 'w3', l, [H, D]);
  }
  plain('model.norm.weight', 'rmsFinal', 0, [D]);
  if (!h.sharedClassifier) plain('lm_head.weight', 'wcls', 0, [h.vocabSize, D]);
  return { tensors, close: () => closeSync(fd) };
}
