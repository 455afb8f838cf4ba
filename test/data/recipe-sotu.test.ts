import { describe, expect, it } from 'vitest';
import { openCorpus } from '../../src/data/corpus.js';
import { collectContexts } from '../../src/data/recipe.js';
import { balancedParts } from '../../src/data/balance-parts.js';
import type { RecipeOptions } from '../../src/data/recipe.js';
import { sotuDocumentIds } from '../../src/data/sotu.js';
import { lenmlTokenizer } from './helpers.js';

// A scaled-down recipe over the real SOTU corpus with the real Qwen3 tokenizer.
const options: Partial<RecipeOptions> = {
  minDocTokens: 3000,
  maxDocTokens: 4000,
  tenKCount: 3,
  catCount: 2,
  catMinTokens: 7000,
  maxTokens: 1_000_000,
};

describe('recipe over SOTU with the Qwen3 tokenizer', () => {
  it('builds the expected contexts, identically on a rerun and across shards', async () => {
    const tok = lenmlTokenizer('qwen3');
    const ids = await sotuDocumentIds();
    const first = await collectContexts(openCorpus('sotu'), tok, options);
    const got = first.contexts.map((c) => [c.id, c.docIds]);
    // First SOTU addresses with 3000 <= Qwen3 tokens < 4000 (after strip), in file order.
    expect(got).toEqual([
      ['10k-0000', [ids[4]]],
      ['10k-0001', [ids[6]]],
      ['10k-0002', [ids[11]]],
      ['cat-0000', [ids[4], ids[6], ids[11]]],
      ['cat-0001', [ids[15], ids[16], ids[18]]],
    ]);
    expect(ids[4]).toBe('1794_george_washington_n');
    for (const c of first.contexts.filter((x) => x.set === '10k')) {
      expect(c.tokenIds.length).toBeGreaterThanOrEqual(3000);
      expect(c.tokenIds.length).toBeLessThan(4000);
      expect(c.tokenIds.length).toBe(c.countedTokens);
      expect(tok.decode(c.tokenIds)).toBe(c.text);
      expect(c.text).toBe(c.text.trim());
    }
    const cat = first.contexts[3];
    expect(cat.countedTokens).toBeGreaterThanOrEqual(7000);
    expect(cat.text).toBe(first.contexts.slice(0, 3).map((c) => c.text).join('\n\n'));
    expect(tok.decode(cat.tokenIds)).toBe(cat.text);
    // joining merges a few tokens at the seams; the count stays within a handful
    expect(Math.abs(cat.tokenIds.length - cat.countedTokens)).toBeLessThan(10);
    expect(first.summary.documents).toMatchObject({ scanned: 19, kept: 6, belowWindow: 13, countedByTokenizer: 19 });

    const again = await collectContexts(openCorpus('sotu'), tok, options, { shard: { index: 1, count: 2 } });
    const part = balancedParts(first.contexts.map((c) => c.countedTokens), 2);
    const mine = first.contexts.filter((_, i) => part[i] === 1);
    expect(mine.length).toBeGreaterThan(0);
    expect(again.contexts).toEqual(mine);
    expect(again.summary.contexts.map(({ selected: _s, tokens: _t, ...rest }) => rest)).toEqual(
      first.summary.contexts.map(({ selected: _s, tokens: _t, ...rest }) => rest),
    );
  });
});
