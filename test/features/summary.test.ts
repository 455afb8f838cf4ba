import { describe, expect, it } from 'vitest';
import * as path from 'node:path';
import { checkDiskSpace, estimateStoreBytes, storeSummary } from '../../src/features/summary.js';
import { openStore } from '../../src/features/store.js';
import { CONTEXTS, D, H, LAYERS, identity, tempDir, writeStore } from './fixtures.js';

describe('store sizes', () => {
  it('storeSummary reports counts, bytes, per-layer sizes and sets', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      await writeStore(dir, 'float16');
      const s = await storeSummary(dir);
      expect(s).toMatchObject({
        complete: true,
        D,
        H,
        layers: LAYERS,
        hiddenDtype: 'float16',
        contexts: 3,
        tokens: 23,
        maxContextTokens: 11,
        perLayer: { hiddenBytes: 23 * D * 2, scoreBytes: 23 * H * 4, bytes: 23 * (D * 2 + H * 4) },
        sets: { '10k': { contexts: 2, tokens: 12 }, '10k-cat': { contexts: 1, tokens: 11 } },
      });
      expect(JSON.parse(JSON.stringify(s))).toEqual(s); // fit for --json
    } finally {
      await cleanup();
    }
  });

  it('estimateStoreBytes bounds the real size from above, and tightly for real shapes', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      await writeStore(dir, 'bfloat16');
      const s = await storeSummary(dir);
      const estimate = estimateStoreBytes({ tokens: s.tokens, layers: LAYERS.length, D, H, hiddenDtype: 'bfloat16', contexts: 3 });
      expect(estimate).toBeGreaterThanOrEqual(s.bytes);
      expect(estimate).toBeLessThan(s.bytes * 2);
      // one long context: the data term dominates
      const init = identity();
      const store = await openStore(path.join(dir, 'long'), init);
      const T = 4000;
      const w = await store.openShard('long');
      for (const l of LAYERS) await w.writeLayer(l, new Uint16Array(T * D), new Float32Array(T * H));
      const info = await w.close();
      await store.release();
      const e2 = estimateStoreBytes({ tokens: T, layers: LAYERS.length, D, H, hiddenDtype: 'bfloat16' });
      expect(e2).toBeGreaterThanOrEqual(info.bytes);
      expect(e2 - info.bytes).toBeLessThan(LAYERS.length * 4608 + 2048);
      // docs/method.md §8: Qwen3-8B, 1M tokens, 36 layers: about 295 GB
      const qwen = estimateStoreBytes({ tokens: 1_000_000, layers: 36, D: 4096, H: 8, hiddenDtype: 'bfloat16', contexts: 34 });
      expect(qwen / 1e9).toBeCloseTo(296, 0);
    } finally {
      await cleanup();
    }
  });

  it('checkDiskSpace passes small needs and refuses impossible ones with a clear message', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const ok = await checkDiskSpace(path.join(dir, 'not', 'yet', 'created'), 1000, { marginBytes: 0 });
      expect(ok.free).toBeGreaterThan(1000);
      expect(ok.required).toBe(1020);
      await expect(checkDiskSpace(dir, 1e18)).rejects.toThrow(/not enough disk space for the features: they need about 1000000\.0 TB .* free/);
    } finally {
      await cleanup();
    }
  });
});
