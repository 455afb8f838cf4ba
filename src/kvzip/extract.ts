// `fastkvzip extract`: stream a corpus through the recipe, score every context with the
// one-run KVzip graph, and write the Arrow feature store — resumable, with a disk estimate
// up front and progress on the way.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { openCorpus, runRecipe, resolveRecipeOptions, type RecipeOptions, type RecipeSummary, type ScoringContext } from '../data/index.js';
import { modelPrompts } from './prompts.js';
import { resolveDatasetFile } from '../hub/index.js';
import { openStore, estimateStoreBytes, keptPositions, checkDiskSpace, fmtBytes, type FeatureManifest, type AttnInputDtype, type PartInfo } from '../features/index.js';
import { loadModel, type LoadedModel } from '../runtime/model-session.js';
import { quantRoute, QUANT_ROUTE_ENV, type GraphKind, type QuantRoute } from '../onnx/index.js';
import type { DeviceOptions } from '../runtime/session.js';
import type { ComputeDType } from '../onnx/weights.js';
import { kvzipFeeds, keepFeeds } from './inputs.js';
import { inProcessRunner, workerRunner, workerRunnersAvailable, type ContextRunner, type RunResult } from './context-runner.js';
import { ShardSink, defaultShardWriters } from '../features/shard-sink.js';
import { AttnInputBuffers } from './attn-input-buffers.js';
import { kvzipAttnInputType } from '../onnx/kvzip-graph.js';
import { createProgress } from '../util/progress.js';
import { UserError } from '../util/errors.js';
import { ensureOutDir } from '../util/owned-files.js';
import { TOOL_NAME, TOOL_VERSION } from '../version.js';
import { hostMallocReuses } from '../util/host-malloc.js';
import { formatRopeOverride, QWEN3_PUBLIC_YARN, type RopeOverride } from '../model/rope-override.js';
import type { ModelSpec } from '../model/config.js';
import { positionLimit, type PositionLimit } from '../model/position-limit.js';

export interface ExtractOptions {
  model: string;
  revision?: string;
  data: string;
  textField?: string;
  /** document ids left out of the corpus (e.g. held out for evaluation) */
  excludeDocs?: string[];
  out: string;
  device: DeviceOptions;
  dtype?: ComputeDType;
  hiddenDtype?: AttnInputDtype;
  /** 8-bit hidden dtypes: channels per scale (default: the whole row, one scale per token) */
  quantBlock?: number;
  /** keep this fraction of each context's non-held-out positions (default 1: all) */
  keepFraction?: number;
  keepSeed?: number;
  recipe: Partial<RecipeOptions>;
  prefillChunk: number;
  scoreChunk: number;
  /** template name from configs/templates.json (default: chosen from the model) */
  template?: string;
  /** run the model with this RoPE instead of its config's (the public Qwen3 setup: YaRN x4 over 32,768) */
  ropeOverride?: RopeOverride | null;
  /** score contexts that need more positions than the model was trained on (refused by default) */
  allowLongContexts?: boolean;
  /** this run's part of the contexts (and where the part came from: flag or scheduler) */
  shard?: PartInfo;
  resume: boolean;
  /** skip the disk-space refusal (the estimate is still printed) */
  ignoreDisk?: boolean;
  quiet?: boolean;
  plainProgress?: boolean;
  /** shards written at the same time by background workers (default: up to 3, by CPU count) */
  writers?: number;
  /**
   * ONNX Runtime sessions running contexts at the same time, each in a worker thread with its
   * own copy of the weights on the device (default 1, in-process): with 2, one context's output
   * copies to host memory overlap the next context's device work
   */
  runners?: number;
  /** progress label (default "extract") */
  label?: string;
  log?: (line: string) => void;
}

export const EXTRACT_DEFAULTS = { prefillChunk: 16000, scoreChunk: 2000 };

