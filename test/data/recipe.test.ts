import { describe, expect, it } from 'vitest';
import { corpusFromDocuments } from '../../src/data/corpus.js';
import { DEFAULT_RECIPE, collectContexts, resolveRecipeOptions, runRecipe } from '../../src/data/recipe.js';
import type { RecipeOptions } from '../../src/data/recipe.js';
import type { Document } from '../../src/data/types.js';
import { UserError } from '../../src/util/errors.js';
import { whitespaceTokenizer } from './helpers.js';

// Document i has counts[i] words; the whitespace tokenizer makes one token per word.
const counts = [5, 12, 3, 25, 10, 15, 8, 19, 6, 30, 7, 9];
const words = (i: number, n: number) => Array.from({ length: n }, (_, k) => `d${i}w${k}`).join(' ');
const docs: Document[] = counts.map((n, i) => ({ id: `d${i}`, text: words(i, n) }));
const corpus = corpusFromDocuments(docs);
const small: Partial<RecipeOptions> = {
  minDocTokens: 5,
  maxDocTokens: 20,
  tenKCount: 3,
  catCount: 2,
  catMinTokens: 30,
  maxTokens: 1_000_000,
};
// kept (count in [5, 20)): d0 5, d1 12, d4 10, d5 15, d6 8, d7 19, d8 6, d10 7, d11 9
// below: d2; above: d3, d9

describe('recipe defaults', () => {
  it('are the public recipe', () => {
    expect(DEFAULT_RECIPE).toMatchObject({
      minDocTokens: 10_000,
      maxDocTokens: 30_000,
      tenKCount: 29,
      catCount: 5,
      catMinTokens: 100_000,
      catSeparator: '\n\n',
      catAfterTenK: false,
      maxTokens: 1_000_000,
      stripDocuments: true,
    });
  });

  it('rejects bad numbers with the option name', () => {
    expect(() => resolveRecipeOptions({ maxDocTokens: 10_000 })).toThrow(UserError);
    expect(() => resolveRecipeOptions({ maxDocTokens: 10_000 })).toThrow(/maxDocTokens/);
    expect(() => resolveRecipeOptions({ tenKCount: -1 })).toThrow(/tenKCount/);
    expect(() => resolveRecipeOptions({ catMinTokens: 0 })).toThrow(/catMinTokens/);
    expect(() => resolveRecipeOptions({ maxTokens: 1.5 })).toThrow(/maxTokens/);
    expect(() => resolveRecipeOptions({ tenKcount: 3 } as never)).toThrow(/unknown recipe option "tenKcount"/);
    expect(() => resolveRecipeOptions({ catAfterTenK: 'yes' } as never)).toThrow(/catAfterTenK/);
    expect(resolveRecipeOptions({ tenKCount: Infinity }).tenKCount).toBe(Infinity);
  });
});

