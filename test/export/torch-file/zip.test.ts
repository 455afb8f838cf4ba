// The zip container of torch files: what the writer stores reads back, with node:zlib's CRC-32
// checked on every read, and a corrupted entry is refused by name.
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import { StoredZipWriter, ZipReader } from '../../../src/export/torch-file/index.js';
import { tempDir } from '../helpers.js';

const { dir, cleanup } = tempDir('zip');
afterAll(cleanup);

describe('torch-file zip', () => {
  const file = path.join(dir, 'a.zip');
  const payload = Uint8Array.from({ length: 1000 }, (_, i) => (i * 37) & 0xff);

  it('reads back what it wrote, with the standard CRC-32 recorded', async () => {
    const w = await StoredZipWriter.create(file);
    await w.addEntry('a/data/0', payload);
    await w.addEntry('a/version', Buffer.from('3\n'));
    await w.finish();
    const zip = await ZipReader.open(file);
    try {
      const e = zip.find('a/data/0')!;
      expect(e.crc32).toBe(crc32(payload));
      expect(crc32('123456789')).toBe(0xcbf43926); // the check value of the zip polynomial
      expect(Buffer.from(await zip.read(e)).equals(Buffer.from(payload))).toBe(true);
    } finally {
      await zip.close();
    }
  });

  it('refuses an entry whose bytes no longer match its CRC', async () => {
    const bytes = readFileSync(file);
    const at = bytes.indexOf(Buffer.from(payload.subarray(0, 16)));
    bytes[at + 500] ^= 0xff;
    const bad = path.join(dir, 'bad.zip');
    writeFileSync(bad, bytes);
    const zip = await ZipReader.open(bad);
    try {
      await expect(zip.read(zip.find('a/data/0')!)).rejects.toThrow(/bad\.zip: zip entry a\/data\/0: CRC mismatch/);
    } finally {
      await zip.close();
    }
  });
});
