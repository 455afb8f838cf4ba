import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { RecordBatchReader, type AsyncRecordBatchFileReader } from 'apache-arrow';
import { readLayer, type LayerChunk } from '../../src/features/reader.js';
import { readManifest, identityHash } from '../../src/features/manifest.js';
import { openStore } from '../../src/features/store.js';
import { openShardWriter } from '../../src/features/shard-writer.js';
import { sha256File } from '../../src/features/verify.js';
import { CONTEXTS, D, H, LAYERS, identity, layerData, tempDir, transpose, writeStore } from './fixtures.js';

async function collect(it: AsyncIterable<LayerChunk>): Promise<LayerChunk[]> {
  const out: LayerChunk[] = [];
  for await (const c of it) out.push({ ...c, hidden: c.hidden.slice(), scores: c.scores.slice() });
  return out;
}

describe.each(['bfloat16', 'float16'] as const)('feature store round trip (%s)', (dtype) => {
  it('reads back every layer of every context exactly, in index order', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      // written out of index order: the manifest must still list them by index
      await writeStore(dir, dtype, [CONTEXTS[2]!, CONTEXTS[0]!, CONTEXTS[1]!]);
      for (const layer of LAYERS) {
        const chunks = await collect(readLayer(dir, layer));
        expect(chunks.map((c) => c.contextId)).toEqual(CONTEXTS.map((c) => c.id));
        chunks.forEach((chunk, i) => {
          const ctx = CONTEXTS[i]!;
          const { hidden, scoresHT } = layerData(ctx, layer);
          expect(chunk.tokens).toBe(ctx.tokens);
          expect(chunk.hidden).toBeInstanceOf(Uint16Array);
          expect(chunk.scores).toBeInstanceOf(Float32Array);
          expect(Array.from(chunk.hidden)).toEqual(Array.from(hidden));
          expect(Array.from(chunk.scores)).toEqual(Array.from(transpose(scoresHT, ctx.tokens)));
        });
      }
    } finally {
      await cleanup();
    }
  });

  it('writes a manifest with identity, shard entries and totals', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      await writeStore(dir, dtype);
      const m = await readManifest(dir);
      expect(m.format).toBe('fastkvzip-features');
      expect(m.version).toBe(1);
      expect(m.complete).toBe(true);
      expect(m.hiddenDtype).toBe(dtype);
      expect(m.extract.scoreDtype).toBe('float32');
      expect(m.model.scoredLayers).toEqual(LAYERS);
      expect(m.identityHash).toBe(identityHash(identity(dtype)));
      expect(m.shards.map((s) => [s.contextId, s.index, s.set, s.tokens])).toEqual(CONTEXTS.map((c) => [c.id, c.index, c.set, c.tokens]));
      let bytes = 0;
      for (const s of m.shards) {
        expect(s.file).toBe(`shards/${s.contextId}.arrow`);
        const file = path.join(dir, s.file);
        expect((await fs.stat(file)).size).toBe(s.bytes);
        expect(await sha256File(file)).toBe(s.sha256);
        bytes += s.bytes;
      }
      expect(m.totals).toEqual({ contexts: 3, tokens: 5 + 7 + 11, bytes });
      expect(Date.parse(m.createdAt)).toBeLessThanOrEqual(Date.parse(m.updatedAt));
      // no lock or temp files left behind
      expect((await fs.readdir(dir)).sort()).toEqual(['manifest.json', 'shards']);
    } finally {
      await cleanup();
    }
  });

  it('tags schema, fields and record batches so other readers can check them', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      await writeStore(dir, dtype);
      const fh = await fs.open(path.join(dir, 'shards', `${CONTEXTS[1]!.id}.arrow`));
      try {
        const reader = (await RecordBatchReader.from(fh)) as AsyncRecordBatchFileReader;
        await reader.open();
        expect(reader.isFile()).toBe(true);
        const meta = reader.schema.metadata;
        expect(JSON.parse(meta.get('fastkvzip.layers')!)).toEqual(LAYERS);
        expect(meta.get('fastkvzip.D')).toBe(String(D));
        expect(meta.get('fastkvzip.H')).toBe(String(H));
        expect(meta.get('fastkvzip.hidden_dtype')).toBe(dtype);
        expect(meta.get('fastkvzip.model_id')).toBe('Qwen/Qwen3-Tiny');
        const [hidden, score] = reader.schema.fields;
        expect(String(hidden!.type)).toBe(`FixedSizeList[${D}]<${dtype === 'float16' ? 'Float16' : 'Uint16'}>`);
        expect(hidden!.metadata.get('dtype')).toBe(dtype);
        expect(String(score!.type)).toBe(`FixedSizeList[${H}]<Float32>`);
        expect(reader.numRecordBatches).toBe(LAYERS.length);
        for (let i = 0; i < LAYERS.length; i++) {
          const batch = (await reader.readRecordBatch(i))!;
          expect(batch.metadata.get('fastkvzip.layer')).toBe(String(LAYERS[i]));
          expect(batch.numRows).toBe(CONTEXTS[1]!.tokens);
        }
      } finally {
        await fh.close();
      }
    } finally {
      await cleanup();
    }
  });
});

