// Greedy generation with a KV cache that really shrinks (docs/method.md §6): chunked prefill with
// the gates scoring each chunk's attention inputs (captured in the same run) and eviction after
// every chunk, then decoding with the new tokens' attention inputs buffered, scored every
// `interval` tokens, and the lowest entries evicted once the budget is exceeded. Evicted entries
// leave the buffers (runtime/compressed-cache.ts).
import { CompressedCache, deviceOutputs, type CacheFootprint, type CompressedSessions, type DeviceResidency } from '../runtime/compressed-cache.js';
import { argmax } from '../runtime/generate.js';
import { createSession, ort, type DeviceOptions } from '../runtime/session.js';
import type { ModelSpec } from '../model/config.js';
import type { DType } from '../onnx/builder.js';
import { compressedPrefill } from './compressed-prefill.js';
import { DecodeEviction, type DecodeBudget } from './decode-eviction.js';
import type { EvictionLevel, WindowOptions } from './eviction.js';
import { gateScorer, type Scorer } from './scorers.js';
import { loadGates, gateSession } from './gates.js';
import { loadModel, sessionFor, type LoadedModel } from '../runtime/model-session.js';
import type { ComputeDType } from '../onnx/weights.js';
import { attnInputIoDtype } from '../onnx/step-graph.js';
import { UserError, UsageError } from '../util/errors.js';
import { headGatherModel, headDownloadModel } from '../onnx/index.js';

/** The gather and download sessions of a device-resident cache (WebGPU). */
export async function deviceResidency(cacheDtype: DType, headDim: number, device: DeviceOptions): Promise<DeviceResidency> {
  return {
    gather: await createSession({ bytes: headGatherModel(cacheDtype, headDim), name: 'head gather graph' }, device, { preferredOutputLocation: { key_kept: 'gpu-buffer', value_kept: 'gpu-buffer' } }),
    download: await createSession({ bytes: headDownloadModel(cacheDtype, headDim), name: 'head download graph' }, device),
  };
}

export interface CompressedGenerateOptions {
  ratio: number;
  level: EvictionLevel;
  prefillChunk: number;
  window: WindowOptions;
  /** leading prompt tokens never evicted (the method's prefix; attention sinks) */
  keepFirst: number;
  /** decode: score the buffered tokens and evict every this many tokens (128) */
  interval: number;
  budget: DecodeBudget;
  /** dtype of the captured attention inputs (attnInputIoDtype of the compute dtype) */
  hiddenDtype: 'float32' | 'float16';
  maxNewTokens: number;
  stopIds: number[];
  onToken?: (id: number) => void;
  /**
   * 'step': one run per decoded token (the cache goes to the device and back every token on CUDA);
   * 'block': one run of the decode-block graph per `interval` tokens (the sessions' `block`); the
   * same tokens and kept sets
   */
  decodePath?: DecodePath;
}

export type DecodePath = 'step' | 'block';
export const DECODE_PATHS: DecodePath[] = ['step', 'block'];

export interface CompressedGenerateResult {
  tokens: number[];
  /** per scored layer: held fraction of its non-prefix entries at the end */
  keptPerLayer: { layer: number; kept: number }[];
  /** mean over scored layers */
  kept: number;
  /** always-kept recent window */
  window: number;
  footprint: CacheFootprint;
  /** the same right after prefill */
  prefillFootprint: CacheFootprint;
  /** where the cache lived between runs: host memory, or the device's (WebGPU, --decode step) */
  cacheLocation: 'host' | 'device';
  timings: {
    prefillSeconds: number;
    /** time to the first generated token (prefill + its eviction) */
    firstTokenSeconds: number;
    decodeSeconds: number;
    /** tokens fed after the first, per second of decode (gates and eviction included) */
    decodeTokensPerSecond: number;
    /** decode time in the gate model, in eviction bookkeeping, in compaction (inside forward) */
    gateSeconds: number;
    evictSeconds: number;
    compactions: number;
  };
  evicted: { prefill: number; decode: number };
}