describe('recipe sets', () => {
  it('keeps the token window, builds 10k then cat contexts from the first kept document', async () => {
    const tok = whitespaceTokenizer();
    const { contexts, summary } = await collectContexts(corpus, tok, small);
    expect(contexts.map((c) => [c.id, c.index, c.set, c.docIds])).toEqual([
      ['10k-0000', 0, '10k', ['d0']],
      ['10k-0001', 1, '10k', ['d1']],
      ['10k-0002', 2, '10k', ['d4']],
      ['cat-0000', 3, 'cat', ['d0', 'd1', 'd4', 'd5']],
      ['cat-0001', 4, 'cat', ['d6', 'd7', 'd8']],
    ]);
    expect(contexts[0].text).toBe(docs[0].text);
    expect(contexts[3].text).toBe([0, 1, 4, 5].map((i) => docs[i].text).join('\n\n'));
    expect(contexts[3].countedTokens).toBe(42);
    for (const c of contexts) expect(c.tokenIds).toEqual(tok.encode(c.text));
    expect(summary.complete).toBe(true);
    expect(summary.documents).toMatchObject({ scanned: 9, kept: 7, belowWindow: 1, aboveWindow: 1, countedByTokenizer: 9 });
    expect(summary.sets['10k']).toEqual({ contexts: 3, countedTokens: 27, stoppedBy: 'count' });
    expect(summary.sets.cat).toEqual({ contexts: 2, countedTokens: 42 + 33, stoppedBy: 'count' });
    expect(summary.countedTokens).toBe(27 + 75);
    expect(summary.yieldedTokens).toBe(27 + 75);
    expect(summary.recipe.minDocTokens).toBe(5);
    expect(summary.contexts.every((c) => c.selected)).toBe(true);
  });

  it('window is [min, max) and a cat context closes exactly at catMinTokens', async () => {
    const edge = corpusFromDocuments([4, 5, 19, 20, 6].map((n, i) => ({ id: `e${i}`, text: words(i, n) })));
    const { contexts } = await collectContexts(edge, whitespaceTokenizer(), {
      minDocTokens: 5,
      maxDocTokens: 20,
      tenKCount: 0,
      catCount: 2,
      catMinTokens: 24,
    });
    expect(contexts.map((c) => c.docIds)).toEqual([['e1', 'e2']]); // 5 + 19 = 24 closes; e4 alone stays open
  });

  it('can start the cat set after the 10k documents, and reports a short corpus', async () => {
    const { contexts, summary } = await collectContexts(corpus, whitespaceTokenizer(), { ...small, catAfterTenK: true });
    expect(contexts.filter((c) => c.set === 'cat').map((c) => c.docIds)).toEqual([['d5', 'd6', 'd7']]);
    expect(summary.sets.cat.stoppedBy).toBe('corpus-end');
    expect(summary.documents.scanned).toBe(12);
  });

  it('reproduces the public cat loop quirks on request', async () => {
    const { contexts, summary } = await collectContexts(corpus, whitespaceTokenizer(), { ...small, publicCatQuirks: true });
    const cats = contexts.filter((c) => c.set === 'cat');
    expect(cats.map((c) => c.docIds)).toEqual([
      ['d0', 'd1', 'd4', 'd5'],
      ['d7', 'd8', 'd10'], // d6 only closed the first context, d11 closes this one
    ]);
    expect(cats[0].text.startsWith('\n\nd0w0')).toBe(true);
    expect(summary.documents.droppedByCatQuirk).toBe(2);
  });

  it('stops adding contexts once the token budget is reached', async () => {
    const a = await collectContexts(corpus, whitespaceTokenizer(), { ...small, maxTokens: 30 });
    // 10k: 5 + 12 + 10 = 27 < 30, so cat-0000 (42) still goes in; then the budget is spent
    expect(a.contexts.map((c) => c.id)).toEqual(['10k-0000', '10k-0001', '10k-0002', 'cat-0000']);
    expect(a.summary.sets.cat.stoppedBy).toBe('budget');
    expect(a.summary.countedTokens).toBe(69);

    const b = await collectContexts(corpus, whitespaceTokenizer(), { ...small, maxTokens: 17 });
    expect(b.contexts.map((c) => c.id)).toEqual(['10k-0000', '10k-0001']);
    expect(b.summary.sets['10k'].stoppedBy).toBe('budget');
    expect(b.summary.sets.cat).toEqual({ contexts: 0, countedTokens: 0, stoppedBy: 'budget' });
    expect(b.summary.documents.scanned).toBe(2); // nothing more is read once both sets are settled
  });

  it('supports sets of size zero and unbounded counts', async () => {
    const onlyCat = await collectContexts(corpus, whitespaceTokenizer(), { ...small, tenKCount: 0 });
    expect(onlyCat.contexts.map((c) => [c.id, c.index])).toEqual([
      ['cat-0000', 0],
      ['cat-0001', 1],
    ]);
    const all10k = await collectContexts(corpus, whitespaceTokenizer(), { ...small, tenKCount: Infinity, catCount: 0 });
    expect(all10k.contexts.map((c) => c.docIds[0])).toEqual(['d0', 'd1', 'd4', 'd5', 'd6', 'd7', 'd8', 'd10', 'd11']);
    expect(all10k.summary.sets['10k'].stoppedBy).toBe('corpus-end');
    expect(all10k.summary.recipe.tenKCount).toBeNull();
  });

  it('uses stored token counts when present, the tokenizer otherwise, and strips documents', async () => {
    const stored = corpusFromDocuments([
      { id: 'a', text: '  one two  \n', tokenCount: 7 }, // stored count wins: kept
      { id: 'b', text: 'one two three four five six seven' }, // 7 words: kept
      { id: 'c', text: 'x', tokenCount: 100 }, // above the window by its stored count
    ]);
    const tok = whitespaceTokenizer();
    const opts = { minDocTokens: 5, maxDocTokens: 20, tenKCount: 5, catCount: 0 };
    const { contexts, summary } = await collectContexts(stored, tok, opts);
    expect(contexts.map((c) => [c.id, c.docIds[0], c.text, c.countedTokens, c.tokenIds.length])).toEqual([
      ['10k-0000', 'a', 'one two', 7, 2],
      ['10k-0001', 'b', 'one two three four five six seven', 7, 7],
    ]);
    expect(summary.documents).toMatchObject({ countedBySource: 2, countedByTokenizer: 1, aboveWindow: 1 });
    const ignored = await collectContexts(stored, whitespaceTokenizer(), { ...opts, useSourceTokenCounts: false });
    expect(ignored.contexts.map((c) => c.docIds[0])).toEqual(['b']);
    const raw = await collectContexts(stored, whitespaceTokenizer(), { ...opts, stripDocuments: false });
    expect(raw.contexts[0].text).toBe('  one two  \n');
  });

  it('reports documents the source skipped', async () => {
    const dirty = corpusFromDocuments([...docs.slice(0, 2), { id: 'blank', text: ' \n ' }, ...docs.slice(2)]);
    const { summary } = await collectContexts(dirty, whitespaceTokenizer(), small);
    expect(summary.documents.skipped).toEqual({ empty: 1, 'invalid-utf8': 0, 'null-text': 0, excluded: 0 });
  });
});

