// `fastkvzip eval`: what trained gates buy. For every context: the KVzip oracle scores (one
// run of the kvzip graph), one uncompressed prefill (the reference, and every scorer's scores
// for the agreement measure), then a compressed prefill per (scorer, ratio < 1) followed by
// reconstruction and retrieval on the compressed cache. Ratio 1.0 evicts nothing, so its
// results are the reference's (test/eval proves every scorer reproduces it exactly).
import { readFileSync, existsSync } from 'node:fs';
import * as path from 'node:path';
import { modelPrompts } from '../kvzip/prompts.js';
import { loadModel, sessionFor, type LoadedModel } from '../runtime/model-session.js';
import type { RopeOverride } from '../model/rope-override.js';
import type { DeviceOptions } from '../runtime/session.js';
import type { ComputeDType } from '../onnx/weights.js';
import { attnInputIoDtype } from '../onnx/step-graph.js';
import { kvzipFeeds, repeatPasses, type RepeatPass } from '../kvzip/inputs.js';
import { scoreContext } from '../kvzip/score-context.js';
import { compressedPrefill } from './compressed-prefill.js';
import type { MaskedSessions } from './masked-runner.js';
import { CompressedCache, type CompressedSessions } from '../runtime/compressed-cache.js';
import { PUBLIC_WINDOW, type EvictionLevel, type WindowOptions } from './eviction.js';
import { gateScorer, kvzipScorer, randomScorer, snapkvScorer, windowScorer, type Scorer, type ScorerDims, type ScorerName, type ChunkView } from './scorers.js';
import { agreement, reconstruction, retrieval, type ReconstructionTally, type RetrievalQuery, type RetrievalTally } from './measures.js';
import { selectContexts, type EvalContext } from './contexts.js';
import { KV_ANSWER_PRIMER, KV_QUESTION } from './retrieval-data.js';
import { loadGates, gateSession } from './gates.js';
import { scoreDiagnostics, type ScoreDiagnostics } from './diagnostics.js';
import { createProgress } from '../util/progress.js';
import { UserError, UsageError } from '../util/errors.js';
import { TOOL_NAME, TOOL_VERSION } from '../version.js';

export interface EvalOptions {
  model: string;
  revision?: string;
  /** gates file or train/run folder (needed for the 'gates' scorer) */
  gates?: string;
  data: string;
  textField?: string;
  docs?: string[];
  excludeDocs?: string[];
  contexts: number;
  minContextTokens: number;
  maxContextTokens: number;
  ratios: number[];
  scorers: ScorerName[];
  level: EvictionLevel;
  prefillChunk: number;
  window: WindowOptions;
  /** reconstruction chunk of the KVzip oracle (the extract setting the gates were trained on) */
  scoreChunk: number;
  /** reconstruction measure: chunk size and how many chunks (evenly spaced; 0 = all) */
  reconChunk: number;
  reconChunks: number;
  /** key–value pairs per context (0: no retrieval) */
  kvPairs: number;
  maxNewTokens: number;
  snapWindow: number;
  snapKernel: number;
  template?: string;
  /** run the model with this RoPE instead of its config's (as the gates' store was extracted) */
  ropeOverride?: RopeOverride | null;
  seed: number;
  device: DeviceOptions;
  dtype?: ComputeDType;
  /**
   * 'masked' (default): eviction simulated by attention masks (nothing freed); 'compressed': every
   * compressed run goes through the real compressed cache (evicted entries leave the buffers)
   */
  cache?: EvalCacheMode;
  /** the command line, recorded in the report */
  command?: string;
  quiet?: boolean;
  plainProgress?: boolean;
  log?: (line: string) => void;
}

export type EvalCacheMode = 'masked' | 'compressed';
export const EVAL_CACHE_MODES: EvalCacheMode[] = ['masked', 'compressed'];

export const EVAL_DEFAULTS = {
  ratios: [1.0, 0.75, 0.5, 0.4, 0.3, 0.2, 0.1],
  scorers: ['gates', 'kvzip', 'snapkv', 'window', 'random'] as ScorerName[],
  level: 'pair' as EvictionLevel,
  prefillChunk: 16000,
  scoreChunk: 2000,
  reconChunk: 256,
  reconChunks: 4,
  kvPairs: 4,
  maxNewTokens: 10,
  snapWindow: 64,
  snapKernel: 5,
  contexts: 4,
  minContextTokens: 1024,
  maxContextTokens: 16000,
  seed: 0,
};

