// Write a safetensors file atomically (temp name, then rename), streaming each tensor's bytes
// through one file handle so no buffer ever holds the whole file.
import { open, rename, rm } from 'node:fs/promises';
import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { tempPathFor } from '../../util/atomic.js';
import { SAFETENSORS_DTYPES, elementCount, isSafetensorsDType, safetensorsBytes, type SafetensorsDType } from './dtype.js';

export interface TensorToWrite {
  name: string;
  dtype: SafetensorsDType;
  shape: readonly number[];
  /** little-endian element data: a typed array / byte view, or byte chunks produced on the fly */
  data: ArrayBufferView | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;
}

const WRITE_SLICE = 64 << 20;

function asBytes(v: ArrayBufferView): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/**
 * Tensors are laid out largest element size first (stable otherwise), and the JSON header is
 * padded with spaces to a multiple of 8, as the reference implementation does: every tensor's
 * data then starts at an offset aligned to its element size.
 */
export async function writeSafetensors(file: string, tensors: readonly TensorToWrite[], metadata?: Record<string, string>): Promise<void> {
  const seen = new Set<string>();
  for (const t of tensors) {
    if (t.name === '__metadata__' || seen.has(t.name)) throw new Error(`writeSafetensors(${file}): duplicate or reserved tensor name "${t.name}"`);
    seen.add(t.name);
    if (!isSafetensorsDType(t.dtype)) throw new Error(`writeSafetensors(${file}): tensor "${t.name}" has unknown dtype ${String(t.dtype)}`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new Error(`writeSafetensors(${file}): tensor "${t.name}" has bad shape [${t.shape.join(', ')}]`);
  }
  const ordered = tensors
    .map((t, i) => ({ t, i }))
    .sort((a, b) => safetensorsBytes(b.t.dtype) - safetensorsBytes(a.t.dtype) || a.i - b.i)
    .map(({ t }) => t);

  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of ordered) {
    const length = elementCount(t.shape) * safetensorsBytes(t.dtype);
    if (ArrayBuffer.isView(t.data) && t.data.byteLength !== length) {
      throw new Error(`writeSafetensors(${file}): tensor "${t.name}" has ${t.data.byteLength} bytes, ${t.dtype}[${t.shape.join(', ')}] needs ${length}`);
    }
    header[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + length] };
    offset += length;
  }
  let json = JSON.stringify(header);
  const jsonBytes = Buffer.byteLength(json, 'utf8');
  json += ' '.repeat((8 - (jsonBytes % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));

  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = tempPathFor(file);
  const fh = await open(tmp, 'w');
  let ok = false;
  try {
    let position = 0;
    const put = async (bytes: Uint8Array) => {
      for (let done = 0; done < bytes.length; ) {
        const n = Math.min(WRITE_SLICE, bytes.length - done);
        const { bytesWritten } = await fh.write(bytes, done, n, position);
        done += bytesWritten;
        position += bytesWritten;
      }
    };
    await put(prefix);
    await put(headerBytes);
    for (const t of ordered) {
      const length = elementCount(t.shape) * safetensorsBytes(t.dtype);
      if (ArrayBuffer.isView(t.data)) {
        await put(asBytes(t.data));
        continue;
      }
      let written = 0;
      for await (const chunk of t.data as AsyncIterable<Uint8Array>) {
        written += chunk.byteLength;
        if (written > length) break;
        await put(asBytes(chunk));
      }
      if (written !== length) {
        throw new Error(`writeSafetensors(${file}): tensor "${t.name}" produced ${written > length ? 'more than ' + length : written} bytes, ${t.dtype}[${t.shape.join(', ')}] needs ${length}`);
      }
    }
    await fh.sync();
    ok = true;
  } finally {
    await fh.close();
    if (!ok) await rm(tmp, { force: true });
  }
  await rename(tmp, file);
}
