// Random-access zip reader (central directory, zip64, STORED and DEFLATE entries) over a
// file handle, so a large checkpoint is read one entry at a time.
import { promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as zlib from 'node:zlib';
import { fileError } from '../../util/errors.js';

export interface ZipEntry {
  name: string;
  method: number;
  crc32: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

const MAX32 = 0xffffffff;

export class ZipReader {
  private constructor(
    readonly file: string,
    private readonly handle: FileHandle,
    /** entries in central-directory order */
    readonly entries: ZipEntry[],
  ) {}

  static async open(file: string): Promise<ZipReader> {
    const handle = await fs.open(file, 'r').catch((err: NodeJS.ErrnoException) => {
      throw fileError(file, err.code === 'ENOENT' ? 'file not found' : `cannot open (${err.message})`);
    });
    try {
      const entries = await readCentralDirectory(file, handle);
      return new ZipReader(file, handle, entries);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  find(name: string): ZipEntry | undefined {
    return this.entries.find((e) => e.name === name);
  }

  /**
   * The entry's uncompressed bytes, CRC-checked. `maxBytes` caps what it may inflate to, so a
   * tiny archive that deflates to gigabytes (a zip bomb) is refused before memory is spent.
   */
  async read(entry: ZipEntry, maxBytes = Number.MAX_SAFE_INTEGER): Promise<Uint8Array> {
    if (entry.size > maxBytes) throw fileError(this.file, `zip entry ${entry.name} inflates to ${entry.size} bytes, more than the ${maxBytes} such an entry can hold`);
    const { size: fileSize } = await this.handle.stat();
    if (entry.compressedSize > fileSize) throw fileError(this.file, `zip entry ${entry.name}: compressed size ${entry.compressedSize} is larger than the file`);
    const local = await readAt(this.handle, entry.localHeaderOffset, 30);
    if (local.readUInt32LE(0) !== 0x04034b50) throw fileError(this.file, `zip entry ${entry.name}: bad local header`);
    const dataAt = entry.localHeaderOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
    const raw = await readAt(this.handle, dataAt, entry.compressedSize);
    let data: Uint8Array;
    if (entry.method === 0) data = raw;
    else if (entry.method === 8) {
      try {
        // never more than the recorded size: a lying header cannot make us inflate a bomb
        data = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.size) });
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ERR_BUFFER_TOO_LARGE') throw fileError(this.file, `zip entry ${entry.name} inflates to more than its recorded ${entry.size} bytes (corrupt or hostile archive)`);
        throw fileError(this.file, `zip entry ${entry.name}: cannot inflate (${(e as Error).message})`);
      }
    }
    else throw fileError(this.file, `zip entry ${entry.name}: unsupported compression method ${entry.method}`);
    if (data.length !== entry.size) throw fileError(this.file, `zip entry ${entry.name}: size mismatch`);
    if (zlib.crc32(data) !== entry.crc32) throw fileError(this.file, `zip entry ${entry.name}: CRC mismatch (file corrupt)`);
    return data;
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

async function readAt(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buf, done, length - done, position + done);
    if (bytesRead === 0) throw new Error('unexpected end of file');
    done += bytesRead;
  }
  return buf;
}

async function readCentralDirectory(file: string, handle: FileHandle): Promise<ZipEntry[]> {
  const { size: fileSize } = await handle.stat();
  const tailLen = Math.min(fileSize, 22 + 0xffff + 20);
  const tail = await readAt(handle, fileSize - tailLen, tailLen);
  let eocd = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw fileError(file, 'not a zip archive (no end-of-central-directory record)');
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdStart = tail.readUInt32LE(eocd + 16);
  if (eocd >= 20 && tail.readUInt32LE(eocd - 20) === 0x07064b50) {
    const at = Number(tail.readBigUInt64LE(eocd - 20 + 8));
    const rec = await readAt(handle, at, 56);
    if (rec.readUInt32LE(0) !== 0x06064b50) throw fileError(file, 'bad zip64 end-of-central-directory record');
    count = Number(rec.readBigUInt64LE(32));
    cdSize = Number(rec.readBigUInt64LE(40));
    cdStart = Number(rec.readBigUInt64LE(48));
  }
  if (cdStart + cdSize > fileSize) throw fileError(file, 'truncated zip archive (central directory past end of file)');
  const cd = await readAt(handle, cdStart, cdSize);
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== 0x02014b50) throw fileError(file, 'corrupt zip central directory');
    const flags = cd.readUInt16LE(p + 8);
    const method = cd.readUInt16LE(p + 10);
    const crc = cd.readUInt32LE(p + 16);
    let compressedSize = cd.readUInt32LE(p + 20);
    let size = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    let localHeaderOffset = cd.readUInt32LE(p + 42);
    const name = cd.toString(flags & 0x0800 ? 'utf8' : 'latin1', p + 46, p + 46 + nameLen);
    // zip64 extra: the 8-byte fields appear only for the 32-bit fields that hold 0xFFFFFFFF
    let e = p + 46 + nameLen;
    const extraEnd = e + extraLen;
    while (e + 4 <= extraEnd) {
      const id = cd.readUInt16LE(e);
      const len = cd.readUInt16LE(e + 2);
      if (id === 0x0001) {
        let q = e + 4;
        if (size === MAX32) {
          size = Number(cd.readBigUInt64LE(q));
          q += 8;
        }
        if (compressedSize === MAX32) {
          compressedSize = Number(cd.readBigUInt64LE(q));
          q += 8;
        }
        if (localHeaderOffset === MAX32) localHeaderOffset = Number(cd.readBigUInt64LE(q));
      }
      e += 4 + len;
    }
    entries.push({ name, method, crc32: crc, compressedSize, size, localHeaderOffset });
    p = extraEnd + commentLen;
  }
  return entries;
}
