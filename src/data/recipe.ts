// The document recipe (docs/method.md §2): a corpus -> scoring contexts, in a deterministic order that
// depends only on the corpus, these options and (when documents carry no token count) the
// tokenizer — so a rerun re-creates the same contexts with the same ids (resume relies on it).
//
//   keep documents whose token count is in [minDocTokens, maxDocTokens)
//   set "10k": one kept document per context, the first tenKCount
//   set "cat": consecutive kept documents joined with catSeparator until >= catMinTokens,
//              the first catCount; like the public code it starts again from the FIRST kept
//              document (re-using the 10k documents) unless catAfterTenK is set
//   order: all 10k contexts, then all cat contexts; stop adding contexts once the counted
//          tokens reach maxTokens
//   shard i/n: the contexts that balancedParts (balance-parts.ts) gives part i, from the
//          counted tokens of every context of the plan
//
// One pass over the corpus: 10k contexts stream out as they are found; cat contexts are held
// (text only, bounded by catCount and the budget) until the 10k set is complete. A shard needs
// the whole plan to balance the parts, so it holds every context until the pass is over.
import { UserError } from '../util/errors.js';
import { pythonStrip } from './text.js';
import { emptySkipCounts } from './types.js';
import { balancedParts } from './balance-parts.js';
import type { Corpus, CorpusDescription, Document, SkipCounts, TextTokenizer } from './types.js';

export interface RecipeOptions {
  /** keep documents with at least this many tokens */
  minDocTokens: number;
  /** ...and fewer than this many (longer documents are left out, as in the public code) */
  maxDocTokens: number;
  /** contexts of the "10k" set (one document each); Infinity = until the budget */
  tenKCount: number;
  /** contexts of the "cat" set; Infinity = until the budget */
  catCount: number;
  /** a cat context closes once its documents reach this many tokens */
  catMinTokens: number;
  catSeparator: string;
  /** start the cat set after the documents used by the 10k set (the public code re-uses them) */
  catAfterTenK: boolean;
  /**
   * Reproduce two accidents of the public cat loop: every cat text starts with the separator,
   * and the kept document that arrives after a context is full is dropped, not carried over.
   */
  publicCatQuirks: boolean;
  /** total counted tokens over all contexts; no context is added once this is reached */
  maxTokens: number;
  /** Python-style `.strip()` of each document, as the public code does */
  stripDocuments: boolean;
  /** use a document's stored token count (parquet `token_count`) when present, else the tokenizer */
  useSourceTokenCounts: boolean;
}

/** The public recipe (docs/method.md §2). */
export const DEFAULT_RECIPE: Readonly<RecipeOptions> = Object.freeze({
  minDocTokens: 10_000,
  maxDocTokens: 30_000,
  tenKCount: 29,
  catCount: 5,
  catMinTokens: 100_000,
  catSeparator: '\n\n',
  catAfterTenK: false,
  publicCatQuirks: false,
  maxTokens: 1_000_000,
  stripDocuments: true,
  useSourceTokenCounts: true,
});

export type ContextSet = '10k' | 'cat';

export interface Shard {
  index: number;
  count: number;
}

export interface ContextRef {
  /** stable: `${set}-${NNNN}` with the index inside its set, e.g. "10k-0003", "cat-0001" */
  id: string;
  /** position in the recipe's order over both sets */
  index: number;
  set: ContextSet;
}

export interface ScoringContext extends ContextRef {
  docIds: string[];
  text: string;
  tokenIds: number[];
  /** the recipe's measure of this context (sum of its documents' counts) */
  countedTokens: number;
}

export interface RecipeRunOptions {
  /** keep only the contexts of part shard.index of shard.count, balanced by counted tokens (balance-parts.ts) */
  shard?: Shard;
  /** further selection (e.g. skip contexts already done when resuming); unselected ones are not tokenized */
  select?: (context: ContextRef) => boolean;
}

export interface ContextPlanEntry extends ContextRef {
  docIds: string[];
  countedTokens: number;
  /** chosen by the shard and select; only these are tokenized and yielded */
  selected: boolean;
  /** token ids produced (selected contexts, once yielded) */
  tokens?: number;
}

