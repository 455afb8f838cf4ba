// One view over a model's weights, whether they sit in model.safetensors or in shards listed by
// model.safetensors.index.json. Headers are read up front (small); tensor data is read on demand,
// straight from the file at its offset, so nothing loads a whole shard.
import { closeSync, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import * as path from 'node:path';
import { fileError } from '../../util/errors.js';
import { bf16ArrayToF32, f16ArrayToF32 } from '../../util/half.js';
import type { SafetensorsDType } from './dtype.js';
import { readExactSync, readSafetensorsHeader, type SafetensorsHeader } from './header.js';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** absolute path of the file holding the tensor */
  file: string;
  /** absolute byte offset of the tensor's data in `file` */
  offset: number;
  /** byte length of the data */
  length: number;
}

export interface SafetensorsIndex {
  /** the file that was opened: model.safetensors, the index json, or the single file given */
  readonly source: string;
  /** every safetensors file involved (one, or the shards) */
  readonly files: string[];
  /** __metadata__ of a single file; the index's "metadata" (values stringified) when sharded */
  readonly metadata: Record<string, string>;
  names(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  readRaw(name: string): Promise<Uint8Array>;
  readRawSync(name: string): Uint8Array;
  /** `byteLength` bytes of the tensor's data starting at `byteStart` (relative to the tensor) */
  readRange(name: string, byteStart: number, byteLength: number): Promise<Uint8Array>;
  /** the tensor's bytes in pieces of at most `chunkBytes`, for streaming copies of big tensors */
  chunks(name: string, chunkBytes?: number): AsyncIterable<Uint8Array>;
  /** F32 / F16 / BF16 / F64 tensor as float32 */
  readF32(name: string): Float32Array;
}

/** Raw little-endian bytes -> float32 (the host is assumed little-endian, as safetensors is). */
export function rawToF32(dtype: SafetensorsDType, raw: Uint8Array, what = 'tensor'): Float32Array {
  const aligned = raw.byteOffset % 8 === 0 ? raw : raw.slice();
  switch (dtype) {
    case 'F32':
      return new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4);
    case 'F16':
      return f16ArrayToF32(new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2));
    case 'BF16':
      return bf16ArrayToF32(new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2));
    case 'F64':
      return Float32Array.from(new Float64Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 8));
    default:
      throw new Error(`${what}: cannot convert ${dtype} to float32`);
  }
}

function readIndexJson(indexFile: string): { map: Record<string, string>; metadata: Record<string, string> } {
  let raw: any;
  try {
    raw = JSON.parse(readFileSync(indexFile, 'utf8'));
  } catch (e) {
    throw fileError(indexFile, `not valid JSON (${(e as Error).message})`);
  }
  const map = raw?.weight_map;
  if (!map || typeof map !== 'object' || Array.isArray(map)) throw fileError(indexFile, 'no "weight_map" object');
  for (const [name, shard] of Object.entries(map)) {
    if (typeof shard !== 'string' || shard === '' || path.isAbsolute(shard) || shard.split(/[\\/]/).includes('..')) {
      throw fileError(indexFile, `weight_map["${name}"] is not a file name inside the folder: ${JSON.stringify(shard)}`);
    }
  }
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw.metadata ?? {})) metadata[k] = typeof v === 'string' ? v : JSON.stringify(v);
  return { map: map as Record<string, string>, metadata };
}

/**
 * Open `model.safetensors` / `model.safetensors.index.json` in a folder (the single file wins, as
 * in transformers), or one given .safetensors / .index.json file. Every header is validated now.
 */
export function openSafetensors(dirOrFile: string): SafetensorsIndex {
  const target = path.resolve(dirOrFile);
  let stat;
  try {
    stat = statSync(target);
  } catch {
    throw fileError(target, 'missing');
  }
  let source: string;
  if (stat.isDirectory()) {
    const single = path.join(target, SINGLE_FILE);
    const index = path.join(target, INDEX_FILE);
    if (existsSync(single)) source = single;
    else if (existsSync(index)) source = index;
    else throw fileError(target, `no weights: neither ${SINGLE_FILE} nor ${INDEX_FILE} (only safetensors checkpoints are supported)`);
  } else {
    source = target;
  }

  const headers = new Map<string, SafetensorsHeader>(); // by file
  const where = new Map<string, string>(); // tensor name -> file
  let metadata: Record<string, string>;
  if (source.endsWith('.json')) {
    const index = readIndexJson(source);
    const map = index.map;
    const dir = path.dirname(source);
    for (const shard of new Set(Object.values(map))) {
      const file = path.join(dir, shard);
      if (!existsSync(file)) throw fileError(file, `missing (listed as a shard in ${path.basename(source)})`);
      headers.set(file, readSafetensorsHeader(file));
    }
    for (const [name, shard] of Object.entries(map)) {
      const file = path.join(dir, shard);
      if (!headers.get(file)!.tensors.has(name)) throw fileError(file, `has no tensor "${name}" although ${path.basename(source)} lists it there`);
      where.set(name, file);
    }
    metadata = index.metadata;
  } else {
    const h = readSafetensorsHeader(source);
    headers.set(source, h);
    for (const name of h.tensors.keys()) where.set(name, source);
    metadata = h.metadata;
  }

  const info = (name: string): TensorInfo => {
    const file = where.get(name);
    if (!file) throw fileError(source, `no tensor "${name}"`);
    const t = headers.get(file)!.tensors.get(name)!;
    return { name, dtype: t.dtype, shape: [...t.shape], file, offset: t.offset, length: t.length };
  };

  const readAt = async (file: string, position: number, length: number): Promise<Uint8Array> => {
    const fh = await open(file, 'r');
    try {
      const buf = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(buf, done, Math.min(length - done, 1 << 30), position + done);
        if (bytesRead === 0) throw fileError(file, `truncated: wanted ${length} bytes at offset ${position}, file ends after ${done}`);
        done += bytesRead;
      }
      return buf;
    } finally {
      await fh.close();
    }
  };

  const readRawSync = (name: string): Uint8Array => {
    const t = info(name);
    const fd = openSync(t.file, 'r');
    try {
      return readExactSync(fd, t.file, t.offset, t.length);
    } finally {
      closeSync(fd);
    }
  };

  return {
    source,
    files: [...headers.keys()],
    metadata,
    names: () => [...where.keys()],
    has: (name) => where.has(name),
    info,
    readRaw: async (name) => {
      const t = info(name);
      return readAt(t.file, t.offset, t.length);
    },
    readRawSync,
    readRange: async (name, byteStart, byteLength) => {
      const t = info(name);
      if (byteStart < 0 || byteLength < 0 || byteStart + byteLength > t.length) {
        throw new RangeError(`${name}: range [${byteStart}, ${byteStart + byteLength}) outside its ${t.length} bytes`);
      }
      return readAt(t.file, t.offset + byteStart, byteLength);
    },
    chunks: (name, chunkBytes = 16 << 20) => {
      const t = info(name);
      return {
        async *[Symbol.asyncIterator]() {
          const fh = await open(t.file, 'r');
          try {
            for (let done = 0; done < t.length; ) {
              const n = Math.min(chunkBytes, t.length - done);
              const buf = new Uint8Array(n);
              const { bytesRead } = await fh.read(buf, 0, n, t.offset + done);
              if (bytesRead === 0) throw fileError(t.file, `truncated inside tensor "${name}"`);
              done += bytesRead;
              yield bytesRead === n ? buf : buf.subarray(0, bytesRead);
            }
          } finally {
            await fh.close();
          }
        },
      };
    },
    readF32: (name) => rawToF32(info(name).dtype, readRawSync(name), name),
  };
}
