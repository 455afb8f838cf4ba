// The background shard writers (compiled worker threads, as `fastkvzip extract` uses them):
// several shards at once, recorded strictly in submission order, the same bytes as an
// in-process write, and a failure stops every later shard from being recorded.
import { describe, it, expect } from 'vitest';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';

const dist = path.resolve(__dirname, '../../dist/features/shard-sink.js');
const D = 64;
const H = 2;

function job(storeDir: string, contextId: string, T: number, seed: number) {
  const hidden = [0, 1].map((l) => new Uint16Array(T * D).map((_, i) => (i * 31 + seed * 7 + l) & 0x3bff));
  const scores = [0, 1].map((l) => new Float32Array(H * T).map((_, i) => ((i + seed + l) % 97) / 97));
  return { storeDir, contextId, options: { D, H, layers: [0, 1], hiddenDtype: 'float16' as const }, hidden, hiddenBits: 'float16' as const, scores };
}

describe.skipIf(!existsSync(dist))('ShardSink worker pool (dist build)', () => {
  it('writes in parallel, records in order, same bytes as in-process', async () => {
    const { ShardSink } = await import(dist);
    const dirA = mkdtempSync(path.join(os.tmpdir(), 'fkz-sink-'));
    const dirB = mkdtempSync(path.join(os.tmpdir(), 'fkz-sink-'));
    const pool = new ShardSink({ workers: 3 });
    const serial = new ShardSink({ background: false });
    const order: string[] = [];
    // the first shard is the largest, so later ones finish first but must wait to be recorded
    const sizes = [4000, 50, 60, 70, 80];
    for (const [i, T] of sizes.entries()) {
      await pool.submit(job(dirA, `c${i}`, T, i), async (info: { contextId: string }) => void order.push(info.contextId));
      await serial.submit(job(dirB, `c${i}`, T, i), async () => undefined);
    }
    await pool.close();
    await serial.close();
    expect(order).toEqual(['c0', 'c1', 'c2', 'c3', 'c4']);
    for (let i = 0; i < sizes.length; i++) {
      const f = (d: string) => createHash('sha256').update(readFileSync(path.join(d, 'shards', `c${i}.arrow`))).digest('hex');
      expect(f(dirA)).toBe(f(dirB));
    }
  });

  it('a failed shard stops the later ones from being recorded', async () => {
    const { ShardSink } = await import(dist);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fkz-sink-'));
    const pool = new ShardSink({ workers: 2 });
    const order: string[] = [];
    const record = async (info: { contextId: string }) => void order.push(info.contextId);
    await pool.submit(job(dir, 'ok0', 100, 0), record);
    await pool.submit({ ...job(dir, 'bad', 100, 1), options: { D, H, layers: [0, 1], hiddenDtype: 'float16', align: 3 } }, record);
    await expect(pool.submit(job(dir, 'ok2', 100, 2), record).then(() => pool.drain())).rejects.toThrow(/align 3/);
    await pool.close().catch(() => undefined);
    expect(order).toEqual(['ok0']);
  });

  it('bounds memory: waits for earlier shards beyond the byte budget', async () => {
    const { ShardSink } = await import(dist);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fkz-sink-'));
    const pool = new ShardSink({ workers: 4, maxBytesInFlight: 1 }); // one shard at a time
    const order: string[] = [];
    for (let i = 0; i < 3; i++) {
      await pool.submit(job(dir, `m${i}`, 200, i), async (info: { contextId: string }) => void order.push(info.contextId));
      expect(order.length).toBeGreaterThanOrEqual(i); // the previous one was recorded before this one started
    }
    await pool.close();
    expect(order).toEqual(['m0', 'm1', 'm2']);
  });
});