const seconds = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9;

/** Gate session input attn_input [L, n, D] (fp32 or fp16 bits) -> scores [L, H, n]. */
async function scoreBuffer(gates: ort.InferenceSession, buf: (Float32Array | Uint16Array)[][], dims: { layers: number; heads: number; hidden: number }): Promise<Float32Array> {
  const n = buf.length;
  const D = dims.hidden;
  const f32 = buf[0]![0] instanceof Float32Array;
  const data = f32 ? new Float32Array(dims.layers * n * D) : new Uint16Array(dims.layers * n * D);
  buf.forEach((tok, t) => tok.forEach((x, s) => data.set(x as never, (s * n + t) * D)));
  const out = await gates.run({ attn_input: new ort.Tensor(f32 ? 'float32' : 'float16', data, [dims.layers, n, D]) });
  return out.scores!.data as Float32Array;
}

export async function compressedGenerate(
  sessions: CompressedSessions,
  gates: ort.InferenceSession,
  spec: ModelSpec,
  cacheDtype: DType,
  promptIds: number[],
  o: CompressedGenerateOptions,
): Promise<CompressedGenerateResult> {
  if (promptIds.length === 0) throw new Error('empty prompt');
  if (!(o.maxNewTokens >= 1)) throw new Error(`maxNewTokens must be >= 1 (got ${o.maxNewTokens})`);
  const L = spec.scoredLayers.length;
  const H = spec.numKvHeads;
  const dims = { layers: L, heads: H, hidden: spec.hiddenSize };
  const P = Math.min(o.keepFirst, promptIds.length);
  const prefix = promptIds.slice(0, P);
  const ctx = promptIds.slice(P);
  const C = ctx.length;
  const cache = new CompressedCache(sessions, spec, cacheDtype);
  const scorer: Scorer = gateScorer(gates, dims, o.hiddenDtype);

  const t0 = process.hrtime.bigint();
  const pre = await compressedPrefill(null, spec, cacheDtype, prefix, ctx, scorer, { ratio: o.ratio, level: o.level, prefillChunk: o.prefillChunk, window: o.window, cache });
  await cache.compactAny();
  const prefillSeconds = seconds(t0);
  const prefillFootprint = cache.footprint();
  const prefillEvicted = cache.removed;

  // Decode bookkeeping starts from what prefill kept, with the scores prefill computed.
  const ev = new DecodeEviction({ ratio: o.ratio, level: o.level, layers: L, heads: H, prefixLen: P, window: pre.window, budget: o.budget });
  if (o.ratio < 1) {
    const held = Array.from({ length: L }, (_, s) => Array.from({ length: H }, (_, h) => cache.heldPositions(s, h)));
    // skip the prefix, which never competes
    const cursor = Int32Array.from({ length: L * H }, (_, i) => held[Math.floor(i / H)]![i % H]!.findIndex((p) => p >= P)).map((c, i) => (c < 0 ? held[Math.floor(i / H)]![i % H]!.length : c));
    // position order across (s, h), so the window queue stays sorted
    for (let j = 0; j < C; j++) {
      for (let s = 0; s < L; s++) {
        for (let h = 0; h < H; h++) {
          const list = held[s]![h]!;
          const c = cursor[s * H + h]!;
          if (c < list.length && list[c] === P + j) {
            ev.add(s, h, P + j, pre.scores[s]![h * C + j]!);
            cursor[s * H + h] = c + 1;
          } else if (c < list.length && list[c]! < P + j) throw new Error('compressed cache positions out of order');
        }
      }
    }
    pre.scores.length = 0; // the per-position scores are not needed any more
    const none = ev.round(P + C); // fixes a "fixed" budget; prefill already met it
    if (none.length > 0) throw new Error(`decode eviction: prefill left ${none.length} entries over budget`);
  }

  const stop = new Set(o.stopIds);
  const out: number[] = [];
  const firstTokenSeconds = seconds(t0);
  const td = process.hrtime.bigint();
  let gateNs = 0n;
  let evictNs = 0n;
  let fed = 0;
  let buffer: (Float32Array | Uint16Array)[][] = [];
  let bufferStart = P + C;
  const block = o.decodePath === 'block';
  // every `interval` fed tokens: the gates score the buffered attention inputs, then one eviction round
  const maybeEvict = async (): Promise<void> => {
    if (buffer.length < o.interval) return;
    const g0 = process.hrtime.bigint();
    const scores = await scoreBuffer(gates, buffer, dims); // [L, H, n]
    const e0 = process.hrtime.bigint();
    gateNs += e0 - g0;
    const n = buffer.length;
    for (let i = 0; i < n; i++) for (let s = 0; s < L; s++) for (let h = 0; h < H; h++) ev.add(s, h, bufferStart + i, scores[(s * H + h) * n + i]!);
    for (const [s, h, pos] of ev.round(cache.length)) cache.evict(s, h, pos);
    // the step path copies the cache on the host now; the block path only settles the
    // bookkeeping, and the next block gathers the held entries on the device
    if (block) cache.settle();
    else await cache.compactAny();
    evictNs += process.hrtime.bigint() - e0;
    bufferStart += n;
    buffer = [];
  };
  const V = spec.vocabSize;
  let next = argmax(pre.lastLogits, pre.lastLogits.length - V, V);
  out.push(next);
  o.onToken?.(next);
  if (!block) {
    for (let t = 1; t < o.maxNewTokens && !stop.has(next); t++) {
      const step = await cache.forward([next]);
      fed++;
      next = argmax(step.logits, step.logits.length - V, V);
      out.push(next);
      o.onToken?.(next);
      if (o.ratio >= 1) continue;
      buffer.push(step.attnInputs.map((x) => x.slice()));
      await maybeEvict();
    }
  } else {
    // blocks end where the step path's eviction rounds fall (every `interval` fed tokens)
    const D = spec.hiddenSize;
    while (out.length < o.maxNewTokens && !stop.has(next)) {
      const block = await cache.decodeBlock(next, Math.min(o.interval, o.maxNewTokens - out.length), o.stopIds);
      fed += block.tokens.length;
      for (const id of block.tokens) {
        out.push(id);
        o.onToken?.(id);
      }
      next = block.tokens[block.tokens.length - 1]!;
      if (o.ratio >= 1) continue;
      block.tokens.forEach((_, i) => buffer.push(block.attnInputs.map((x) => x.subarray(i * D, (i + 1) * D))));
      await maybeEvict();
    }
  }
  const decodeSeconds = seconds(td);
  await cache.compactAny(); // the last round's evicted entries leave the buffers too
  const footprint = cache.footprint();
  const cacheLocation = cache.location;
  const N = cache.length;
  const keptPerLayer = spec.scoredLayers.map((layer, s) => {
    let held = 0;
    for (let h = 0; h < H; h++) held += cache.countVisible(s, h, P, N);
    return { layer, kept: N > P ? held / (H * (N - P)) : 1 };
  });
  cache.dispose();
  return {
    tokens: out,
    cacheLocation,
    keptPerLayer,
    kept: keptPerLayer.reduce((a, b) => a + b.kept, 0) / Math.max(1, L),
    window: pre.window,
    footprint,
    prefillFootprint,
    timings: {
      prefillSeconds,
      firstTokenSeconds,
      decodeSeconds,
      decodeTokensPerSecond: fed > 0 ? fed / decodeSeconds : 0,
      gateSeconds: Number(gateNs) / 1e9,
      evictSeconds: Number(evictNs) / 1e9,
      compactions: cache.compactions,
    },
    evicted: { prefill: prefillEvicted, decode: cache.removed - prefillEvicted },
  };
}