export type SetStop = 'count' | 'budget' | 'corpus-end';

type JsonNumbers<T> = { [K in keyof T]: T[K] extends number ? number | null : T[K] };

export interface RecipeSummary {
  corpus: CorpusDescription;
  /** every option used; Infinity is written as null */
  recipe: JsonNumbers<RecipeOptions>;
  shard: Shard | null;
  /** true once the contexts were iterated to the end */
  complete: boolean;
  documents: {
    /** documents the corpus yielded before the recipe was satisfied (the pass stops early) */
    scanned: number;
    kept: number;
    belowWindow: number;
    aboveWindow: number;
    /** documents the sources left out, by reason */
    skipped: SkipCounts;
    /** how the window was measured: stored counts vs the tokenizer */
    countedBySource: number;
    countedByTokenizer: number;
    /** kept documents dropped by publicCatQuirks */
    droppedByCatQuirk: number;
  };
  sets: Record<ContextSet, { contexts: number; countedTokens: number; stoppedBy: SetStop | null }>;
  countedTokens: number;
  /** tokens of the contexts this run yielded (its shard/selection) */
  yieldedTokens: number;
  /** every context of the recipe, selected or not, in order */
  contexts: ContextPlanEntry[];
}

export interface RecipeRun {
  /** single use: one pass over the corpus */
  contexts: AsyncIterable<ScoringContext>;
  /** live summary; final once `complete` is true */
  summary(): RecipeSummary;
}

function isCount(value: number, min: number): boolean {
  return value === Infinity || (Number.isInteger(value) && value >= min);
}

/** Defaults merged with overrides, checked; bad values are a UserError naming the option. */
export function resolveRecipeOptions(overrides: Partial<RecipeOptions> = {}): RecipeOptions {
  const o: RecipeOptions = { ...DEFAULT_RECIPE };
  for (const [key, value] of Object.entries(overrides)) {
    if (!(key in DEFAULT_RECIPE)) {
      throw new UserError(`unknown recipe option "${key}" (known: ${Object.keys(DEFAULT_RECIPE).join(', ')})`);
    }
    if (value !== undefined) (o as unknown as Record<string, unknown>)[key] = value;
  }
  const bad = (name: keyof RecipeOptions, rule: string) =>
    new UserError(`recipe option ${name} = ${String(o[name])}: ${rule}`);
  for (const flag of ['catAfterTenK', 'publicCatQuirks', 'stripDocuments', 'useSourceTokenCounts'] as const) {
    if (typeof o[flag] !== 'boolean') throw bad(flag, 'must be true or false');
  }
  if (!Number.isInteger(o.minDocTokens) || o.minDocTokens < 0) throw bad('minDocTokens', 'must be an integer >= 0');
  if (!isCount(o.maxDocTokens, o.minDocTokens + 1)) throw bad('maxDocTokens', `must be an integer > minDocTokens (${o.minDocTokens})`);
  if (!isCount(o.tenKCount, 0)) throw bad('tenKCount', 'must be an integer >= 0');
  if (!isCount(o.catCount, 0)) throw bad('catCount', 'must be an integer >= 0');
  if (!Number.isInteger(o.catMinTokens) || o.catMinTokens < 1) throw bad('catMinTokens', 'must be an integer >= 1');
  if (!isCount(o.maxTokens, 1)) throw bad('maxTokens', 'must be an integer >= 1');
  if (typeof o.catSeparator !== 'string') throw bad('catSeparator', 'must be a string');
  return o;
}

function checkShard(shard: Shard | undefined): Shard | null {
  if (!shard) return null;
  const { index, count } = shard;
  if (!Number.isInteger(count) || count < 1 || !Number.isInteger(index) || index < 0 || index >= count) {
    throw new UserError(`shard ${index}/${count}: need an integer count >= 1 and 0 <= index < count`);
  }
  return { index, count };
}

