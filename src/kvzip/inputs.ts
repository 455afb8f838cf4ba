// Token-level inputs of KVzip scoring (docs/method.md §1): the prefill sequence and the
// reconstruction ("repeat") inputs, exactly as the public code forms them. Pure logic.

export interface KvzipPrompts {
  /** chat-template system prompt + instruction line (never evicted) */
  prefixIds: number[];
  /** chat-template part after the user turn */
  postfixIds: number[];
  /** tokens of "\n\nRepeat the previous context exactly." */
  repeatFirstIds: number[];
  /** tokens of "\n\nRepeat the part of the previous context exactly, starting with " */
  repeatNextIds: number[];
  /** how many trailing tokens of the previous chunk anchor a later repeat (8) */
  prevPostfixTokens: number;
}

export interface KvzipChunking {
  /** longest prefill chunk (16 000) */
  prefillChunk: number;
  /** reconstruction chunk (2 000) */
  scoreChunk: number;
}

export interface RepeatPass {
  /** context chunk [start, start + length) in context coordinates (0 = first context token) */
  start: number;
  length: number;
  /** full repeat input: prompt ⧺ (anchor) ⧺ postfix ⧺ chunk */
  ids: number[];
}

/** Context chunks of `size` (the last one shorter), as the public chunk_fn cuts them. */
export function chunkRanges(length: number, size: number): { start: number; length: number }[] {
  const out: { start: number; length: number }[] = [];
  for (let start = 0; start < length; start += size) out.push({ start, length: Math.min(size, length - start) });
  return out;
}

export function repeatPasses(ctxIds: number[], prompts: KvzipPrompts, scoreChunk: number): RepeatPass[] {
  const chunks = chunkRanges(ctxIds.length, scoreChunk);
  return chunks.map(({ start, length }, i) => {
    const chunk = ctxIds.slice(start, start + length);
    const prompt =
      i === 0
        ? prompts.repeatFirstIds
        : [...prompts.repeatNextIds, ...ctxIds.slice(Math.max(chunks[i - 1]!.start, start - prompts.prevPostfixTokens), start)];
    return { start, length, ids: [...prompt, ...prompts.postfixIds, ...chunk] };
  });
}

/**
 * Prefill cut into n equal chunks of at most `prefillChunk` tokens. Exact attention makes the
 * result independent of where the cuts fall, and equal chunks waste < n padding tokens
 * (the pads sit after the last real token and are sliced off the cache).
 */
export function prefillLayout(total: number, prefillChunk: number): { chunks: number; chunkLen: number; pad: number } {
  const chunks = Math.max(1, Math.ceil(total / prefillChunk));
  const chunkLen = Math.ceil(total / chunks);
  return { chunks, chunkLen, pad: chunks * chunkLen - total };
}

export interface KvzipFeeds {
  prefillIds: BigInt64Array;
  prefillShape: [number, number];
  numTokens: number;
  prefixLen: number;
  repeatIds: BigInt64Array;
  repeatShape: [number, number];
  repeatLens: BigInt64Array;
  chunkStarts: BigInt64Array;
  chunkLens: BigInt64Array;
  passes: RepeatPass[];
  maxChunk: number;
  /** int8 graphs with kept rows (kvzip_int8_keep): see keepFeeds */
  keep?: KeepFeeds;
}

/** The kept rows of a context as the kvzip_int8_keep graph takes them. */
export interface KeepFeeds {
  /** [n_p, k_max]: per prefill chunk, the chunk-local rows of its kept context positions (padded with 0) */
  rows: BigInt64Array;
  shape: [number, number];
  /** [K]: where each kept position lands in the flattened [n_p·k_max] scan, in position order */
  index: BigInt64Array;
}

/**
 * Kept context positions (ascending, context coordinates) -> the graph's per-chunk gather rows and
 * the flat index of each in the Loop's scan: so the scan holds ≈ K rows, not every chunk's c_p.
 */
export function keepFeeds(kept: Int32Array, prefixLen: number, prefillShape: [number, number]): KeepFeeds {
  const [chunks, chunkLen] = prefillShape;
  const counts = new Int32Array(chunks);
  for (const t of kept) counts[Math.floor((prefixLen + t) / chunkLen)]!++;
  const width = Math.max(1, ...counts);
  const rows = new BigInt64Array(chunks * width);
  const index = new BigInt64Array(kept.length);
  counts.fill(0);
  kept.forEach((t, j) => {
    const r = prefixLen + t;
    const c = Math.floor(r / chunkLen);
    const slot = c * width + counts[c]!++;
    rows[slot] = BigInt(r - c * chunkLen);
    index[j] = BigInt(slot);
  });
  return { rows, shape: [chunks, width], index };
}

/** Everything the KVzip graph needs for one context, as flat int64 arrays. */
export function kvzipFeeds(ctxIds: number[], prompts: KvzipPrompts, chunking: KvzipChunking, padId = 0): KvzipFeeds {
  if (ctxIds.length === 0) throw new Error('empty context');
  const prefill = [...prompts.prefixIds, ...ctxIds];
  const layout = prefillLayout(prefill.length, chunking.prefillChunk);
  const prefillIds = new BigInt64Array(layout.chunks * layout.chunkLen).fill(BigInt(padId));
  prefill.forEach((t, i) => (prefillIds[i] = BigInt(t)));
  const passes = repeatPasses(ctxIds, prompts, chunking.scoreChunk);
  const R = Math.max(...passes.map((p) => p.ids.length));
  const repeatIds = new BigInt64Array(passes.length * R).fill(BigInt(padId));
  passes.forEach((p, i) => p.ids.forEach((t, j) => (repeatIds[i * R + j] = BigInt(t))));
  const P = prompts.prefixIds.length;
  return {
    prefillIds,
    prefillShape: [layout.chunks, layout.chunkLen],
    numTokens: prefill.length,
    prefixLen: P,
    repeatIds,
    repeatShape: [passes.length, R],
    repeatLens: BigInt64Array.from(passes.map((p) => BigInt(p.ids.length))),
    chunkStarts: BigInt64Array.from(passes.map((p) => BigInt(P + p.start))),
    chunkLens: BigInt64Array.from(passes.map((p) => BigInt(p.length))),
    passes,
    maxChunk: chunking.scoreChunk,
  };
}