export interface GenerateWithGatesOptions extends Omit<CompressedGenerateOptions, 'hiddenDtype' | 'stopIds' | 'onToken'> {
  model: string;
  revision?: string;
  /** gates file (.pt, .safetensors, .onnx) or a train/run output folder */
  gates: string;
  prompt: string;
  addSpecialTokens: boolean;
  device: DeviceOptions;
  dtype?: ComputeDType;
  /** the continuation's text as it grows (new characters only) */
  onText?: (delta: string) => void;
  log?: (line: string) => void;
}

export interface GenerateWithGatesResult extends CompressedGenerateResult {
  model: string;
  gates: string;
  dtype: ComputeDType;
  cacheDtype: DType;
  promptTokens: number;
  text: string;
}

/**
 * The sessions of compressedGenerate for a decode path (the model loaded with step_compressed and
 * that path's kind). On WebGPU with 'step' the cache stays in device memory between runs; the
 * block's Loop runs on the CPU provider there, so 'block' keeps it on the host.
 */
export async function compressedSessions(m: LoadedModel, decodePath: DecodePath, device: DeviceOptions): Promise<CompressedSessions> {
  const onDevice = device.device === 'webgpu' && decodePath === 'step';
  const extra = onDevice ? { preferredOutputLocation: deviceOutputs(m.model.spec) } : {};
  const step = await sessionFor(m, 'step_compressed', device, extra);
  if (decodePath === 'block') return { step, block: await sessionFor(m, 'step_compressed_block', device) };
  return { step, decode: await sessionFor(m, 'step_compressed_decode', device, extra), ...(onDevice ? { device: await deviceResidency(m.cacheDtype, m.model.spec.headDim, device) } : {}) };
}

