import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { mergeStores } from '../../src/features/merge.js';
import { openStore } from '../../src/features/store.js';
import { readManifest } from '../../src/features/manifest.js';
import { verifyStore } from '../../src/features/verify.js';
import { readLayer } from '../../src/features/reader.js';
import { CONTEXTS, LAYERS, identity, layerData, tempDir, transpose, writeContext, writeStore } from './fixtures.js';

/** Part `index` of 2: contexts with index % 2 === part index (as `--shard i/2` would pick). */
async function writePart(dir: string, index: number, finish = true): Promise<void> {
  const store = await openStore(dir, { ...identity(), part: { index, count: 2 }, plannedContexts: CONTEXTS.filter((c) => c.index % 2 === index).length });
  for (const ctx of CONTEXTS.filter((c) => c.index % 2 === index)) await writeContext(store, ctx);
  if (finish) await store.finish();
  else await store.release();
}

describe('mergeStores', () => {
  it('combines parts in the canonical context order with hard links', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const [a, b, out] = ['part0', 'part1', 'merged'].map((n) => path.join(dir, n));
      // part 1 written first, so its shards are older: order must come from the index
      await writePart(b!, 1);
      await writePart(a!, 0);
      const merged = await mergeStores(out!, [b!, a!]);
      expect(merged.shards.map((s) => s.contextId)).toEqual(CONTEXTS.map((c) => c.id));
      expect(merged.shards.map((s) => s.index)).toEqual([0, 1, 2]);
      expect(merged).toMatchObject({ complete: true, part: null, plannedContexts: 3, totals: { contexts: 3, tokens: 23 } });
      expect(await readManifest(out!)).toEqual(merged);
      const st1 = await fs.stat(path.join(out!, merged.shards[1]!.file));
      const st2 = await fs.stat(path.join(b!, merged.shards[1]!.file));
      expect(st1.ino).toBe(st2.ino); // linked, not copied
      expect(await verifyStore(out!)).toMatchObject({ ok: true, shards: 3 });
      let i = 0;
      for await (const c of readLayer(out!, LAYERS[2]!)) {
        const ctx = CONTEXTS[i++]!;
        expect(Array.from(c.scores)).toEqual(Array.from(transpose(layerData(ctx, LAYERS[2]!).scoresHT, ctx.tokens)));
      }
      // copy mode gives independent files
      const copied = await mergeStores(path.join(dir, 'copied'), [a!, b!], { mode: 'copy' });
      expect(copied.shards).toEqual(merged.shards);
      expect((await fs.stat(path.join(dir, 'copied', merged.shards[1]!.file))).ino).not.toBe(st2.ino);
      await expect(mergeStores(out!, [a!, b!])).rejects.toThrow(/merged[/\\]manifest\.json: already exists/);
    } finally {
      await cleanup();
    }
  });

  it('marks the result incomplete when a part is missing, and refuses unfinished parts by default', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const [a, b] = ['part0', 'part1'].map((n) => path.join(dir, n));
      await writePart(a!, 0);
      const alone = await mergeStores(path.join(dir, 'm1'), [a!]);
      expect(alone.complete).toBe(false);
      expect(alone.plannedContexts).toBe(null);
      await writePart(b!, 1, false);
      await expect(mergeStores(path.join(dir, 'm2'), [a!, b!])).rejects.toThrow(/part1[/\\]manifest\.json: extraction is not complete/);
      const partial = await mergeStores(path.join(dir, 'm3'), [a!, b!], { allowIncomplete: true });
      expect(partial.complete).toBe(false);
      expect(partial.shards.length).toBe(3);
      await expect(mergeStores(path.join(dir, 'm4'), [a!, a!])).rejects.toThrow(/is part 1\/2, and so is/);
    } finally {
      await cleanup();
    }
  });

  it('refuses parts of two different splits (balanced by tokens vs an earlier version\'s index % n): each looks complete, together they may miss contexts', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const [a, b] = ['part0', 'part1'].map((n) => path.join(dir, n));
      await writePart(a!, 0); // no split recorded: an earlier version's index % 2
      const store = await openStore(b!, { ...identity(), part: { index: 1, count: 2, split: 'balanced' } });
      await writeContext(store, CONTEXTS[1]!);
      await store.finish();
      await expect(mergeStores(path.join(dir, 'm'), [a!, b!])).rejects.toThrow(/part1[/\\]manifest\.json: is a part split by balanced, .*part0[/\\]manifest\.json one split by index-modulo/);
      // and such an old part is not resumed as a balanced one
      await expect(openStore(a!, { ...identity(), part: { index: 0, count: 2, split: 'balanced' } })).rejects.toThrow(/took its contexts by index-modulo .*extract every part again/);
    } finally {
      await cleanup();
    }
  });

  it('refuses stores of different runs, and conflicting contexts', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const [a, b, c] = ['a', 'b', 'c'].map((n) => path.join(dir, n));
      await writeStore(a!, 'bfloat16', CONTEXTS.slice(0, 2));
      await writeStore(b!, 'bfloat16', CONTEXTS.slice(2), identity('bfloat16', { chunk: 512 }));
      await expect(mergeStores(path.join(dir, 'm'), [a!, b!])).rejects.toThrow(/b[/\\]manifest\.json: differs from .*extract\.scoreChunk: 2000 vs 512/);
      // same context id, different content
      const store = await openStore(c!, identity());
      const w = await store.openShard(CONTEXTS[0]!.id);
      for (const layer of LAYERS) await w.writeLayer(layer, new Uint16Array(5 * 16), new Float32Array(5 * 2));
      await store.addShard(await w.close(), { index: 0, set: '10k', docIds: [] });
      await store.finish();
      await expect(mergeStores(path.join(dir, 'm2'), [a!, c!])).rejects.toThrow(/is also in .* with different content/);
      await expect(mergeStores(a!, [a!])).rejects.toThrow(/is also an input/);
    } finally {
      await cleanup();
    }
  });
});
