// Quality measures on a (compressed) cache: reconstruction of the context, key-value
// retrieval, and agreement of a scorer's top-k with the KVzip oracle's.
import type { MaskedCache } from './masked-runner.js';

/** The measures only run forwards: the masked simulation or the real compressed cache. */
type ForwardCache = Pick<MaskedCache, 'forward'>;
import type { RepeatPass } from '../kvzip/inputs.js';
import { topKRecall } from '../gate/schedule.js';
import { argmax } from '../runtime/generate.js';

export interface ReconstructionTally {
  tokens: number;
  /** teacher-forced argmax hits */
  correct: number;
  /** sum of log p(target) */
  logLik: number;
}

/** log-softmax of `row` at `target` (row = logits over the vocabulary) */
function logProb(logits: Float32Array, offset: number, V: number, target: number): number {
  let m = -Infinity;
  for (let i = 0; i < V; i++) m = Math.max(m, logits[offset + i]!);
  let z = 0;
  for (let i = 0; i < V; i++) z += Math.exp(logits[offset + i]! - m);
  return logits[offset + target]! - m - Math.log(z);
}

/**
 * Teacher-force KVzip's repeat inputs (prompt ⧺ postfix ⧺ chunk) against the cache and score
 * the chunk tokens. Each pass attends to the cache and itself; its KV is dropped afterwards.
 */
export async function reconstruction(cache: ForwardCache, passes: RepeatPass[], vocab: number): Promise<ReconstructionTally> {
  const t: ReconstructionTally = { tokens: 0, correct: 0, logLik: 0 };
  for (const pass of passes) {
    const { logits } = await cache.forward(pass.ids, { logits: 'all', keepCache: false });
    const first = pass.ids.length - pass.length; // index of the first chunk token
    for (let i = first; i < pass.ids.length; i++) {
      const row = (i - 1) * vocab;
      const target = pass.ids[i]!;
      t.tokens++;
      if (argmax(logits, row, vocab) === target) t.correct++;
      t.logLik += logProb(logits, row, vocab, target);
    }
  }
  return t;
}

export interface RetrievalQuery {
  /** question ⧺ postfix ⧺ answer primer, tokenized */
  ids: number[];
  /** expected value (text between the quotes) */
  value: string;
}

export interface RetrievalTally {
  queries: number;
  correct: number;
  answers: string[];
}

/**
 * Greedy-decode each query's answer against the cache (the query's KV is dropped afterwards)
 * until the closing quote, a stop token or `maxNewTokens`; exact match of the quoted text.
 */
export async function retrieval(
  cache: ForwardCache,
  queries: RetrievalQuery[],
  decode: (ids: number[]) => string,
  o: { maxNewTokens: number; stopIds: number[]; vocab: number },
): Promise<RetrievalTally> {
  const t: RetrievalTally = { queries: 0, correct: 0, answers: [] };
  const stop = new Set(o.stopIds);
  for (const q of queries) {
    const gen: number[] = [];
    let text = '';
    for (let i = 0; i < o.maxNewTokens; i++) {
      const { logits } = await cache.forward([...q.ids, ...gen], { keepCache: false });
      const next = argmax(logits, logits.length - o.vocab, o.vocab);
      if (stop.has(next)) break;
      gen.push(next);
      text = decode(gen);
      if (text.includes("'")) break;
    }
    const answer = text.split("'")[0]!;
    t.queries++;
    if (answer === q.value) t.correct++;
    t.answers.push(answer);
  }
  return t;
}

/**
 * Per scored layer: recall of the oracle's top-k (head, token) entries by the candidate's
 * top-k, k = ceil(ratio · H · ctxLen); scores [L_s][H × ctxLen].
 */
export function agreement(oracle: Float32Array[], candidate: Float32Array[], ratio: number): number[] {
  return oracle.map((ref, s) => topKRecall(ref, candidate[s]!, ratio));
}
