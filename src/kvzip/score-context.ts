// Run the KVzip graph for one context and return per-layer attention inputs and scores
// in the feature store's layouts.
import { ort } from '../runtime/session.js';
import type { KvzipFeeds } from './inputs.js';
import { attnInputFetches, type AttnInputTarget } from './attn-input-buffers.js';

export interface ContextScores {
  /** per scored layer: attention inputs [ctx_len, D], fp16 bits (Uint16Array) or fp32; int8 graphs: codes [rows, D] (the kept rows) */
  attnInput: (Uint16Array | Float32Array | Int8Array | Uint8Array)[];
  /** int8 graphs: per scored layer the fp32 scales [rows, D / block] */
  attnScales?: Float32Array[];
  /** per scored layer: KVzip scores [H, ctx_len], head-major */
  scores: Float32Array[];
  ctxLen: number;
}

const i64 = (data: BigInt64Array, dims: number[]) => new ort.Tensor('int64', data, dims);

export function feedsToTensors(f: KvzipFeeds): Record<string, ort.Tensor> {
  return {
    prefill_ids: i64(f.prefillIds, f.prefillShape),
    num_tokens: i64(BigInt64Array.of(BigInt(f.numTokens)), []),
    prefix_len: i64(BigInt64Array.of(BigInt(f.prefixLen)), []),
    repeat_ids: i64(f.repeatIds, f.repeatShape),
    repeat_lens: i64(f.repeatLens, [f.repeatLens.length]),
    chunk_starts: i64(f.chunkStarts, [f.chunkStarts.length]),
    chunk_lens: i64(f.chunkLens, [f.chunkLens.length]),
    ...(f.keep ? { keep_rows: i64(f.keep.rows, f.keep.shape), keep_index: i64(f.keep.index, [f.keep.index.length]) } : {}),
  };
}

/** `into`: optional host arrays the attention inputs are written into (see AttnInputBuffers). */
export async function scoreContext(session: ort.InferenceSession, feeds: KvzipFeeds, numScored: number, numKvHeads: number, into?: AttnInputTarget): Promise<ContextScores> {
  const ctxLen = feeds.numTokens - feeds.prefixLen;
  const rows = feeds.keep ? feeds.keep.index.length : ctxLen; // rows of hidden.<s> (and scale.<s>)
  const out = into
    ? await session.run(feedsToTensors(feeds), { ...attnInputFetches(into, rows), scores: null } as unknown as ort.InferenceSession.FetchesType)
    : await session.run(feedsToTensors(feeds));
  const attnInput = into?.arrays ?? Array.from({ length: numScored }, (_, s) => out[`hidden.${s}`]!.data as Uint16Array | Float32Array | Int8Array | Uint8Array);
  const scaled = into ? into.scales : out['scale.0'] ? Array.from({ length: numScored }, (_, s) => out[`scale.${s}`]!.data as Float32Array) : undefined;
  const raw = out.scores!;
  const [nPass, L, H, C] = raw.dims as number[];
  if (L !== numScored || H !== numKvHeads) throw new Error(`unexpected scores shape ${raw.dims}`);
  const data = raw.data as Float32Array;
  const scores = Array.from({ length: L }, () => new Float32Array(H * ctxLen));
  feeds.passes.forEach((pass, i) => {
    for (let l = 0; l < L; l++) {
      for (let h = 0; h < H; h++) {
        const src = ((i * L + l) * H + h) * C!;
        scores[l]!.set(data.subarray(src, src + pass.length), h * ctxLen + pass.start);
      }
    }
  });
  if (nPass !== feeds.passes.length) throw new Error(`expected ${feeds.passes.length} passes, got ${nPass}`);
  for (const o of Object.values(out)) o.dispose?.();
  return { attnInput, ...(scaled ? { attnScales: scaled } : {}), scores, ctxLen };
}