describe('readLayer options and errors', () => {
  it('maxTokens cuts the stream short; contexts filters it', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      await writeStore(dir);
      const cut = await collect(readLayer(dir, 2, { maxTokens: 9 }));
      expect(cut.map((c) => c.tokens)).toEqual([5, 4]);
      expect(cut[1]!.hidden.length).toBe(4 * D);
      expect(cut[1]!.scores.length).toBe(4 * H);
      const full = layerData(CONTEXTS[1]!, 2);
      expect(Array.from(cut[1]!.hidden)).toEqual(Array.from(full.hidden.subarray(0, 4 * D)));
      const only = await collect(readLayer(dir, 3, { contexts: [CONTEXTS[2]!.id] }));
      expect(only.map((c) => c.contextId)).toEqual([CONTEXTS[2]!.id]);
      await expect(collect(readLayer(dir, 1))).rejects.toThrow(/layer 1 is not stored/);
    } finally {
      await cleanup();
    }
  });

  it('names the file when the manifest is missing or malformed', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      await expect(collect(readLayer(dir, 0))).rejects.toThrow(/manifest\.json: missing/);
      await fs.writeFile(path.join(dir, 'manifest.json'), '{ not json');
      await expect(collect(readLayer(dir, 0))).rejects.toThrow(/manifest\.json: not valid JSON/);
      await fs.writeFile(path.join(dir, 'manifest.json'), JSON.stringify({ format: 'other' }));
      await expect(collect(readLayer(dir, 0))).rejects.toThrow(/manifest\.json: format is "other"/);
    } finally {
      await cleanup();
    }
  });
});

describe('shard writer', () => {
  it('refuses out-of-order layers, wrong sizes and early close, and leaves no temp file on abort', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const w = await openShardWriter(dir, 'ctx', { D, H, layers: LAYERS, hiddenDtype: 'float16' });
      const T = 3;
      await expect(w.writeLayer(2, new Uint16Array(T * D), new Float32Array(T * H))).rejects.toThrow(/out of order, expected layer 0/);
      await expect(w.writeLayer(0, new Uint16Array(T * D + 1), new Float32Array(T * H))).rejects.toThrow(/not a positive multiple of D/);
      await expect(w.writeLayer(0, new Uint16Array(T * D), new Float32Array(T * H + 2))).rejects.toThrow(/expected H\*T/);
      await w.writeLayer(0, new Uint16Array(T * D), new Float32Array(T * H));
      await expect(w.writeLayer(2, new Uint16Array((T + 1) * D), new Float32Array((T + 1) * H))).rejects.toThrow(/has 4 tokens, earlier layers 3/);
      await expect(w.close()).rejects.toThrow(/after 1 of 3 layers/);
      expect((await fs.readdir(path.join(dir, 'shards'))).length).toBe(1); // the temp file
      await w.abort();
      expect(await fs.readdir(path.join(dir, 'shards'))).toEqual([]);
      await expect(openShardWriter(dir, '../evil', { D, H, layers: LAYERS, hiddenDtype: 'float16' })).rejects.toThrow(/not a safe file name/);
    } finally {
      await cleanup();
    }
  });

  it('openStore refuses a second writer while the first holds the lock', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const store = await openStore(dir, identity());
      await expect(openStore(dir, identity())).rejects.toThrow(/in use by process \d+/);
      await store.release();
      const again = await openStore(dir, identity());
      await again.finish(false);
      expect((await readManifest(dir)).complete).toBe(false);
    } finally {
      await cleanup();
    }
  });
});