/** `generate --gates`: load the model and gates, run compressedGenerate, decode the text. */
export async function generateWithGates(o: GenerateWithGatesOptions): Promise<GenerateWithGatesResult> {
  const decodeKind = (o.decodePath ?? 'step') === 'block' ? 'step_compressed_block' : 'step_compressed_decode';
  const m = await loadModel(o.model, { revision: o.revision, device: o.device, dtype: o.dtype, kinds: ['step_compressed', decodeKind], log: o.log });
  const { spec, tokenizer: tok } = m.model;
  if (!tok) throw new UserError(`${m.model.dir}: no tokenizer.json`);
  const ids = tok.encode(o.prompt, { addSpecialTokens: o.addSpecialTokens });
  if (ids.length === 0) throw new UsageError('the prompt is empty after tokenization');
  const g = await loadGates(o.gates, spec);
  const hiddenDtype = attnInputIoDtype(m.dtype) as 'float32' | 'float16';
  const gates = await gateSession(g.gates, o.device, hiddenDtype);
  const sessions = await compressedSessions(m, o.decodePath ?? 'step', o.device);
  const decode = (sessions.block ?? sessions.decode)!;
  const stopIds = [...new Set([...spec.eosTokenIds, ...(tok.eosTokenId !== null ? [tok.eosTokenId] : [])])];
  const out: number[] = [];
  let shown = '';
  const visible = () => tok.decode(out.filter((t) => !stopIds.includes(t)), { skipSpecialTokens: true });
  try {
    const r = await compressedGenerate(sessions, gates, spec, m.cacheDtype, ids, {
      ...o,
      hiddenDtype,
      stopIds,
      onToken: (id) => {
        out.push(id);
        if (!o.onText) return;
        const text = visible();
        o.onText(text.slice(shown.length));
        shown = text;
      },
    });
    return { ...r, model: m.id, gates: g.file, dtype: m.dtype, cacheDtype: m.cacheDtype, promptTokens: ids.length, text: visible() };
  } finally {
    await Promise.all([sessions.step.release(), decode.release(), gates.release(), sessions.device?.gather.release(), sessions.device?.download.release()]);
  }
}
