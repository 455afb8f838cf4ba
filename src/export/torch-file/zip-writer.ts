// A STORED-only (uncompressed) zip writer that streams entries to a file handle, in the
// shape PyTorch's own writer produces: each entry's data starts on a 64-byte boundary
// (padding goes in an "FB" extra field), fixed 1980-01-01 timestamps, no data descriptors,
// zip64 records only where offsets or counts need them. Ours, not a zip library's: the 64-byte
// alignment matches torch's own files and lets torch.load(mmap=True) map tensors in place.
import { promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import { tempPathFor } from '../../util/atomic.js';

const ALIGN = 64;
const MAX32 = 0xffffffff;
const DOS_TIME = 0;
const DOS_DATE = (0 << 9) | (1 << 5) | 1; // 1980-01-01

interface CentralRecord {
  name: Buffer;
  crc: number;
  size: number;
  offset: number;
}

export interface ZipWriterOptions {
  /**
   * Testing: write zip64 records for small archives too. 'end-records' adds the zip64
   * end-of-central-directory record and locator (torch/miniz reads these); 'all' also puts
   * every offset in a zip64 extra field (miniz refuses that below 4 GiB, Python accepts it).
   */
  forceZip64?: 'end-records' | 'all';
}

/**
 * Writes `target` atomically: entries go to a temp file beside it, which `finish()`
 * renames into place. `abort()` (or any failed write) removes the temp file.
 */
export class StoredZipWriter {
  private position = 0;
  private readonly records: CentralRecord[] = [];
  private readonly names = new Set<string>();

  private constructor(
    readonly target: string,
    private readonly tmp: string,
    private readonly handle: FileHandle,
    private readonly options: ZipWriterOptions,
  ) {}

  static async create(target: string, options: ZipWriterOptions = {}): Promise<StoredZipWriter> {
    await fs.mkdir(path.dirname(target), { recursive: true });
    const tmp = tempPathFor(target);
    const handle = await fs.open(tmp, 'w');
    return new StoredZipWriter(target, tmp, handle, options);
  }

  /** Add one entry whose content is the concatenation of `chunks`. */
  async addEntry(name: string, chunks: Uint8Array | Uint8Array[]): Promise<void> {
    const parts = Array.isArray(chunks) ? chunks : [chunks];
    if (this.names.has(name)) throw new Error(`zip entry ${name} written twice`);
    this.names.add(name);
    let size = 0;
    let crc = 0;
    for (const p of parts) {
      size += p.length;
      crc = crc32(p, crc);
    }
    if (size >= MAX32) throw new Error(`zip entry ${name} is ${size} bytes; entries of 4 GiB or more are not supported`);
    const nameBytes = Buffer.from(name, 'utf8');
    const offset = this.position;
    const header = localHeader(nameBytes, crc, size, paddingFor(offset + 30 + nameBytes.length));
    await this.write(header);
    for (const p of parts) await this.write(p);
    this.records.push({ name: nameBytes, crc, size, offset });
  }

  async finish(): Promise<void> {
    try {
      const cdStart = this.position;
      const force = this.options.forceZip64 !== undefined;
      const allOffsets = this.options.forceZip64 === 'all';
      for (const r of this.records) await this.write(centralHeader(r, allOffsets || r.offset >= MAX32));
      const cdSize = this.position - cdStart;
      const count = this.records.length;
      const needZip64 = force || count >= 0xffff || cdStart >= MAX32 || cdSize >= MAX32;
      if (needZip64) {
        const eocd64At = this.position;
        await this.write(zip64EndRecord(count, cdSize, cdStart));
        await this.write(zip64Locator(eocd64At));
      }
      await this.write(endRecord(count, cdSize, cdStart, needZip64));
      await this.handle.datasync();
      await this.handle.close();
      await fs.rename(this.tmp, this.target);
    } catch (err) {
      await this.abort();
      throw err;
    }
  }

  async abort(): Promise<void> {
    await this.handle.close().catch(() => undefined);
    await fs.rm(this.tmp, { force: true });
  }

  private async write(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.length) {
      const { bytesWritten } = await this.handle.write(bytes, done, bytes.length - done, this.position);
      done += bytesWritten;
      this.position += bytesWritten;
    }
  }
}