export interface ExtractSummary {
  store: string;
  model: string;
  contexts: { done: number; thisRun: number; beyondMaxPositions: number };
  tokens: { thisRun: number; total: number };
  bytes: number;
  seconds: number;
  tokensPerSecond: number;
  recipe: RecipeSummary;
  manifest: Pick<FeatureManifest, 'complete' | 'totals'>;
  /** peak resident host memory of this process */
  peakRssMiB: number;
  /** 'reuse': glibc keeps freed blocks for the next context (src/util/host-malloc.ts); else 'default' */
  hostMalloc: 'reuse' | 'default';
  /** model resolution, graph build/check and session creation */
  setupSeconds: number;
  /**
   * per context of this run: tokens; wall seconds from its dispatch to its hand-over to a writer;
   * the ONNX Runtime run (device work + output copies); waiting for a free shard writer; and the
   * background write of its shard (conversion, Arrow, sha256, fsync), which overlaps later runs
   */
  timings: ContextTiming[];
  /** sums over `timings` (where the time went) */
  time: { run: number; waitForWriter: number; write: number; writers: number };
  /** 8-bit stores: where the codes were made (FASTKVZIP_QUANT): in the KVzip graph, or by the shard writers */
  quant?: QuantRoute;
}

export interface ContextTiming {
  id: string;
  tokens: number;
  seconds: number;
  run: number;
  waitForWriter: number;
  write: number;
}

/** The compact forms asked for (issue 16): an 8-bit dtype, a kept fraction below 1. */
function compactOptions(o: ExtractOptions): { quant?: 'int8' | 'float8e4m3'; keep?: { fraction: number; seed: number } } {
  const quant = o.hiddenDtype === 'int8' || o.hiddenDtype === 'float8e4m3' ? o.hiddenDtype : undefined;
  if (o.quantBlock !== undefined && !quant) throw new UserError(`--quant-block applies to the 8-bit hidden dtypes (int8, float8e4m3), not ${o.hiddenDtype ?? 'the model dtype'}`);
  const f = o.keepFraction ?? 1;
  if (!(f > 0 && f <= 1)) throw new UserError(`--keep-fraction ${f} must be in (0, 1]`);
  if (o.keepSeed !== undefined && !Number.isInteger(o.keepSeed)) throw new UserError(`--keep-seed ${o.keepSeed} must be an integer`);
  return { ...(quant ? { quant } : {}), ...(f < 1 ? { keep: { fraction: f, seed: o.keepSeed ?? 0 } } : {}) };
}

const sha256 = (b: string | Uint8Array) => createHash('sha256').update(b).digest('hex');

