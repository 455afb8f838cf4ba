// Hostile inputs, family "inflation bombs": a small .pt whose data.pkl deflates to hundreds of
// MiB, whose zip header lies about the size, or whose pickle grows its stack without bound is
// refused with one line naming the file, quickly and without exhausting memory.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import { modelDir } from '../helpers/golden.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'fastkvzip.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-bombs-'));
const env = { ...process.env, FASTKVZIP_CACHE: path.join(tmp, 'cache'), HF_HUB_OFFLINE: '1' };

/** A one-entry zip; `declaredSize` may lie about the inflated size. */
function zipOne(name: string, content: Buffer, declaredSize = content.length): Buffer {
  const data = zlib.deflateRawSync(content, { level: 9 });
  const crc = crc32(content) >>> 0;
  const nameBytes = Buffer.from(name);
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(20, 4);
  local.writeUInt16LE(8, 8);
  local.writeUInt32LE(crc, 14);
  local.writeUInt32LE(data.length, 18);
  local.writeUInt32LE(declaredSize, 22);
  local.writeUInt16LE(nameBytes.length, 26);
  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0);
  central.writeUInt16LE(20, 4);
  central.writeUInt16LE(20, 6);
  central.writeUInt16LE(8, 10);
  central.writeUInt32LE(crc, 16);
  central.writeUInt32LE(data.length, 20);
  central.writeUInt32LE(declaredSize, 24);
  central.writeUInt16LE(nameBytes.length, 28);
  central.writeUInt32LE(0, 42);
  const cdOffset = local.length + nameBytes.length + data.length;
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(1, 8);
  eocd.writeUInt16LE(1, 10);
  eocd.writeUInt32LE(central.length + nameBytes.length, 12);
  eocd.writeUInt32LE(cdOffset, 16);
  return Buffer.concat([local, nameBytes, data, central, nameBytes, eocd]);
}

function evalWith(gates: string) {
  const r = spawnSync(process.execPath, ['--max-old-space-size=512', BIN, 'eval', '--model', modelDir('qwen3'), '--gates', gates, '--data', 'sotu', '--contexts', '1', '--out', path.join(tmp, `out-${path.basename(gates)}`)], { env, encoding: 'utf8', cwd: tmp, timeout: 120_000 });
  return { code: r.status, stderr: r.stderr };
}

const cases: [string, () => Buffer, RegExp][] = [
  ['data.pkl that deflates to 300 MiB', () => zipOne('archive/data.pkl', Buffer.alloc(300 << 20)), /inflates to 314572800 bytes, more than the \d+ such an entry can hold/],
  ['a zip header that understates the inflated size', () => zipOne('archive/data.pkl', Buffer.alloc(64 << 20), 1000), /inflates to more than its recorded 1000 bytes/],
  ['a pickle whose stack grows without bound', () => zipOne('archive/data.pkl', Buffer.concat([Buffer.from([0x80, 0x02, 0x4e]), Buffer.alloc(2 << 20, 0x32)])), /pickle stack grows beyond/],
];

describe('bombs in a .pt are refused', () => {
  for (const [name, make, msg] of cases) {
    it(name, () => {
      const file = path.join(tmp, `${name.replace(/\W+/g, '-')}.pt`);
      writeFileSync(file, make());
      const r = evalWith(file);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).not.toMatch(/internal error|\n\s+at |heap out of memory/);
      const lines = r.stderr.split('\n').filter((l) => l.startsWith('fastkvzip:'));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(file);
      expect(lines[0]).toMatch(msg);
    });
  }
});
