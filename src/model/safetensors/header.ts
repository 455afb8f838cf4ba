// Parse and validate one safetensors file's header: 8-byte little-endian length, then a JSON
// object { name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: {string: string} }.
// Offsets are relative to the first byte after the header.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { fileError } from '../../util/errors.js';
import { SAFETENSORS_DTYPES, elementCount, isSafetensorsDType, safetensorsBytes, type SafetensorsDType } from './dtype.js';

/** The reference implementation refuses headers above 100 MB; so do we. */
export const MAX_HEADER_BYTES = 100_000_000;

export interface HeaderTensor {
  dtype: SafetensorsDType;
  shape: number[];
  /** absolute byte offset of the data in the file */
  offset: number;
  length: number;
}

export interface SafetensorsHeader {
  file: string;
  fileSize: number;
  /** absolute offset of the data section (8 + header length) */
  dataStart: number;
  metadata: Record<string, string>;
  tensors: Map<string, HeaderTensor>;
}

/** Read exactly `length` bytes at `position`, or fail naming the file. */
export function readExactSync(fd: number, file: string, position: number, length: number, into?: Uint8Array): Uint8Array {
  const buf = into ?? new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, Math.min(length - done, 1 << 30), position + done);
    if (n === 0) throw fileError(file, `truncated: wanted ${length} bytes at offset ${position}, file ends after ${done}`);
    done += n;
  }
  return buf;
}

const isNonNegInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

export function readSafetensorsHeader(file: string): SafetensorsHeader {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw fileError(file, code === 'ENOENT' ? 'missing' : `cannot open (${code ?? (e as Error).message})`);
  }
  try {
    const fileSize = fstatSync(fd).size;
    if (fileSize < 8) throw fileError(file, `not a safetensors file: only ${fileSize} bytes (truncated?)`);
    const lenBytes = readExactSync(fd, file, 0, 8);
    const headerLen = new DataView(lenBytes.buffer).getBigUint64(0, true);
    if (headerLen > BigInt(MAX_HEADER_BYTES)) throw fileError(file, `not a safetensors file: header length ${headerLen} is implausible`);
    const n = Number(headerLen);
    if (8 + n > fileSize) throw fileError(file, `truncated: header needs ${n} bytes, file has ${fileSize - 8} after the length prefix`);
    let json: unknown;
    try {
      const text = new TextDecoder('utf-8', { fatal: true }).decode(readExactSync(fd, file, 8, n));
      json = JSON.parse(text);
    } catch (e) {
      if ((e as Error).name === 'UserError') throw e;
      throw fileError(file, `bad safetensors header: not valid JSON (${(e as Error).message})`);
    }
    if (!json || typeof json !== 'object' || Array.isArray(json)) throw fileError(file, 'bad safetensors header: not a JSON object');
    const dataStart = 8 + n;
    const dataBytes = fileSize - dataStart;
    const metadata: Record<string, string> = {};
    const tensors = new Map<string, HeaderTensor>();
    for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
      if (name === '__metadata__') {
        if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw fileError(file, 'bad safetensors header: __metadata__ is not an object');
        for (const [k, v] of Object.entries(raw)) {
          if (typeof v !== 'string') throw fileError(file, `bad safetensors header: __metadata__.${k} is not a string`);
          metadata[k] = v;
        }
        continue;
      }
      const t = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (!t || typeof t !== 'object') throw fileError(file, `bad safetensors header: entry "${name}" is not an object`);
      if (!isSafetensorsDType(t.dtype)) {
        throw fileError(file, `tensor "${name}": unknown dtype ${JSON.stringify(t.dtype)} (known: ${Object.keys(SAFETENSORS_DTYPES).join(', ')})`);
      }
      if (!Array.isArray(t.shape) || !t.shape.every(isNonNegInt)) throw fileError(file, `tensor "${name}": bad shape ${JSON.stringify(t.shape)}`);
      const offs = t.data_offsets;
      if (!Array.isArray(offs) || offs.length !== 2 || !isNonNegInt(offs[0]) || !isNonNegInt(offs[1]) || offs[1] < offs[0]) {
        throw fileError(file, `tensor "${name}": bad data_offsets ${JSON.stringify(offs)}`);
      }
      const [begin, end] = offs as [number, number];
      const shape = t.shape as number[];
      const want = elementCount(shape) * safetensorsBytes(t.dtype);
      if (end - begin !== want) {
        throw fileError(file, `tensor "${name}": data_offsets span ${end - begin} bytes but ${t.dtype}[${shape.join(', ')}] needs ${want}`);
      }
      if (end > dataBytes) {
        throw fileError(file, `truncated or corrupt: tensor "${name}" ends at data byte ${end} but the file has only ${dataBytes} data bytes`);
      }
      tensors.set(name, { dtype: t.dtype, shape, offset: dataStart + begin, length: want });
    }
    // Overlapping tensors mean a corrupt header (the reference implementation also rejects them).
    const spans = [...tensors.entries()].filter(([, t]) => t.length > 0).sort((a, b) => a[1].offset - b[1].offset);
    for (let i = 1; i < spans.length; i++) {
      const [prevName, prev] = spans[i - 1]!;
      const [name, cur] = spans[i]!;
      if (cur.offset < prev.offset + prev.length) throw fileError(file, `corrupt header: tensors "${prevName}" and "${name}" overlap`);
    }
    return { file, fileSize, dataStart, metadata, tensors };
  } finally {
    closeSync(fd);
  }
}