export function contextId(set: ContextSet, indexInSet: number): string {
  return `${set}-${String(indexInSet).padStart(4, '0')}`;
}

interface KeptDocument {
  id: string;
  text: string;
  count: number;
  /** tokenizer output when the window was measured with it (re-used for a 10k context) */
  ids?: number[];
}

interface CatGroup {
  docs: KeptDocument[];
  count: number;
  full: boolean;
}

const jsonNumber = (n: number): number | null => (Number.isFinite(n) ? n : null);

/** Start the recipe over a corpus. Nothing is read until `contexts` is iterated. */
export function runRecipe(
  corpus: Corpus,
  tokenizer: TextTokenizer,
  overrides: Partial<RecipeOptions> = {},
  run: RecipeRunOptions = {},
): RecipeRun {
  const o = resolveRecipeOptions(overrides);
  const shard = checkShard(run.shard);
  const recipe = Object.fromEntries(
    Object.entries(o).map(([k, v]) => [k, typeof v === 'number' ? jsonNumber(v) : v]),
  ) as JsonNumbers<RecipeOptions>;
  const summary: RecipeSummary = {
    corpus: corpus.description,
    recipe,
    shard,
    complete: false,
    documents: {
      scanned: 0,
      kept: 0,
      belowWindow: 0,
      aboveWindow: 0,
      skipped: emptySkipCounts(),
      countedBySource: 0,
      countedByTokenizer: 0,
      droppedByCatQuirk: 0,
    },
    sets: {
      '10k': { contexts: 0, countedTokens: 0, stoppedBy: null },
      cat: { contexts: 0, countedTokens: 0, stoppedBy: null },
    },
    countedTokens: 0,
    yieldedTokens: 0,
    contexts: [],
  };
  const docs = summary.documents;

  // a split over parts balances the contexts' tokens, so it needs every context's count first
  // (one part of one is the whole recipe, streamed)
  const held: { ref: ContextRef; members: KeptDocument[]; count: number }[] | null = shard && shard.count > 1 ? [] : null;
  // part of each held context (by id), once the plan is complete
  let partOf: Map<string, number> | null = null;
  const isSelected = (ref: ContextRef): boolean =>
    (!held || partOf!.get(ref.id) === shard!.index) && (run.select ? run.select(ref) : true);

  /** Record a context in the plan; build and return it when selected. */
  const makeContext = (ref: ContextRef, members: KeptDocument[], count: number): ScoringContext | undefined => {
    const entry: ContextPlanEntry = { ...ref, docIds: members.map((d) => d.id), countedTokens: count, selected: isSelected(ref) };
    summary.contexts.push(entry);
    const set = summary.sets[ref.set];
    set.contexts++;
    set.countedTokens += count;
    summary.countedTokens += count;
    if (!entry.selected) return undefined;
    let text: string;
    let tokenIds: number[];
    if (ref.set === '10k') {
      text = members[0].text;
      tokenIds = members[0].ids ?? tokenizer.encode(text);
    } else {
      text = (o.publicCatQuirks ? o.catSeparator : '') + members.map((d) => d.text).join(o.catSeparator);
      tokenIds = tokenizer.encode(text);
    }
    entry.tokens = tokenIds.length;
    summary.yieldedTokens += tokenIds.length;
    return { ...ref, docIds: entry.docIds, text, tokenIds, countedTokens: count };
  };

  async function* generate(): AsyncGenerator<ScoringContext> {
    let total = 0; // counted tokens of the contexts so far, in recipe order
    let tenKMade = 0;
    let tenKDone = o.tenKCount === 0;
    const catGroups: CatGroup[] = [];
    let catGroupTokens = 0;
    let open: CatGroup | undefined;
    // The 10k total only grows, so once it plus the cat groups built reach the budget, no
    // further cat group could ever be emitted.
    const catComplete = () => catGroups.length >= o.catCount || total + catGroupTokens >= o.maxTokens;
    let catDone = catComplete();

    const closeGroup = (group: CatGroup) => {
      catGroups.push(group);
      catGroupTokens += group.count;
      open = undefined;
    };
    const feedCat = (doc: KeptDocument) => {
      if (open?.full) {
        // publicCatQuirks: this document only triggers the close and is lost
        closeGroup(open);
        docs.droppedByCatQuirk++;
        return;
      }
      open ??= { docs: [], count: 0, full: false };
      open.docs.push(doc);
      open.count += doc.count;
      if (open.count >= o.catMinTokens) {
        if (o.publicCatQuirks) open.full = true;
        else closeGroup(open);
      }
    };

    if (!(tenKDone && catDone)) {
      const documents: AsyncIterable<Document> = corpus.documents({
        onSkip: (skip) => {
          docs.skipped[skip.reason]++;
        },
      });
      for await (const doc of documents) {
        docs.scanned++;
        const text = o.stripDocuments ? pythonStrip(doc.text) : doc.text;
        let ids: number[] | undefined;
        let count: number;
        if (o.useSourceTokenCounts && doc.tokenCount !== undefined) {
          count = doc.tokenCount;
          docs.countedBySource++;
        } else {
          ids = tokenizer.encode(text);
          count = ids.length;
          docs.countedByTokenizer++;
        }
        if (count < o.minDocTokens) {
          docs.belowWindow++;
          continue;
        }
        if (count >= o.maxDocTokens) {
          docs.aboveWindow++;
          continue;
        }
        docs.kept++;
        const kept: KeptDocument = { id: doc.id, text, count, ids };

        let usedByTenK = false;
        if (!tenKDone) {
          const ref: ContextRef = { id: contextId('10k', tenKMade), index: tenKMade, set: '10k' };
          // held: a copy that keeps the token ids (cleared below on `kept`)
          const context = held ? void held.push({ ref, members: [{ ...kept }], count }) : makeContext(ref, [kept], count);
          tenKMade++;
          total += count;
          usedByTenK = true;
          tenKDone = tenKMade >= o.tenKCount || total >= o.maxTokens;
          if (context) yield context;
        }
        if (!catDone && !(o.catAfterTenK && usedByTenK)) feedCat(kept);
        kept.ids = undefined; // the cat text is re-tokenized whole; free the ids early
        catDone = catComplete();
        if (tenKDone && catDone) break;
      }
    }
    summary.sets['10k'].stoppedBy =
      tenKMade >= o.tenKCount ? 'count' : total >= o.maxTokens ? 'budget' : 'corpus-end';

    let catMade = 0;
    for (const group of catGroups) {
      if (catMade >= o.catCount || total >= o.maxTokens) break;
      const ref: ContextRef = { id: contextId('cat', catMade), index: tenKMade + catMade, set: 'cat' };
      const context = held ? void held.push({ ref, members: group.docs, count: group.count }) : makeContext(ref, group.docs, group.count);
      catMade++;
      total += group.count;
      if (context) yield context;
    }
    summary.sets.cat.stoppedBy = catMade >= o.catCount ? 'count' : total >= o.maxTokens ? 'budget' : 'corpus-end';
    if (held) {
      const parts = balancedParts(held.map((h) => h.count), shard!.count);
      partOf = new Map(held.map((h, i) => [h.ref.id, parts[i]!]));
      for (const h of held) {
        const context = makeContext(h.ref, h.members, h.count);
        h.members = []; // the text and ids now live in the context, or are not needed
        if (context) yield context;
      }
    }
    summary.complete = true;
  }

  return { contexts: generate(), summary: () => summary };
}

/** Run the recipe to the end and hold every selected context in memory (fine for ~1M tokens). */
export async function collectContexts(
  corpus: Corpus,
  tokenizer: TextTokenizer,
  overrides: Partial<RecipeOptions> = {},
  run: RecipeRunOptions = {},
): Promise<{ contexts: ScoringContext[]; summary: RecipeSummary }> {
  const recipeRun = runRecipe(corpus, tokenizer, overrides, run);
  const contexts: ScoringContext[] = [];
  for await (const context of recipeRun.contexts) contexts.push(context);
  return { contexts, summary: recipeRun.summary() };
}
