// Training and held-out rows of a feature store. A full store's rows are the token positions of
// the concatenated stream, split by the public rule (every 100th held out). A subsampled store
// (issue 16, `extract --keep-fraction`) holds only some positions of each context, and every
// held-out one: its rows are split by the same rule applied to each row's stream position
// (the context's start, from the manifest's context lengths, plus the row's `position`), so the
// held-out set is the very one a full store of the same extraction holds out.
import { promises as fs } from 'node:fs';
import { layerBlocks, storeFormOf, type FeatureManifest } from '../features/index.js';
import { isHeldOut } from '../features/keep.js';
import { fileError } from '../util/errors.js';
import { splitPositions } from './schedule.js';

export interface StoreRows {
  /** rows used (a prefix of the store's rows) */
  total: number;
  /** row indices */
  train: Int32Array;
  test: Int32Array;
}

/** `maxTokens`: only stream positions below it (for a full store: the first maxTokens rows). */
export async function storeRows(storeDir: string, m: FeatureManifest, maxTokens = Infinity): Promise<StoreRows> {
  const rowsAll = m.shards.reduce((a, s) => a + s.tokens, 0);
  if (!storeFormOf(m).keep) {
    const total = Math.min(rowsAll, maxTokens);
    return { total, ...splitPositions(total) };
  }
  const blocks = await layerBlocks(storeDir, m.model.scoredLayers[0]!);
  const train: number[] = [];
  const test: number[] = [];
  let row = 0;
  let offset = 0;
  for (let i = 0; i < m.shards.length; i++) {
    const entry = m.shards[i]!;
    const range = blocks[i]!.position!;
    const buf = Buffer.alloc(range.length);
    const fh = await fs.open(blocks[i]!.file, 'r');
    try {
      const { bytesRead } = await fh.read(buf, 0, range.length, range.offset);
      if (bytesRead !== range.length) throw fileError(blocks[i]!.file, 'truncated position column');
    } finally {
      await fh.close();
    }
    const positions = new Int32Array(buf.buffer, buf.byteOffset, entry.tokens);
    for (let r = 0; r < entry.tokens; r++, row++) {
      const p = offset + positions[r]!;
      if (p >= maxTokens) return { total: row, train: Int32Array.from(train), test: Int32Array.from(test) };
      (isHeldOut(p) ? test : train).push(row);
    }
    offset += entry.contextTokens ?? entry.tokens;
  }
  return { total: row, train: Int32Array.from(train), test: Int32Array.from(test) };
}