/** Totals of one (scorer, ratio) over all contexts. */
export interface EvalCell {
  scorer: ScorerName;
  ratio: number;
  /** measured visible fraction of context KV entries in the scored layers (mean over contexts) */
  kept: number;
  /** the same per scored layer */
  keptPerLayer: number[];
  recon: { tokens: number; acc: number; logLik: number; accRel: number; logLikDelta: number };
  retrieval: { queries: number; acc: number };
  /** recall of the oracle's top-k by the scorer's top-k on the uncompressed pass, mean over layers and contexts */
  agreement: number;
  agreementPerLayer: number[];
  /** --cache compressed: the compressed cache's bytes at the end of prefill, summed over contexts (paddingBytes: 0, one buffer per KV head) */
  cache?: { bytes: number; paddingBytes: number; fullBytes: number };
}

/** EvalOptions recorded in the report's settings (in this order, after the ratios). */
const SETTING_KEYS = ['scorers', 'level', 'prefillChunk', 'window', 'scoreChunk', 'reconChunk', 'reconChunks', 'kvPairs', 'maxNewTokens', 'snapWindow', 'snapKernel', 'seed'] as const;
type SettingKey = (typeof SETTING_KEYS)[number];

export interface EvalReport {
  tool: { name: string; version: string };
  command?: string;
  model: { id: string; dir: string; scoredLayers: number[]; heads: number; computeDtype: string };
  gates: { file: string; summary?: unknown } | null;
  template: string;
  data: string;
  contexts: { id: string; tokens: number; docTokens: number; window: number; pairs: number }[];
  /** the options that shape the numbers, plus the device and what "kept" means */
  settings: { ratios: number[] } & Pick<EvalOptions, SettingKey> & { device: string; cache: EvalCacheMode; memory: string };
  reference: { recon: { tokens: number; acc: number; logLik: number }; retrieval: { queries: number; acc: number } };
  cells: EvalCell[];
  /** per scorer, per scored layer, vs the oracle on the uncompressed pass (mean over contexts) */
  diagnostics: Record<string, ScoreDiagnostics>;
  /** retrieval answers of the reference run, for reading */
  referenceAnswers: { context: string; key: string; value: string; answer: string }[];
  seconds: number;
}

interface Tally {
  kept: number[];
  keptPerLayer: number[][];
  recon: ReconstructionTally;
  retrieval: RetrievalTally;
  agreement: number[][];
  cache?: { bytes: number; paddingBytes: number; fullBytes: number };
}

const emptyTally = (): Tally => ({ kept: [], keptPerLayer: [], recon: { tokens: 0, correct: 0, logLik: 0 }, retrieval: { queries: 0, correct: 0, answers: [] }, agreement: [] });

/** What each cache mode means for memory (recorded in the report). */
const MEMORY_NOTE: Record<EvalCacheMode, string> = {
  masked: 'eviction is simulated by per-head attention masks: evicted KV stays in the cache buffers, so no memory is freed; "kept" is the visible fraction',
  compressed: 'compressed runs use the real compressed cache: evicted KV leaves the buffers fed to ONNX Runtime (one buffer per layer and KV head, no padding); "kept" is the held fraction, cells[].cache the bytes; ratio 1.0 and the reference run on the uncompressed cache',
};

function addTally(t: Tally, r: ReconstructionTally, q: RetrievalTally): void {
  t.recon.tokens += r.tokens;
  t.recon.correct += r.correct;
  t.recon.logLik += r.logLik;
  t.retrieval.queries += q.queries;
  t.retrieval.correct += q.correct;
  t.retrieval.answers.push(...q.answers);
}

