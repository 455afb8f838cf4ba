// The background shard writers (compiled worker threads, as `fastkvzip extract` uses them):
// several shards at once, their callbacks strictly in submission order, the same bytes as an
// in-process write, a failure stops every later shard's callback, and a finished shard is in the
// manifest while the main thread is still blocked (in extraction: the next context's run).
import { describe, it, expect } from 'vitest';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { identity } from './fixtures.js';

const dist = path.resolve(__dirname, '../../dist/features/shard-sink.js');
const distStore = path.resolve(__dirname, '../../dist/features/store.js');
const D = 64;
const H = 2;

function job(storeDir: string, contextId: string, T: number, seed: number) {
  const attnInput = [0, 1].map((l) => new Uint16Array(T * D).map((_, i) => (i * 31 + seed * 7 + l) & 0x3bff));
  const scores = [0, 1].map((l) => new Float32Array(H * T).map((_, i) => ((i + seed + l) % 97) / 97));
  return { storeDir, contextId, options: { D, H, layers: [0, 1], hiddenDtype: 'float16' as const }, attnInput, attnInputDtype: 'float16' as const, scores };
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

  it('a finished shard is in the manifest while the main thread is still blocked (a kill then costs nothing)', async () => {
    const { ShardSink } = await import(dist);
    const { openStore } = await import(distStore);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fkz-sink-'));
    const store = await openStore(dir, identity('float16'));
    const { D: d, H: h, scoredLayers } = store.manifest.model;
    const T = 3000;
    const meta = { index: 0, set: '10k', docIds: ['doc-0'] };
    const shardJob = {
      storeDir: dir,
      contextId: 'c0000-10k',
      options: { D: d, H: h, layers: scoredLayers, hiddenDtype: 'float16' as const },
      attnInput: scoredLayers.map((l: number) => new Uint16Array(T * d).map((_, i) => (i * 31 + l) & 0x3bff)),
      attnInputDtype: 'float16' as const,
      scores: scoredLayers.map((l: number) => new Float32Array(h * T).map((_, i) => ((i + l) % 97) / 97)),
      record: { meta, lock: store.manifestLock },
    };
    const pool = new ShardSink({ workers: 1 });
    let callbackRan = false;
    await pool.submit(shardJob, async (info: any) => {
      callbackRan = true;
      store.shardRecorded(info, meta);
    });
    // Block this thread the way onnxruntime-node's run does, watching manifest.json meanwhile.
    const manifest = path.join(dir, 'manifest.json');
    const nap = new Int32Array(new SharedArrayBuffer(4));
    let listed: { contextId: string; file: string; bytes: number; sha256: string }[] = [];
    for (const until = Date.now() + 30_000; Date.now() < until && listed.length === 0; Atomics.wait(nap, 0, 0, 10)) {
      listed = JSON.parse(readFileSync(manifest, 'utf8')).shards;
    }
    expect(callbackRan).toBe(false); // this thread never got to it: the writer recorded the shard
    expect(listed.map((e) => e.contextId)).toEqual(['c0000-10k']);
    const bytes = readFileSync(path.join(dir, listed[0]!.file));
    expect(bytes.length).toBe(listed[0]!.bytes);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(listed[0]!.sha256);
    await pool.close();
    expect(callbackRan).toBe(true);
    expect([...store.completed]).toEqual(['c0000-10k']);
    const done = await store.finish();
    expect(done.totals).toEqual({ contexts: 1, tokens: T, bytes: bytes.length });
  });

  it('writers recording at the same time lose no entry (the manifest lock)', async () => {
    const { ShardSink } = await import(dist);
    const { openStore } = await import(distStore);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fkz-sink-'));
    const store = await openStore(dir, identity('float16'));
    const { D: d, H: h, scoredLayers } = store.manifest.model;
    const pool = new ShardSink({ workers: 3 });
    const ids = [0, 1, 2, 3, 4, 5].map((i) => `c${i}`);
    for (const [i, id] of ids.entries()) {
      const meta = { index: i, set: '10k', docIds: [] };
      const T = 40 + i;
      await pool.submit(
        {
          storeDir: dir,
          contextId: id,
          options: { D: d, H: h, layers: scoredLayers, hiddenDtype: 'float16' as const },
          attnInput: scoredLayers.map(() => new Uint16Array(T * d).fill(0x3c00)),
          attnInputDtype: 'float16' as const,
          scores: scoredLayers.map(() => new Float32Array(h * T).fill(0.5)),
          record: { meta, lock: store.manifestLock },
        },
        async (info: any) => store.shardRecorded(info, meta),
      );
    }
    await pool.close();
    const onDisk = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    expect(onDisk.shards.map((e: { contextId: string }) => e.contextId)).toEqual(ids);
    expect((await store.finish()).shards.map((e: { contextId: string }) => e.contextId)).toEqual(ids);
  });
});
