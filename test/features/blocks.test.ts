import { afterEach, describe, expect, it, vi } from 'vitest';
import { promises as fs } from 'node:fs';
import { layerBlocks } from '../../src/features/blocks.js';
import * as path from 'node:path';
import { openShardFile, readLayer } from '../../src/features/reader.js';
import { openShardWriter } from '../../src/features/shard-writer.js';
import { readManifest } from '../../src/features/manifest.js';
import { openStore } from '../../src/features/store.js';
import { CONTEXTS, D, H, LAYERS, identity, tempDir, writeStore } from './fixtures.js';

async function readRange(file: string, offset: number, length: number): Promise<Buffer> {
  const fh = await fs.open(file, 'r');
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, offset);
    expect(bytesRead).toBe(length);
    return buf;
  } finally {
    await fh.close();
  }
}

const bytesOf = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

afterEach(() => vi.restoreAllMocks());

describe.each(['bfloat16', 'float16'] as const)('layerBlocks (%s)', (dtype) => {
  it('gives the exact byte ranges of each layer’s hidden and score values', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      await writeStore(dir, dtype);
      for (const layer of LAYERS) {
        const blocks = await layerBlocks(dir, layer);
        const chunks = [];
        for await (const c of readLayer(dir, layer)) chunks.push(c);
        expect(blocks.map((b) => b.contextId)).toEqual(CONTEXTS.map((c) => c.id));
        for (let i = 0; i < blocks.length; i++) {
          const b = blocks[i]!;
          const c = chunks[i]!;
          expect(b.rows).toBe(CONTEXTS[i]!.tokens);
          expect(b.hidden).toMatchObject({ rows: b.rows, cols: D, dtype, length: b.rows * D * 2 });
          expect(b.score).toMatchObject({ rows: b.rows, cols: H, dtype: 'float32', length: b.rows * H * 4 });
          expect(b.hidden.offset % 4096).toBe(0); // page-aligned for memory mapping
          expect(b.score.offset % 8).toBe(0);
          expect((await readRange(b.file, b.hidden.offset, b.hidden.length)).equals(bytesOf(c.hidden))).toBe(true);
          expect((await readRange(b.file, b.score.offset, b.score.length)).equals(bytesOf(c.scores))).toBe(true);
        }
      }
    } finally {
      await cleanup();
    }
  });
});

describe('alignment of record batch bodies', () => {
  it.each([8, 4096, 65536])('every body starts at a multiple of %i, whatever the sizes', async (align) => {
    const { dir, cleanup } = await tempDir();
    try {
      for (const T of [1, 2, 3, 5, 8, 13, 21, 34, 55, 89]) {
        const layers = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
        const w = await openShardWriter(dir, `t${T}`, { D: 24, H: 3, layers, hiddenDtype: 'float16', align });
        for (const l of layers) await w.writeLayer(l, new Uint16Array(T * 24).fill(l), new Float32Array(T * 3));
        const info = await w.close();
        const { handle, reader } = await openShardFile(path.join(dir, info.file));
        try {
          for (let i = 0; i < layers.length; i++) {
            const block = reader.footer!.getRecordBatch(i)!;
            expect((block.offset + block.metaDataLength) % align).toBe(0);
            expect((await reader.readRecordBatch(i))!.getChild('hidden')!.data[0]!.children[0]!.values[0]).toBe(i);
          }
        } finally {
          await handle.close();
        }
      }
    } finally {
      await cleanup();
    }
  });
});

describe('layer-at-a-time reading', () => {
  it('reads only the requested record batch (plus footer) from each shard', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      // one long context: 4 layers of 2000 tokens x D=16 bf16 = 64 KB each
      const store = await openStore(dir, identity());
      const T = 2000;
      const w = await store.openShard('long');
      for (const layer of LAYERS) await w.writeLayer(layer, new Uint16Array(T * D).fill(layer), new Float32Array(T * H).fill(layer / 10));
      await store.addShard(await w.close(), { index: 0, set: '10k', docIds: ['d'] });
      await store.finish();
      const fileBytes = (await readManifest(dir)).totals.bytes;

      const probe = await fs.open(`${dir}/manifest.json`);
      const proto = Object.getPrototypeOf(probe);
      await probe.close();
      let bytesRead = 0;
      const realRead = proto.read;
      vi.spyOn(proto, 'read').mockImplementation(async function (this: fs.FileHandle, ...args: any[]) {
        const res = await realRead.apply(this, args);
        bytesRead += res.bytesRead;
        return res;
      });
      for await (const c of readLayer(dir, 2)) expect(c.hidden[0]).toBe(2);
      const layerBytes = T * (D * 2 + H * 4);
      expect(bytesRead).toBeGreaterThanOrEqual(layerBytes);
      expect(bytesRead).toBeLessThan(layerBytes + 4096);
      expect(bytesRead).toBeLessThan(fileBytes / 2);
    } finally {
      await cleanup();
    }
  });
});