export async function extract(o: ExtractOptions): Promise<ExtractSummary> {
  const log = o.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const t0 = Date.now();
  ensureOutDir(o.out); // a file or an unwritable path fails now, not after loading the model
  // bf16 stores get bf16 bit patterns straight from the graph (no per-value work on the host);
  // 8-bit stores are made from the model's 16-bit values (src/features/compact.ts)
  const sixteen = (torchDtype: string) => (torchDtype === 'bfloat16' ? 'bfloat16' : 'float16') as 'bfloat16' | 'float16';
  const compact = compactOptions(o);
  // 8-bit codes are made in the KVzip graph (kept rows only), unless FASTKVZIP_QUANT=host
  const route: QuantRoute | undefined = compact.quant ? quantRoute() : undefined;
  const inGraph = route === 'graph';
  const quantKind = `kvzip_${compact.quant === 'int8' ? 'int8' : 'fp8'}${compact.keep ? '_keep' : ''}` as GraphKind;
  const kind = (hd: AttnInputDtype): GraphKind => (inGraph ? quantKind : hd === 'bfloat16' ? 'kvzip_bf16' : 'kvzip');
  const storeDtypeOf = (torchDtype: string): AttnInputDtype => (compact.quant ? sixteen(torchDtype) : (o.hiddenDtype ?? sixteen(torchDtype)));
  const m: LoadedModel = await loadModel(o.model, { revision: o.revision, device: o.device, dtype: o.dtype, kinds: (s) => [kind(storeDtypeOf(s.torchDtype))], quantBlock: inGraph ? o.quantBlock : undefined, ropeOverride: o.ropeOverride, log });
  const { spec, tokenizer } = m.model;
  if (!tokenizer) throw new UserError(`${m.model.dir}: tokenizer.json is required for extraction`);
  const { template, reconstruction: rec, ids: prompts, encode } = modelPrompts(tokenizer, spec, m.id, o.template);
  const recipe = resolveRecipeOptions(o.recipe);
  const corpus = openCorpus(o.data, {
    textField: o.textField,
    excludeIds: o.excludeDocs,
    resolveHubFile: async (repo: string, file: string) => (await resolveDatasetFile(repo, file, {})).path,
  });
  const baseDtype = storeDtypeOf(spec.torchDtype) as 'bfloat16' | 'float16';
  const hiddenDtype: AttnInputDtype = compact.quant ? o.hiddenDtype! : baseDtype;
  const quantBlock = compact.quant ? (o.quantBlock ?? spec.hiddenSize) : undefined;
  if (quantBlock !== undefined && spec.hiddenSize % quantBlock !== 0) throw new UserError(`--quant-block ${quantBlock} must divide the hidden size ${spec.hiddenSize}`);

  const identity = {
    model: {
      id: m.id,
      revision: m.revision,
      commit: m.commit,
      configHash: sha256(readFileSync(path.join(m.model.dir, 'config.json'))),
      family: spec.family,
      D: spec.hiddenSize,
      H: spec.numKvHeads,
      G: spec.numHeads / spec.numKvHeads,
      scoredLayers: spec.scoredLayers,
      numLayers: spec.numLayers,
      // only when set, so stores of the model's own RoPE keep the identity they always had
      ...(o.ropeOverride ? { ropeOverride: formatRopeOverride(o.ropeOverride) } : {}),
    },
    recipe: {
      corpus: corpus.description as unknown as Record<string, string>,
      ...Object.fromEntries(Object.entries(recipe).map(([k, v]) => [k, typeof v === 'number' && !Number.isFinite(v) ? null : v])),
      excludedDocs: o.excludeDocs?.length ? sha256(JSON.stringify([...o.excludeDocs].sort())).slice(0, 16) : null,
      template: template.name,
      prefix: template.prefix,
      postfix: template.postfix,
      repeatFirst: rec.repeatFirst,
      repeatNext: rec.repeatNext,
      prevPostfixTokens: rec.prevPostfixTokens,
    },
    extract: {
      prefillChunk: o.prefillChunk,
      scoreChunk: o.scoreChunk,
      device: o.device.device,
      modelDtype: spec.torchDtype,
      computeDtype: m.dtype,
      hiddenDtype,
      scoreDtype: 'float32' as const,
      // compact forms only (absent otherwise, so 16-bit stores keep their identity)
      ...(quantBlock !== undefined ? { quantBlock, quantSource: baseDtype } : {}),
      ...(compact.keep ? { keepFraction: compact.keep.fraction, keepSeed: compact.keep.seed } : {}),
    },
    hiddenDtype,
  };
  const shardForm = { ...(quantBlock !== undefined ? { quantBlock } : {}), ...(compact.keep ? { keep: compact.keep } : {}) };

  // Contexts the recipe is certain to make (its minimum lengths) must fit the model's positions.
  const limit = positionLimit(spec);
  const repeatMin = prompts.repeatFirstIds.length + prompts.postfixIds.length + 1;
  const certain = [
    ...(recipe.catCount > 0 ? [{ what: `the concatenated contexts (--cat-min-tokens ${recipe.catMinTokens})`, tokens: recipe.catMinTokens }] : []),
    ...(recipe.tenKCount > 0 ? [{ what: `the one-document contexts (--min-doc-tokens ${recipe.minDocTokens})`, tokens: recipe.minDocTokens }] : []),
  ];
  for (const c of certain) {
    const positions = prompts.prefixIds.length + c.tokens + repeatMin;
    if (positions > limit.positions && !o.allowLongContexts) throw longContextError(`${c.what} need at least ${positions.toLocaleString('en-US')} positions`, limit, m.id, spec);
  }

  // Disk estimate before any heavy work: the budget bounds what this run can write.
  // The recipe cannot yield more than its budget, nor more than its set sizes allow.
  const setBound = recipe.tenKCount * recipe.maxDocTokens + recipe.catCount * (recipe.catMinTokens + recipe.maxDocTokens);
  const plannedTokens = Math.min(Number.isFinite(recipe.maxTokens) ? recipe.maxTokens : Infinity, Number.isFinite(setBound) ? setBound : Infinity, 1e9) / (o.shard?.count ?? 1);
  const estimate = estimateStoreBytes({ tokens: plannedTokens, layers: spec.scoredLayers.length, D: spec.hiddenSize, H: spec.numKvHeads, hiddenDtype, quantBlock, keepFraction: compact.keep?.fraction });
  log(`feature store: about ${fmtBytes(estimate)} for up to ${Math.round(plannedTokens).toLocaleString('en-US')} tokens (${spec.scoredLayers.length} layers x D ${spec.hiddenSize}, ${hiddenDtype}) -> ${o.out}`);

  if (compact.keep && o.shard) throw new UserError('--keep-fraction with --shard: the kept positions depend on the lengths of every earlier context, which one shard does not see; extract whole, or keep all positions');
  const store = await openStore(o.out, { ...identity, tool: { name: TOOL_NAME, version: TOOL_VERSION }, part: o.shard ? { ...o.shard, split: 'balanced' } : null }, { dropBadShards: o.resume });
  if (!o.resume && store.completed.size > 0) {
    await store.release();
    throw new UserError(`${o.out}: already holds ${store.completed.size} extracted contexts; rerun with --resume to continue, or choose another --out`);
  }
  if (store.removed.length) log(`removed ${store.removed.length} unfinished file(s) from an interrupted run`);
  if (store.completed.size) log(`resuming: ${store.completed.size} context(s) already extracted`);
  const remaining = Math.max(0, estimate - store.manifest.totals.bytes);
  if (!o.ignoreDisk) {
    try {
      await checkDiskSpace(o.out, remaining);
    } catch (e) {
      await store.release();
      throw e;
    }
  }

  // Runners: one in-process session, or --runners N worker threads with a session each.
  const runnerSpec = { modelPath: m.graphs.paths[kind(baseDtype)]!, device: o.device, numScored: spec.scoredLayers.length, numKvHeads: spec.numKvHeads };
  const nRunners = o.runners ?? 1;
  if (nRunners > 1 && !workerRunnersAvailable()) throw new UserError('--runners > 1 needs the compiled build (npm run build), not the TypeScript sources');
  const runners: ContextRunner[] = [];
  try {
    for (let i = 0; i < nRunners; i++) runners.push(nRunners > 1 ? await workerRunner(runnerSpec) : await inProcessRunner(runnerSpec));
  } catch (e) {
    await Promise.all(runners.map((r) => r.release()));
    await store.release();
    throw e;
  }
  if (route) log(`${hiddenDtype} codes: made ${inGraph ? 'in the KVzip graph' : 'by the shard writers'} (${QUANT_ROUTE_ENV}=${inGraph ? 'host' : 'graph'} for the other route; same bytes)`);
  const setupSeconds = (Date.now() - t0) / 1000;
  const timings: ContextTiming[] = [];
  const run = runRecipe(corpus, { encode }, recipe, { shard: o.shard, select: (c) => !store.completed.has(c.id) });
  const progress = createProgress({ label: o.label ?? 'extract', total: plannedTokens, unit: 'tok', quiet: o.quiet, plain: o.plainProgress });
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    log('interrupt: finishing nothing more; rerun the same command to resume');
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const sink = new ShardSink({ workers: o.writers });
  const buffers = inGraph
    ? new AttnInputBuffers(spec.scoredLayers.length, spec.hiddenSize, compact.quant === 'int8' ? 'int8' : 'uint8', spec.hiddenSize / quantBlock!)
    : new AttnInputBuffers(spec.scoredLayers.length, spec.hiddenSize, kvzipAttnInputType(m.dtype, kind(baseDtype) === 'kvzip_bf16'));
  // stream position of each context's first token (subsampled stores keep the held-out positions of the whole stream)
  const doneByIndex = store.manifest.shards.map((s) => ({ index: s.index, tokens: s.contextTokens ?? s.tokens }));
  let yieldedTokens = 0;
  const streamOffset = (index: number) => yieldedTokens + doneByIndex.filter((d) => d.index < index).reduce((a, d) => a + d.tokens, 0);
  const writers = o.writers ?? defaultShardWriters();
  // The graph writes attention inputs straight into recycled host buffers (a set per runner and writer, + one).
  const recycling = { recycle: (b: ArrayBuffer[]) => buffers.give(b, writers + nRunners + 1) };
  let runTokens = 0;
  let done = 0;
  let beyondMaxPositions = 0;
  let doneTokens = store.manifest.totals.tokens;
  // Contexts in flight on the runners, oldest first; they are handed to the writers in this order.
  const inFlight: { ctx: ScoringContext; offset: number; started: number; result: Promise<RunResult> }[] = [];

  const finishOldest = async () => {
    const { ctx, offset, started, result } = inFlight.shift()!;
    const res = await result;
    const timing: ContextTiming = { id: ctx.id, tokens: ctx.tokenIds.length, seconds: 0, run: +res.runSeconds.toFixed(3), waitForWriter: 0, write: NaN };
    const tw = Date.now();
    // The shard is written in the background while the next contexts run on the device; its
    // writer records it in the manifest as soon as it is complete on disk, not when this thread
    // is back from the next run (a kill in between would have cost the context).
    const meta = { index: ctx.index, set: ctx.set, docIds: ctx.docIds };
    await sink.submit(
      {
        storeDir: o.out,
        contextId: ctx.id,
        options: { D: spec.hiddenSize, H: spec.numKvHeads, layers: spec.scoredLayers, hiddenDtype, modelId: m.id, ...shardForm },
        attnInput: res.attnInput,
        attnInputDtype: inGraph ? hiddenDtype : baseDtype,
        ...(inGraph ? { attnScales: res.attnScales! } : {}),
        scores: res.scores,
        record: { meta, lock: store.manifestLock },
        ...(compact.quant || compact.keep
          ? { compact: { ...(quantBlock !== undefined ? { quant: { dtype: compact.quant!, block: quantBlock, source: baseDtype } } : {}), ...(compact.keep ? { keep: { ...compact.keep, offset } } : {}) } }
          : {}),
      },
      (info, seconds) => {
        timing.write = +seconds.toFixed(3);
        store.shardRecorded(info, meta);
        return Promise.resolve();
      },
      recycling,
    );
    done++;
    timing.waitForWriter = (Date.now() - tw) / 1000;
    timing.seconds = (Date.now() - started) / 1000;
    timings.push(timing);
    runTokens += ctx.tokenIds.length;
    doneTokens += ctx.tokenIds.length;
    const secs = (Date.now() - t0) / 1000;
    // contexts are whole documents: the last one may take the total past the budget; show the real count
    if (doneTokens > plannedTokens) progress.setTotal(doneTokens);
    progress.update(doneTokens, { contexts: store.completed.size, 'tok/s': Math.round(runTokens / secs) });
  };

  try {
    let next = 0;
    for await (const ctx of run.contexts) {
      if (interrupted) break;
      const feeds = kvzipFeeds(ctx.tokenIds, prompts, { prefillChunk: o.prefillChunk, scoreChunk: o.scoreChunk });
      // the reconstruction passes run at positions after the whole context
      const positions = feeds.numTokens + feeds.repeatShape[1];
      if (positions > limit.positions) {
        if (!o.allowLongContexts) throw longContextError(`context ${ctx.id} (${ctx.tokenIds.length.toLocaleString('en-US')} tokens) needs ${positions.toLocaleString('en-US')} positions with its prompts and reconstruction passes`, limit, m.id, spec);
        beyondMaxPositions++;
        log(`warning: ${ctx.id} needs ${positions} positions, beyond ${limit.why}; processing anyway (--allow-long-contexts)`);
      }
      // Every runner busy: the oldest context (on the runner we are about to reuse) finishes first.
      if (inFlight.length >= runners.length) await finishOldest();
      const runner = runners[next++ % runners.length]!;
      const offset = streamOffset(ctx.index);
      // kept rows are gathered in the graph: it takes them per prefill chunk (src/kvzip/inputs.ts)
      if (inGraph && compact.keep) feeds.keep = keepFeeds(keptPositions(ctx.tokenIds.length, offset, compact.keep.fraction, compact.keep.seed, ctx.id), feeds.prefixLen, feeds.prefillShape);
      const result = runner.run(feeds, buffers.take(feeds.keep ? feeds.keep.index.length : ctx.tokenIds.length));
      result.catch(() => undefined); // awaited in order by finishOldest
      inFlight.push({ ctx, offset, started: Date.now(), result });
      yieldedTokens += ctx.tokenIds.length;
    }
    while (inFlight.length) await finishOldest();
    await sink.drain();
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    progress.stop();
    await Promise.allSettled(inFlight.map((f) => f.result));
    await sink.close().catch(() => undefined);
    await Promise.all(runners.map((r) => r.release()));
  }
  const summary = run.summary();
  const sk = summary.documents.skipped;
  const unreadable = sk.empty + sk['invalid-utf8'] + sk['null-text'];
  if (unreadable) log(`warning: skipped ${unreadable} document(s) of ${o.data} without usable text (${sk.empty} empty, ${sk['invalid-utf8']} not valid UTF-8, ${sk['null-text']} missing)`);
  // a recipe that yields no context at all is a failed run, not a "complete" empty store
  const nothing = !interrupted && summary.complete && summary.contexts.length === 0;
  const manifest = await store.finish(!interrupted && summary.complete && !nothing);
  if (interrupted) throw new UserError('interrupted; rerun the same command to resume', 130);
  if (nothing) {
    const d = summary.documents;
    throw new UserError(
      `${o.data}: no context could be built (${d.scanned} document(s) read, ${d.kept} within the token window, ${d.belowWindow} too short, ${d.aboveWindow} too long, ${unreadable} without usable text); nothing was extracted into ${o.out}`,
      1,
    );
  }
  const seconds = (Date.now() - t0) / 1000;
  return {
    store: o.out,
    model: m.id,
    contexts: { done: manifest.shards.length, thisRun: done, beyondMaxPositions },
    tokens: { thisRun: runTokens, total: manifest.totals.tokens },
    bytes: manifest.totals.bytes,
    seconds,
    tokensPerSecond: runTokens / seconds,
    recipe: summary,
    manifest: { complete: manifest.complete, totals: manifest.totals },
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    hostMalloc: hostMallocReuses() ? 'reuse' : 'default',
    setupSeconds,
    timings,
    time: {
      run: +timings.reduce((a, t) => a + t.run, 0).toFixed(3),
      waitForWriter: +timings.reduce((a, t) => a + t.waitForWriter, 0).toFixed(3),
      write: +timings.reduce((a, t) => a + (Number.isFinite(t.write) ? t.write : 0), 0).toFixed(3),
      writers,
    },
    ...(route ? { quant: route } : {}),
  };
}

function longContextError(what: string, limit: PositionLimit, modelId: string, spec: ModelSpec): UserError {
  const fixes = [
    ...(spec.family === 'qwen3' && spec.rope.type !== 'yarn' ? [`--rope-override ${QWEN3_PUBLIC_YARN} (the public extraction's Qwen3 setup)`] : []),
    'shorter contexts (--min-doc-tokens, --max-doc-tokens, --cat-min-tokens)',
    '--allow-long-contexts to score them anyway',
  ];
  return new UserError(`${modelId}: ${what}, beyond ${limit.why}; use ${fixes.join(', or ')}`);
}