/** Every scorer's scores from one shared forward (the uncompressed reference pass). */
function allScorers(scorers: Scorer[], into: Map<ScorerName, Float32Array[]>, dims: ScorerDims, ctxLen: number): Scorer {
  for (const s of scorers) into.set(s.name, Array.from({ length: dims.layers }, () => new Float32Array(dims.heads * ctxLen)));
  return {
    name: 'window',
    snapWindow: Math.max(0, ...scorers.map((s) => s.snapWindow)),
    async score(c: ChunkView) {
      const n = c.ctxEnd - c.ctxStart;
      for (const s of scorers) {
        const sc = await s.score(c);
        const dst = into.get(s.name)!;
        sc.forEach((layer, l) => {
          for (let h = 0; h < dims.heads; h++) dst[l]!.set(layer.subarray(h * n, (h + 1) * n), h * ctxLen + c.ctxStart);
        });
      }
      return Array.from({ length: dims.layers }, () => new Float32Array(dims.heads * n));
    },
  };
}

/** Paths inside the working folder are reported relative to it (reports stay machine-independent). */
function displayPath(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return path.isAbsolute(p) && rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : p;
}

/** Evenly spaced subset of the reconstruction passes (first and last included). */
export function pickPasses(passes: RepeatPass[], count: number): RepeatPass[] {
  if (count <= 0 || count >= passes.length) return passes;
  if (count === 1) return [passes[0]!];
  return Array.from({ length: count }, (_, i) => passes[Math.round((i * (passes.length - 1)) / (count - 1))]!);
}

