// A small but trainable feature store (sane bf16 features, scores in [0, 1]) written through
// the real store writer, for CLI tests of `train`/`merge-features` on damaged inputs.
import { openStore } from '../../src/features/store.js';
import { f32ArrayToBf16 } from '../../src/util/half.js';
import { identity, H, D, type ContextSpec } from '../features/fixtures.js';

export const TRAIN_CONTEXTS: ContextSpec[] = [
  { id: 'c0000-10k', index: 0, set: '10k', tokens: 300 },
  { id: 'c0001-10k', index: 1, set: '10k', tokens: 260 },
];

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

export interface TrainStoreOptions {
  contexts?: ContextSpec[];
  /** put NaN into the features of this context, rows [from, to) of every layer */
  nanRows?: { context: string; from: number; to: number };
  /** leave the store unfinished (manifest complete: false) */
  incomplete?: boolean;
}

export async function writeTrainStore(dir: string, o: TrainStoreOptions = {}): Promise<void> {
  const store = await openStore(dir, identity('bfloat16'));
  for (const ctx of o.contexts ?? TRAIN_CONTEXTS) {
    const w = await store.openShard(ctx.id);
    for (const layer of store.manifest.model.scoredLayers) {
      const next = rng((ctx.index + 1) * 7919 + layer * 104729);
      const f = new Float32Array(ctx.tokens * D).map(() => next() * 2 - 1);
      const hidden = f32ArrayToBf16(f);
      if (o.nanRows?.context === ctx.id) hidden.fill(0x7fc0, o.nanRows.from * D, o.nanRows.to * D);
      const scoresHT = new Float32Array(H * ctx.tokens).map(() => next());
      await w.writeLayer(layer, hidden, scoresHT);
    }
    const info = await w.close();
    await store.addShard(info, { index: ctx.index, set: ctx.set, docIds: [`doc-${ctx.index}`] });
  }
  if (o.incomplete) await store.release();
  else await store.finish();
}