/** Size of the "FB" padding extra field (0 or >= 4 bytes) that puts the data at a multiple of 64. */
function paddingFor(dataStartWithoutExtra: number): number {
  let pad = (ALIGN - (dataStartWithoutExtra % ALIGN)) % ALIGN;
  if (pad > 0 && pad < 4) pad += ALIGN;
  return pad;
}

function localHeader(name: Buffer, crc: number, size: number, extraLen: number): Buffer {
  const b = Buffer.alloc(30 + name.length + extraLen);
  b.writeUInt32LE(0x04034b50, 0);
  b.writeUInt16LE(20, 4); // version needed
  b.writeUInt16LE(flagsFor(name), 6);
  b.writeUInt16LE(0, 8); // stored
  b.writeUInt16LE(DOS_TIME, 10);
  b.writeUInt16LE(DOS_DATE, 12);
  b.writeUInt32LE(crc, 14);
  b.writeUInt32LE(size, 18);
  b.writeUInt32LE(size, 22);
  b.writeUInt16LE(name.length, 26);
  b.writeUInt16LE(extraLen, 28);
  name.copy(b, 30);
  if (extraLen > 0) {
    const e = 30 + name.length;
    b.write('FB', e, 'latin1');
    b.writeUInt16LE(extraLen - 4, e + 2);
    b.fill('Z', e + 4);
  }
  return b;
}

function centralHeader(r: CentralRecord, zip64Offset: boolean): Buffer {
  const extraLen = zip64Offset ? 12 : 0;
  const b = Buffer.alloc(46 + r.name.length + extraLen);
  b.writeUInt32LE(0x02014b50, 0);
  b.writeUInt16LE(zip64Offset ? 45 : 20, 4); // version made by (MS-DOS host)
  b.writeUInt16LE(zip64Offset ? 45 : 20, 6); // version needed
  b.writeUInt16LE(flagsFor(r.name), 8);
  b.writeUInt16LE(0, 10);
  b.writeUInt16LE(DOS_TIME, 12);
  b.writeUInt16LE(DOS_DATE, 14);
  b.writeUInt32LE(r.crc, 16);
  b.writeUInt32LE(r.size, 20);
  b.writeUInt32LE(r.size, 24);
  b.writeUInt16LE(r.name.length, 28);
  b.writeUInt16LE(extraLen, 30);
  // comment length, disk start, internal and external attributes stay 0
  b.writeUInt32LE(zip64Offset ? MAX32 : r.offset, 42);
  r.name.copy(b, 46);
  if (zip64Offset) {
    const e = 46 + r.name.length;
    b.writeUInt16LE(0x0001, e);
    b.writeUInt16LE(8, e + 2);
    b.writeBigUInt64LE(BigInt(r.offset), e + 4);
  }
  return b;
}

function zip64EndRecord(count: number, cdSize: number, cdStart: number): Buffer {
  const b = Buffer.alloc(56);
  b.writeUInt32LE(0x06064b50, 0);
  b.writeBigUInt64LE(44n, 4); // size of the rest of this record
  b.writeUInt16LE(45, 12);
  b.writeUInt16LE(45, 14);
  // disk numbers stay 0
  b.writeBigUInt64LE(BigInt(count), 24);
  b.writeBigUInt64LE(BigInt(count), 32);
  b.writeBigUInt64LE(BigInt(cdSize), 40);
  b.writeBigUInt64LE(BigInt(cdStart), 48);
  return b;
}

function zip64Locator(eocd64At: number): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt32LE(0x07064b50, 0);
  b.writeBigUInt64LE(BigInt(eocd64At), 8);
  b.writeUInt32LE(1, 16); // total disks
  return b;
}

function endRecord(count: number, cdSize: number, cdStart: number, zip64: boolean): Buffer {
  const b = Buffer.alloc(22);
  b.writeUInt32LE(0x06054b50, 0);
  b.writeUInt16LE(zip64 ? 0xffff : count, 8);
  b.writeUInt16LE(zip64 ? 0xffff : count, 10);
  b.writeUInt32LE(zip64 ? MAX32 : cdSize, 12);
  b.writeUInt32LE(zip64 ? MAX32 : cdStart, 16);
  return b;
}

/** Bit 11 marks UTF-8 names; ASCII names leave it clear as most writers do. */
function flagsFor(name: Buffer): number {
  return name.every((c) => c < 0x80) ? 0 : 0x0800;
}