export async function evaluate(o: EvalOptions): Promise<EvalReport> {
  const log = o.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const t0 = Date.now();
  if (o.scorers.length === 0) throw new UsageError('--scorers: name at least one scorer');
  for (const r of o.ratios) if (!(r > 0 && r <= 1)) throw new UsageError(`--ratios: every ratio must be in (0, 1] (got ${r})`);
  if (o.scorers.includes('gates') && !o.gates) throw new UsageError('--gates is required for the gates scorer (or leave gates out of --scorers)');
  const cacheMode = o.cache ?? 'masked';

  const m: LoadedModel = await loadModel(o.model, { revision: o.revision, device: o.device, dtype: o.dtype, kinds: ['step_masked', 'step_masked_full', 'kvzip', ...(cacheMode === 'compressed' ? (['step_compressed', 'step_compressed_full'] as const) : [])], ropeOverride: o.ropeOverride, log });
  const { spec, tokenizer } = m.model;
  if (!tokenizer) throw new UserError(`${m.model.dir}: tokenizer.json is required for evaluation`);
  const { template, ids: prompts, encode } = modelPrompts(tokenizer, spec, m.id, o.template);
  const decode = (ids: number[]) => tokenizer.decode(ids, { skipSpecialTokens: false });

  const dims: ScorerDims = { layers: spec.scoredLayers.length, heads: spec.numKvHeads, hidden: spec.hiddenSize };
  const sessions: MaskedSessions = { step: await sessionFor(m, 'step_masked', o.device), full: await sessionFor(m, 'step_masked_full', o.device) };
  const kvzipSession = await sessionFor(m, 'kvzip', o.device);
  const compSessions: CompressedSessions | null =
    cacheMode === 'compressed' ? { step: await sessionFor(m, 'step_compressed', o.device), full: await sessionFor(m, 'step_compressed_full', o.device) } : null;
  let gates: { file: string; summary?: unknown } | null = null;
  let gateRun: Awaited<ReturnType<typeof gateSession>> | null = null;
  if (o.scorers.includes('gates')) {
    const g = await loadGates(o.gates!, spec);
    const summaryFile = path.join(path.dirname(g.file), 'summary.json');
    const summary = existsSync(summaryFile) ? JSON.parse(readFileSync(summaryFile, 'utf8')) : undefined;
    // the trainer's own held-out metrics, for reading next to ours
    gates = { file: displayPath(g.file), summary: summary && { steps: summary.steps, tokens: summary.tokens, layers: summary.layers, mean: summary.mean } };
    gateRun = await gateSession(g.gates, o.device, attnInputIoDtype(m.dtype) as 'float32' | 'float16');
  }

  const contexts = await selectContexts(
    {
      data: o.data,
      textField: o.textField,
      docs: o.docs,
      excludeDocs: o.excludeDocs,
      count: o.contexts,
      minTokens: o.minContextTokens,
      maxTokens: o.maxContextTokens,
      kvPairs: o.kvPairs,
      seed: o.seed,
    },
    { encode, decode },
  );
  const ratios = [...new Set(o.ratios)].sort((a, b) => b - a);
  const compressedRatios = ratios.filter((r) => r < 1);
  // the header first: a line written after the bar's first frame would overwrite it
  log(`eval: ${contexts.length} context(s) (${contexts.map((c) => c.ids.length).join(', ')} tokens), scorers ${o.scorers.join(', ')}, ratios ${ratios.join(', ')}, level ${o.level}`);
  const progress = createProgress({ label: 'eval', total: contexts.length * (1 + o.scorers.length * compressedRatios.length), unit: 'runs', quiet: o.quiet, plain: o.plainProgress });

  const tallies = new Map<string, Tally>();
  const cellKey = (s: ScorerName, r: number) => `${s}@${r}`;
  for (const s of o.scorers) for (const r of ratios) tallies.set(cellKey(s, r), emptyTally());
  const reference = emptyTally();
  const referenceAnswers: EvalReport['referenceAnswers'] = [];
  const diagSamples = new Map<string, ScoreDiagnostics[]>();
  const contextInfo: EvalReport['contexts'] = [];
  let done = 0;

  for (const [ci, ctx] of contexts.entries()) {
    const C = ctx.ids.length;
    const oracle = (await scoreContext(kvzipSession, kvzipFeeds(ctx.ids, prompts, { prefillChunk: 16000, scoreChunk: o.scoreChunk }), dims.layers, dims.heads)).scores;
    const makeScorer = (name: ScorerName, seed: number): Scorer => {
      switch (name) {
        case 'gates':
          return gateScorer(gateRun!, dims, attnInputIoDtype(m.dtype) as 'float32' | 'float16');
        case 'kvzip':
          return kvzipScorer(oracle, C, dims);
        case 'snapkv':
          return snapkvScorer(dims, o.snapWindow, o.snapKernel);
        case 'window':
          return windowScorer(dims);
        case 'random':
          return randomScorer(dims, seed);
      }
    };
    const passes = pickPasses(repeatPasses(ctx.ids, prompts, o.reconChunk), o.reconChunks);
    const queries: RetrievalQuery[] = ctx.pairs.map((p) => ({ ids: [...encode(KV_QUESTION(p.key)), ...prompts.postfixIds, ...encode(KV_ANSWER_PRIMER(p.key))], value: p.value }));
    const measure = async (cache: Parameters<typeof reconstruction>[0]) => ({
      recon: await reconstruction(cache, passes, spec.vocabSize),
      retr: await retrieval(cache, queries, decode, { maxNewTokens: o.maxNewTokens, stopIds: spec.eosTokenIds, vocab: spec.vocabSize }),
    });
    const prefillOpts = (ratio: number) => ({ ratio, level: o.level, prefillChunk: o.prefillChunk, window: o.window });

    // Uncompressed reference: every scorer's scores from one forward, and the full-cache quality.
    const fullScores = new Map<ScorerName, Float32Array[]>();
    const seedOf = (ri: number) => (o.seed * 1_000_003 + ci * 101 + ri) >>> 0;
    const full = await compressedPrefill(sessions, spec, m.cacheDtype, prompts.prefixIds, ctx.ids, allScorers(o.scorers.map((s) => makeScorer(s, seedOf(999))), fullScores, dims, C), prefillOpts(1));
    const ref = await measure(full.cache);
    addTally(reference, ref.recon, ref.retr);
    ctx.pairs.forEach((p, i) => referenceAnswers.push({ context: ctx.id, key: p.key, value: p.value, answer: ref.retr.answers[i]! }));
    contextInfo.push({ id: ctx.id, tokens: C, docTokens: ctx.docTokens, window: full.window, pairs: ctx.pairs.length });
    progress.update(++done);

    for (const s of o.scorers) {
      const cand = fullScores.get(s)!;
      const diag = diagSamples.get(s) ?? [];
      diag.push(scoreDiagnostics(oracle, cand, dims.heads));
      diagSamples.set(s, diag);
      for (const r of ratios) tallies.get(cellKey(s, r))!.agreement.push(agreement(oracle, cand, r));
      const t1 = tallies.get(cellKey(s, 1));
      if (t1) {
        t1.kept.push(full.kept);
        t1.keptPerLayer.push(full.keptPerLayer);
        addTally(t1, ref.recon, ref.retr);
      }
      for (const [ri, r] of compressedRatios.entries()) {
        const real = compSessions ? new CompressedCache(compSessions, spec, m.cacheDtype) : undefined;
        const run = await compressedPrefill(sessions, spec, m.cacheDtype, prompts.prefixIds, ctx.ids, makeScorer(s, seedOf(ri)), { ...prefillOpts(r), cache: real });
        const q = await measure(run.cache);
        const t = tallies.get(cellKey(s, r))!;
        if (real) {
          const f = real.footprint();
          t.cache ??= { bytes: 0, paddingBytes: 0, fullBytes: 0 };
          t.cache.bytes += f.bytes;
          t.cache.paddingBytes += f.paddingBytes;
          t.cache.fullBytes += f.fullBytes;
        }
        t.kept.push(run.kept);
        t.keptPerLayer.push(run.keptPerLayer);
        addTally(t, q.recon, q.retr);
        progress.update(++done, { ctx: ci + 1, scorer: s, ratio: r });
      }
    }
  }
  progress.stop();
  await Promise.all([sessions.step.release(), sessions.full!.release(), kvzipSession.release(), gateRun?.release(), compSessions?.step.release(), compSessions?.full?.release()]);

  const refAcc = reference.recon.correct / reference.recon.tokens;
  const refLl = reference.recon.logLik / reference.recon.tokens;
  const mean = (v: number[]) => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN);
  const cells: EvalCell[] = [];
  for (const s of o.scorers) {
    for (const r of ratios) {
      const t = tallies.get(cellKey(s, r))!;
      const acc = t.recon.correct / t.recon.tokens;
      const ll = t.recon.logLik / t.recon.tokens;
      const perLayer = spec.scoredLayers.map((_, l) => mean(t.agreement.map((a) => a[l]!)));
      cells.push({
        scorer: s,
        ratio: r,
        kept: mean(t.kept),
        keptPerLayer: spec.scoredLayers.map((_, l) => mean(t.keptPerLayer.map((k) => k[l]!))),
        recon: { tokens: t.recon.tokens, acc, logLik: ll, accRel: acc / refAcc, logLikDelta: ll - refLl },
        retrieval: { queries: t.retrieval.queries, acc: t.retrieval.queries ? t.retrieval.correct / t.retrieval.queries : NaN },
        agreement: mean(perLayer),
        agreementPerLayer: perLayer,
        ...(t.cache ? { cache: t.cache } : {}),
      });
    }
  }
  const diagnostics: Record<string, ScoreDiagnostics> = {};
  for (const [s, list] of diagSamples) {
    diagnostics[s] = Object.fromEntries(
      Object.keys(list[0]!).map((k) => [k, spec.scoredLayers.map((_, l) => mean(list.map((d) => (d as unknown as Record<string, number[]>)[k]![l]!)))]),
    ) as unknown as ScoreDiagnostics;
  }
  return {
    tool: { name: TOOL_NAME, version: TOOL_VERSION },
    command: o.command,
    model: { id: displayPath(m.id), dir: displayPath(m.model.dir), scoredLayers: spec.scoredLayers, heads: spec.numKvHeads, computeDtype: m.dtype },
    gates,
    template: template.name,
    data: o.data,
    contexts: contextInfo,
    settings: {
      ratios,
      ...(Object.fromEntries(SETTING_KEYS.map((k) => [k, o[k]])) as Pick<EvalOptions, SettingKey>),
      device: o.device.device,
      cache: cacheMode,
      memory: MEMORY_NOTE[cacheMode],
    },
    reference: {
      recon: { tokens: reference.recon.tokens, acc: refAcc, logLik: refLl },
      retrieval: { queries: reference.retrieval.queries, acc: reference.retrieval.queries ? reference.retrieval.correct / reference.retrieval.queries : NaN },
    },
    cells,
    diagnostics,
    referenceAnswers,
    seconds: (Date.now() - t0) / 1000,
  };
}

export { PUBLIC_WINDOW, type EvalContext };