describe('recipe determinism and sharding', () => {
  it('re-creates identical contexts on a rerun', async () => {
    const a = await collectContexts(corpus, whitespaceTokenizer(), small);
    const b = await collectContexts(corpus, whitespaceTokenizer(), small);
    expect(b.contexts).toEqual(a.contexts);
    expect(b.summary).toEqual(a.summary);
  });

  it('splits contexts over shards balanced by counted tokens, without tokenizing the other shards', async () => {
    const full = await collectContexts(corpus, whitespaceTokenizer(), small);
    const tok0 = whitespaceTokenizer();
    const tok1 = whitespaceTokenizer();
    const s0 = await collectContexts(corpus, tok0, small, { shard: { index: 0, count: 2 } });
    const s1 = await collectContexts(corpus, tok1, small, { shard: { index: 1, count: 2 } });
    // counted tokens 5, 12, 10, 42, 33: longest first to the lighter part gives 52 / 50
    // (index % 2 gave 48 / 54)
    expect(full.summary.contexts.map((c) => c.countedTokens)).toEqual([5, 12, 10, 42, 33]);
    expect(s0.contexts.map((c) => c.id)).toEqual(['10k-0002', 'cat-0000']);
    expect(s1.contexts.map((c) => c.id)).toEqual(['10k-0000', '10k-0001', 'cat-0001']);
    expect([s0, s1].map((s) => s.contexts.reduce((a, c) => a + c.countedTokens, 0))).toEqual([52, 50]);
    const merged = [...s0.contexts, ...s1.contexts].sort((x, y) => x.index - y.index);
    expect(merged).toEqual(full.contexts);
    // the plan is the same everywhere; only the selection differs
    const plan = (s: typeof s0) => s.summary.contexts.map(({ id, docIds, countedTokens }) => ({ id, docIds, countedTokens }));
    expect(plan(s0)).toEqual(plan(s1));
    expect(plan(s0)).toEqual(plan(full));
    expect(s0.summary.contexts.map((c) => c.selected)).toEqual([false, false, true, true, false]);
    expect(s0.summary.sets).toEqual(full.summary.sets);
    // cat texts (the only multi-document encodes) are tokenized only by their own shard
    expect(tok0.calls.filter((t) => t.includes('\n\n'))).toHaveLength(1);
    expect(tok1.calls.filter((t) => t.includes('\n\n'))).toHaveLength(1);
    // a part of one is the whole recipe
    expect((await collectContexts(corpus, whitespaceTokenizer(), small, { shard: { index: 0, count: 1 } })).contexts).toEqual(full.contexts);
    expect(() => runRecipe(corpus, tok0, small, { shard: { index: 2, count: 2 } })).toThrow(UserError);
  });

  it('a shard that resumes skips its done contexts and keeps its part', async () => {
    const s1 = await collectContexts(corpus, whitespaceTokenizer(), small, { shard: { index: 1, count: 2 }, select: (c) => c.id !== '10k-0001' });
    expect(s1.contexts.map((c) => c.id)).toEqual(['10k-0000', 'cat-0001']);
  });

  it('lets a resume skip contexts already done', async () => {
    const done = new Set(['10k-0000', 'cat-0000']);
    const { contexts, summary } = await collectContexts(corpus, whitespaceTokenizer(), small, {
      select: (c) => !done.has(c.id),
    });
    expect(contexts.map((c) => c.id)).toEqual(['10k-0001', '10k-0002', 'cat-0001']);
    expect(summary.contexts).toHaveLength(5);
  });

  it('streams 10k contexts before the corpus is exhausted and closes the corpus early', async () => {
    let read = 0;
    let closed = false;
    const tracked = {
      description: corpus.description,
      async *documents() {
        try {
          for (const d of docs) {
            read++;
            yield d;
          }
        } finally {
          closed = true;
        }
      },
    };
    const run = runRecipe(tracked, whitespaceTokenizer(), small);
    const iterator = run.contexts[Symbol.asyncIterator]();
    const first = await iterator.next();
    expect(first.value?.id).toBe('10k-0000');
    expect(read).toBe(1);
    expect(run.summary().complete).toBe(false);
    for (let r = await iterator.next(); !r.done; r = await iterator.next());
    expect(read).toBe(9);
    expect(closed).toBe(true);
    expect(run.summary().complete).toBe(true);
  });
});
