import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openStore } from '../../src/features/store.js';
import { readManifest } from '../../src/features/manifest.js';
import { verifyStore } from '../../src/features/verify.js';
import { readLayer } from '../../src/features/reader.js';
import { layerBlocks } from '../../src/features/blocks.js';
import { CONTEXTS, LAYERS, identity, layerData, tempDir, writeContext, writeStore } from './fixtures.js';

/** A pid that surely belongs to no running process: a child that has already exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(child.stdout.toString());
}

describe('resuming an interrupted extraction', () => {
  it('keeps recorded shards, deletes temp files and unrecorded shards, takes over a dead lock', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const store = await openStore(dir, identity());
      await writeContext(store, CONTEXTS[0]!);
      // crash 1: a shard half written (temp file only)
      const half = await store.openShard(CONTEXTS[1]!.id);
      const d = layerData(CONTEXTS[1]!, LAYERS[0]!);
      await half.writeLayer(LAYERS[0]!, d.hidden, d.scoresHT);
      // crash 2: a shard renamed into place but never recorded in the manifest
      const unrecorded = await store.openShard(CONTEXTS[2]!.id);
      for (const layer of LAYERS) {
        const x = layerData(CONTEXTS[2]!, layer);
        await unrecorded.writeLayer(layer, x.hidden, x.scoresHT);
      }
      await unrecorded.close();
      // the process dies: its lock stays, naming a pid that no longer runs
      await fs.writeFile(path.join(dir, '.lock'), JSON.stringify({ pid: deadPid(), host: os.hostname(), since: 'x' }));
      await fs.writeFile(path.join(dir, '.manifest.json.tmp-1-2'), '{"half": ');
      const shardNames = await fs.readdir(path.join(dir, 'shards'));
      expect(shardNames.some((n) => n.includes('.tmp-'))).toBe(true);

      const resumed = await openStore(dir, identity());
      expect([...resumed.completed]).toEqual([CONTEXTS[0]!.id]);
      expect(resumed.removed.sort()).toEqual(
        [...shardNames.filter((n) => n !== `${CONTEXTS[0]!.id}.arrow`).map((n) => `shards/${n}`), '.manifest.json.tmp-1-2'].sort(),
      );
      expect(await fs.readdir(path.join(dir, 'shards'))).toEqual([`${CONTEXTS[0]!.id}.arrow`]);
      for (const ctx of CONTEXTS.slice(1)) await writeContext(resumed, ctx);
      const m = await resumed.finish();
      expect(m.complete).toBe(true);
      expect(m.shards.map((s) => s.contextId)).toEqual(CONTEXTS.map((c) => c.id));
      expect((await verifyStore(dir)).ok).toBe(true);
      const firstLayer = [];
      for await (const c of readLayer(dir, LAYERS[0]!)) firstLayer.push(c.tokens);
      expect(firstLayer).toEqual(CONTEXTS.map((c) => c.tokens));
      await half.abort(); // only closes the crashed writer's handle: its temp file is long gone
    } finally {
      await cleanup();
    }
  });

  it('refuses a store made for another model, recipe or flags, naming the difference', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      await writeStore(dir, 'bfloat16', CONTEXTS.slice(0, 1));
      await expect(openStore(dir, identity('bfloat16', { commit: 'c'.repeat(40) }))).rejects.toThrow(
        /manifest\.json: this store holds features of another model\/recipe\/extraction \(model\.commit: "a+" vs "c+"\)/,
      );
      await expect(openStore(dir, identity('bfloat16', { chunk: 1000 }))).rejects.toThrow(/extract\.scoreChunk: 2000 vs 1000/);
      await expect(openStore(dir, identity('float16'))).rejects.toThrow(/extract\.hiddenDtype/);
      await expect(openStore(dir, { ...identity(), part: { index: 0, count: 2 } })).rejects.toThrow(/part \(whole run\), not 1\/2/);
      // the revision string alone is not identity (the commit is)
      const sameCommit = identity();
      sameCommit.model = { ...sameCommit.model, revision: 'a'.repeat(40) };
      const store = await openStore(dir, sameCommit);
      expect([...store.completed]).toEqual([CONTEXTS[0]!.id]);
      await store.release();
      // nothing was lost by the refused attempts
      expect((await readManifest(dir)).shards.length).toBe(1);
    } finally {
      await cleanup();
    }
  });

  it('detects a truncated or corrupted shard (verifyStore, openStore) and can drop it', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      await writeStore(dir);
      expect(await verifyStore(dir)).toMatchObject({ ok: true, shards: 3, problems: [], unlisted: [] });
      const m = await readManifest(dir);
      const victim = m.shards[1]!;
      const victimPath = path.join(dir, victim.file);

      // flip one byte of hidden data: same size and structure, so only the checksum can tell
      const block = (await layerBlocks(dir, LAYERS[1]!))[1]!;
      const buf = await fs.readFile(victimPath);
      buf[block.hidden.offset + 3] ^= 0xff;
      await fs.writeFile(victimPath, buf);
      const flipped = await verifyStore(dir);
      expect(flipped.ok).toBe(false);
      expect(flipped.problems).toEqual([expect.stringMatching(new RegExp(`^${victim.file}: sha256 is [0-9a-f]{64}, the manifest records ${victim.sha256}$`))]);
      expect((await verifyStore(dir, { checksums: false })).ok).toBe(true);

      await fs.truncate(victimPath, victim.bytes - 100);
      const truncated = await verifyStore(dir);
      expect(truncated.problems).toEqual([`${victim.file}: size is ${victim.bytes - 100} bytes, the manifest records ${victim.bytes}`]);
      await expect(openStore(dir, identity())).rejects.toThrow(new RegExp(`${victim.contextId}\\.arrow: size is .* the store is damaged`));

      const repaired = await openStore(dir, identity(), { dropBadShards: true });
      expect(repaired.dropped).toEqual([expect.stringContaining(victim.file)]);
      expect([...repaired.completed].sort()).toEqual([CONTEXTS[0]!.id, CONTEXTS[2]!.id]);
      expect(repaired.manifest.complete).toBe(false);
      await writeContext(repaired, CONTEXTS[1]!);
      await repaired.finish();
      expect((await verifyStore(dir)).ok).toBe(true);
    } finally {
      await cleanup();
    }
  });

  it('verifyStore catches a shard whose layers do not match the manifest', async () => {
    const { dir, cleanup } = await tempDir();
    const other = await tempDir();
    try {
      await writeStore(dir);
      // a well-formed shard of another store (other layers) swapped in, manifest patched to match its size/hash
      const init = identity();
      init.model = { ...init.model, scoredLayers: [0, 1, 3] };
      await writeStore(other.dir, 'bfloat16', CONTEXTS.slice(0, 1), init);
      const foreign = (await readManifest(other.dir)).shards[0]!;
      await fs.copyFile(path.join(other.dir, foreign.file), path.join(dir, foreign.file));
      const manifestFile = path.join(dir, 'manifest.json');
      const m = JSON.parse(await fs.readFile(manifestFile, 'utf8'));
      Object.assign(m.shards[0], { bytes: foreign.bytes, sha256: foreign.sha256 });
      await fs.writeFile(manifestFile, JSON.stringify(m));
      const report = await verifyStore(dir);
      expect(report.problems).toEqual([expect.stringMatching(/holds layers \[0,1,3\] but the manifest says \[0,2,3\]/)]);
    } finally {
      await cleanup();
      await other.cleanup();
    }
  });
});
