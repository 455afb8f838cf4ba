// The KVzip context graph: ONE session.run per context does the chunked prefill (capturing
// the attention inputs of the scored layers), then every reconstruction pass against the
// context's KV cache, computing the KVzip scores of docs/method.md §1 on the way. The cache never
// leaves the device (onnxruntime-node returns CUDA outputs to host memory, so the cache
// must live inside one run).
//
// Inputs (built by src/kvzip/inputs.ts):
//   prefill_ids   [n_p, c_p] int64  prefix ⧺ context, cut in n_p equal chunks (end padded)
//   num_tokens    []         int64  N = real length of prefix ⧺ context
//   prefix_len    []         int64  P
//   repeat_ids    [n_r, R]   int64  reconstruction inputs (end padded)
//   repeat_lens   [n_r]      int64  real length of each reconstruction input
//   chunk_starts  [n_r]      int64  cache position of context chunk i (P + i*C)
//   chunk_lens    [n_r]      int64  its length
// Outputs:
//   hidden.<s>    [N - P, D]            attention input of scored layer s (fp16, or fp32 for fp32 graphs)
// With `quant` (8-bit stores, issue 16) the attention inputs leave in the store's 8-bit form:
//   keep_rows     [n_p, k_max] int64   (with quant.keep) per prefill chunk, the chunk-local rows kept (padded)
//   keep_index    [K]          int64   (with quant.keep) the real ones of [n_p·k_max], in context order
//   hidden.<s>    [N - P or K, D]       int8 codes, or e4m3fn codes as uint8 (src/onnx/quant-graph.ts)
//   scale.<s>     [N - P or K, D/block] fp32 scales
//   scores        [n_r, L_s, H, C_max]  fp32, chunk i's scores in [:, :, :chunk_lens[i]]
import { Graph, ONNX_DTYPE, type DType } from './builder.js';
import { makeEmbedding, makeLayer, gqaLengths, type DecoderContext, type ForwardInputs } from './decoder.js';
import { attnInputIoDtype } from './step-graph.js';
import type { ComputeDType } from './weights.js';
import type { ModelSpec } from '../model/config.js';
import { bf16Bits } from './bf16-bits.js';
import { quantizeInt8, quantizeFp8, type GraphQuant } from './quant-graph.js';

export interface KvzipGraphOptions {
  /** false: the chunked prefill with attention-input capture only (no reconstruction, no scores) */
  reconstruct: boolean;
  /** return the attention inputs as bfloat16 bit patterns (uint16) instead of fp16/fp32 */
  bf16Hidden?: boolean;
  /** how the scores are computed (same values; see fusedScorer); default DEFAULT_KVZIP_SCORING */
  scoring?: KvzipScoring;
  /** with bf16Hidden: how the bit patterns are made (same bits); default DEFAULT_BF16_BITS_ROUTE */
  bf16Bits?: Bf16BitsRoute;
  /** where the reconstruction passes' Slice/Pad/shape bounds are computed (same values); default DEFAULT_KVZIP_BOUNDS */
  bounds?: KvzipBounds;
  /** how the prefill chunks and reconstruction passes give each layer's cache room for their keys (same values); default DEFAULT_KVZIP_ROOM */
  room?: KvzipRoom;
  /** the prefill's loop order (same values, less memory with 'layers'); default DEFAULT_KVZIP_PREFILL */
  prefill?: KvzipPrefill;
  /** the order of each reconstruction pass's layers and scores (same values, less memory with 'layers'); default DEFAULT_KVZIP_PASS_ORDER */
  passOrder?: KvzipPassOrder;
  /**
   * 8-bit codes (int8 or e4m3fn) and scales instead of 16-bit rows, quantised per prefill chunk inside the Loop;
   * with keep, only the kept rows (inputs keep_rows / keep_index) are quantised and scanned.
   * Why: ONNX Runtime's Loop holds every chunk's scan output and concatenates them at the end
   * (2x), so the scan is 2·N·L_s·D·2 B of device memory with 16-bit rows (59 GB for Qwen3-8B at
   * 100k tokens), 2·N·L_s·(D + 4·D/block) B as 8-bit codes (29.5 GB), ×≈0.46 more with keep 0.45
   * (13.4 GB); BENCHMARKS.md (issue 16) has the whole peak.
   */
  quant?: GraphQuant & { dtype: 'int8' | 'float8e4m3'; keep: boolean };
}

/**
 * 'concat': each reconstruction pass (and prefill chunk) appends empty slots to every layer's cache with a
 * Concat, and GroupQueryAttention writes the pass's keys and values into them in place (present
 * aliases past). ONNX Runtime's CUDA Concat moves bf16 one 2-byte element per thread with index
 * arithmetic and a host-built axis map: 0.23 s per Qwen3-8B context (session 4), ≈ 62 GB moved,
 * ≈ 0.27 TB/s. 'gqa': the context cache goes to GroupQueryAttention as it is; its kernel then
 * builds present = past ⧺ new itself (CUDA: cudaMemsetAsync + cudaMemcpy2DAsync of the past,
 * copy-engine speed; CPU: memset + per-head memcpy). Same values; an A/B switch until measured
 * on the GPU (FASTKVZIP_KVZIP_ROOM). No form without any copy exists in ONNX Runtime 1.29: the
 * allocation planner never lets a kernel write in place into a Loop body's input or an
 * outer-scope value (the context cache), and no attention kernel returns the log-sum-exp that
 * attending to the cache and to the pass's own keys separately would need (BENCHMARKS.md).
 */
export type KvzipRoom = 'concat' | 'gqa';
export const KVZIP_ROOMS: readonly KvzipRoom[] = ['concat', 'gqa'];
export const DEFAULT_KVZIP_ROOM: KvzipRoom = 'concat';

/**
 * The prefill's loop nest. 'chunks': one Loop over the prefill chunks whose body runs every layer,
 * carrying every layer's cache. ONNX Runtime's Loop keeps the previous iteration's carried values
 * (its feeds) alive through the whole next iteration and copies the final ones into the Loop's
 * outputs at the end (loop.cc: "there's no way to avoid a copy"), and it concatenates the scan outputs
 * only after the last iteration: the last chunk holds ≈ 2 caches (past and present of every layer),
 * the Loop's end ≈ 3 (those and the outputs' copy) plus 2 copies of the captured attention inputs. 'layers': one Loop over the
 * chunks per layer, carrying only that layer's cache, the layer's outputs for every chunk passed
 * to the next layer's Loop as a scan [n_p, c_p, D]. Each chunk runs the same nodes on the same
 * values (same results), but only one layer's cache is ever doubled or copied, and each scored
 * layer's capture only while its own Loop ends (host-written outputs then leave the device). Measured on the CPU: BENCHMARKS.md "KVzip graph peak memory
 * on CPU (issue 16/17)". The default since session 10: with 'layers' passes, two 120k-token Qwen3-8B contexts
 * ran on an 80 GB H100 at a 67.9 GB peak, where 'chunks' ran out at 110,720 positions (BENCHMARKS.md);
 * FASTKVZIP_KVZIP_PREFILL=chunks keeps the old form.
 */
export type KvzipPrefill = 'chunks' | 'layers';
export const KVZIP_PREFILLS: readonly KvzipPrefill[] = ['chunks', 'layers'];
export const DEFAULT_KVZIP_PREFILL: KvzipPrefill = 'layers';

/**
 * The order of a reconstruction pass's nodes. 'free': ONNX Runtime's own (a reverse depth-first
 * order from the outputs). Its profile on the CPU shows it making the 'concat' room of every layer
 * but the last (Concat of the cache with empty slots: a copy of the layer's cache) before layer 0's
 * attention, since one empty-slot shape serves all layers, and computing every layer's scores after
 * the last layer, so all rooms (= the presents, on CUDA) live at once: ≈ 1 cache on top of the
 * context's cache. 'layers': each layer's room waits for its own key and for the previous scored
 * layer's scores, through integer shape values only (layerForward), so about one layer's room
 * lives at a time. Same values; the default since session 10 (with the 'layers' prefill, see KvzipPrefill);
 * FASTKVZIP_KVZIP_PASS_ORDER=free keeps the old order.
 */
export type KvzipPassOrder = 'free' | 'layers';
export const KVZIP_PASS_ORDERS: readonly KvzipPassOrder[] = ['free', 'layers'];
export const DEFAULT_KVZIP_PASS_ORDER: KvzipPassOrder = 'layers';

/**
 * 'device': the reconstruction loop computes its per-pass bounds (R, N + R, the chunk's key range,
 * the pads...) from the graph's inputs with ordinary nodes, which ONNX Runtime's CUDA EP places on
 * the device, so each bound it reads on the host (Slice, Pad, Range, Expand, GQA's total length) is
 * a synchronising MemcpyToHost per pass. 'host': the per-pass values enter the loop as one carried
 * int64 table whose nodes ONNX Runtime keeps on the CPU (see hostPassValues), so the bounds never
 * leave host memory. An A/B switch until measured on the GPU (FASTKVZIP_KVZIP_BOUNDS).
 */
export type KvzipBounds = 'device' | 'host';
export const KVZIP_BOUNDS: readonly KvzipBounds[] = ['device', 'host'];
export const DEFAULT_KVZIP_BOUNDS: KvzipBounds = 'device';

/**
 * 'arith': bf16Bits' exact float arithmetic on the device (opset 21, ~25 elementwise kernels over
 * every attention input), then viaPinnedHost's CPU identity; 'bitcast': ONNX BitCast (opset 26;
 * ONNX Runtime implements it on the CPU only), so the bf16 values leave the device as they are,
 * through the pinned MemcpyToHost, and the CPU BitCast writes the output (no device arithmetic).
 * The whole graph then declares opset 26: an experiment until measured on the GPU (an opset
 * without CUDA kernel registrations sends nodes to the CPU; FASTKVZIP_ORT_LOG_LEVEL=2 lists them).
 */
export type Bf16BitsRoute = 'arith' | 'bitcast';
export const BF16_BITS_ROUTES: readonly Bf16BitsRoute[] = ['arith', 'bitcast'];
export const DEFAULT_BF16_BITS_ROUTE: Bf16BitsRoute = 'arith';
/** ONNX opset of graphs built with the 'bitcast' route (BitCast appeared in opset 26). */
export const BITCAST_OPSET = 26;

/**
 * 'classic': mask Add, Softmax and max over the full reduced logits; 'fused': the causal repeat
 * block reduced to a log-sum-exp first and folded into the other block's GEMM, so one LogSoftmax
 * there yields log-probabilities, then one max and an Exp on the result (see fusedScorer).
 * Both stay buildable so the two can be timed against each other (FASTKVZIP_KVZIP_SCORING).
 */
export type KvzipScoring = 'classic' | 'fused';
export const KVZIP_SCORINGS: readonly KvzipScoring[] = ['fused', 'classic'];
// classic stays the default until the fused form is measured faster on the GPU (issue 17): on the
// CPU the two are within noise, and fused moves 1.8 % of the CI gates' bf16 values by one step.
export const DEFAULT_KVZIP_SCORING: KvzipScoring = 'classic';

/** Type of the graph's attention-input outputs hidden.<s>: bf16 bit patterns, or fp16 (fp32 for fp32 graphs). */
export function kvzipAttnInputType(dtype: DType, bf16Hidden: boolean): 'uint16' | 'float16' | 'float32' {
  return bf16Hidden ? 'uint16' : (attnInputIoDtype(dtype) as 'float16' | 'float32');
}

export function buildKvzipGraph(ctx: DecoderContext, opts: KvzipGraphOptions = { reconstruct: true }): Graph {
  const { spec, dtype } = ctx;
  const g = new Graph(opts.reconstruct ? 'fastkvzip_kvzip' : 'fastkvzip_prefill');
  const scored = spec.scoredLayers;
  const lastLayer = Math.max(...scored); // layers after the last scored one never matter here
  const layers = Array.from({ length: lastLayer + 1 }, (_, l) => l);
  const H = spec.numKvHeads;
  const d = spec.headDim;
  const hiddenDtype = kvzipAttnInputType(dtype, !!opts.bf16Hidden);
  const scoring = opts.scoring ?? DEFAULT_KVZIP_SCORING;
  const bitcast = !!opts.bf16Hidden && opts.bf16Bits === 'bitcast';
  // the prefill loop's per-chunk attention inputs: bf16 values for the bitcast route (bit-cast at the end, on the CPU)
  const scanDtype: DType = bitcast ? 'bfloat16' : hiddenDtype;
  const toHidden = (b: Graph, x: string) => (bitcast ? b.cast(x, 'bfloat16') : opts.bf16Hidden ? bf16Bits(b, x) : b.cast(x, hiddenDtype));

  const prefillIds = g.input('prefill_ids', 'int64', ['n_prefill', 'prefill_chunk']);
  const numTokens = g.input('num_tokens', 'int64', []);
  const prefixLen = g.input('prefix_len', 'int64', []);
  // 'host' bounds: the main graph's slice bounds and the passes' table are computed on the CPU too
  const hostBounds = opts.reconstruct && opts.bounds === 'host';
  const mainZero = hostBounds ? hostZero(g, prefillIds) : undefined;
  const [numTokensEnd, prefixStart] = mainZero ? [g.add(numTokens, mainZero), g.add(prefixLen, mainZero)] : []; // [N], [P]

  // ---- 1. chunked prefill: Loop over chunks, carrying the KV cache of every layer ----
  const emptyCache = g.op('ConstantOfShape', [g.constant([1, H, 0, d], 'int64')], {});
  const empty = g.cast(emptyCache, dtype);
  const nPrefill = g.reshape(g.shape(prefillIds, 0, 1), []);
  const carried = layers.flatMap((l) => [
    { name: `k.${l}`, dtype, shape: [1, H, 'past', d], init: empty },
    { name: `v.${l}`, dtype, shape: [1, H, 'past', d], init: empty },
  ]);
  const quant = opts.quant;
  const codeDtype: 'int8' | 'uint8' = quant?.dtype === 'float8e4m3' ? 'uint8' : 'int8';
  const D = spec.hiddenSize;
  const keepRows = quant?.keep ? g.input('keep_rows', 'int64', ['n_prefill', 'kept_per_chunk']) : null;
  const keepIndex = quant?.keep ? g.input('keep_index', 'int64', ['kept']) : null;
  // one chunk's forward inputs (positions, GQA lengths, RoPE tables filled lazily): the same nodes in both prefill orders
  const chunkForward = (b: Graph, i: string) => {
    const ids = b.unsqueeze(b.gather(prefillIds, i, 0), [0]); // [1, c]
    const c = b.reshape(b.shape(ids, 1, 2), []);
    const start = b.mul(i, c);
    const positions = b.unsqueeze(b.op('Range', [start, b.add(start, c), b.constant(1, 'int64')]), [0]);
    const fwd: ForwardInputs = { positions, ...gqaLengths(b, start, c), rope: new Map(), room: opts.room ?? DEFAULT_KVZIP_ROOM };
    return { ids, fwd };
  };
  // a scored layer's captured attention input [1, c, D] of chunk i -> its scan outputs (8-bit codes and scales, or 16-bit rows)
  // (rows: keptRows of the chunk, computed once per Loop body)
  const keptRows = (b: Graph, i: string) => (keepRows ? b.gather(keepRows, i, 0) : null);
  const captureScans = (b: Graph, rows: string | null, x: string, s: number) => {
    if (quant) {
      // this chunk's kept rows only (all of them without keep), as 8-bit codes and fp32 scales
      const quantize = quant.dtype === 'int8' ? quantizeInt8 : quantizeFp8;
      const q = quantize(b, rows ? b.gather(b.squeeze(x, [0]), rows, 0) : b.squeeze(x, [0]), dtype, quant, D);
      return { hidden: { value: q.codes, name: `hidden_scan.${s}`, dtype: codeDtype as DType }, scale: { value: q.scales, name: `scale_scan.${s}`, dtype: 'float32' as DType } };
    }
    return { hidden: { value: toHidden(b, b.squeeze(x, [0])), name: `hidden_scan.${s}`, dtype: scanDtype }, scale: undefined };
  };
  // scored layer s's graph outputs from its scans; returns the output when a CPU node writes it (its device scan is then free)
  const captureOutputs = (s: number, hiddenScan: string, scaleScan?: string): string | undefined => {
    if (quant) {
      // [n_p, c_p or k_max, ·] -> the context's rows (or the kept ones)
      const rows = (scan: string, width: number) => {
        const flat = g.reshape(scan, [-1, width]);
        return keepIndex ? g.gather(flat, keepIndex, 0) : numTokensEnd ? g.sliceVec(flat, prefixStart!, numTokensEnd, [0]) : g.slice(flat, [prefixLen], [numTokens], [0]);
      };
      const dim = keepIndex ? 'kept' : 'ctx_len';
      const codes = g.output(viaPinnedHost(g, rows(hiddenScan, D), `hidden.${s}`, codeDtype), `hidden.${s}`, codeDtype, [dim, D]);
      g.output(rows(scaleScan!, D / quant.block), `scale.${s}`, 'float32', [dim, D / quant.block]);
      return codes;
    }
    const flat = g.reshape(hiddenScan, [-1, spec.hiddenSize]); // [n_p, c_p, D] -> rows
    const hidden = numTokensEnd ? g.sliceVec(flat, prefixStart!, numTokensEnd, [0]) : g.slice(flat, [prefixLen], [numTokens], [0]);
    const name = `hidden.${s}`;
    const out = bitcast
      ? g.node('BitCast', [hidden], { to: ONNX_DTYPE.uint16 }, { outputs: [name] })[0]! // named as the output: no (CUDA) Identity after it
      : hiddenDtype === 'uint16'
        ? viaPinnedHost(g, hidden, name)
        : hidden;
    g.output(out, name, hiddenDtype, ['ctx_len', spec.hiddenSize]);
    return out === hidden ? undefined : out;
  };
  // per layer [k, v] as the prefill leaves them ([1, H, n_p·c_p, d]), and per scored layer its scan [n_p, c_p or k_max, ·]
  // (8-bit: the codes' scans, then the scales')
  let cacheOut: string[];
  let hiddenScans: string[];
  let scaleScans: string[];
  const prefillOrder = opts.prefill ?? DEFAULT_KVZIP_PREFILL;
  if (prefillOrder === 'chunks') {
    const prefill = g.loop('prefill', nPrefill, carried, (b, i, pastFlat) => {
      const { ids, fwd } = chunkForward(b, i);
      let h = makeEmbedding(b, ctx, ids);
      const present: string[] = [];
      const captured: string[] = [];
      for (const l of layers) {
        const out = makeLayer(b, ctx, l, h, fwd, { key: pastFlat[2 * l]!, value: pastFlat[2 * l + 1]! });
        h = out.hidden;
        present.push(out.presentKey, out.presentValue);
        if (scored.includes(l)) captured.push(out.attnInput);
      }
      const rows = keptRows(b, i);
      const caps = captured.map((x, s) => captureScans(b, rows, x, s));
      return { carried: present, scans: [...caps.map((c) => c.hidden), ...caps.flatMap((c) => (c.scale ? [c.scale] : []))] };
    });
    cacheOut = prefill.carried;
    hiddenScans = prefill.scans.slice(0, scored.length);
    scaleScans = prefill.scans.slice(scored.length);
  } else {
    // 'layers': one Loop over the chunks per layer, each carrying only its own layer's cache (see KvzipPrefill)
    cacheOut = [];
    hiddenScans = [];
    scaleScans = [];
    let hiddenIn = ''; // the previous layer's output [n_p, c_p, D]; the embedding for layer 0
    let trips = nPrefill;
    for (const l of layers) {
      const last = l === lastLayer;
      const loop = g.loop(`prefill.${l}`, trips, carried.slice(2 * l, 2 * l + 2), (b, i, past) => {
        const { ids, fwd } = chunkForward(b, i);
        const h = l === 0 ? makeEmbedding(b, ctx, ids) : b.unsqueeze(b.gather(hiddenIn, i, 0), [0]); // [1, c, D]
        const out = makeLayer(b, ctx, l, h, fwd, { key: past[0]!, value: past[1]! });
        const scans: { value: string; name: string; dtype: DType }[] = last ? [] : [{ value: b.squeeze(out.hidden, [0]), name: `layer_out.${l}`, dtype }];
        if (scored.includes(l)) {
          const c = captureScans(b, keptRows(b, i), out.attnInput, scored.indexOf(l));
          scans.push(c.hidden, ...(c.scale ? [c.scale] : []));
        }
        return { carried: [out.presentKey, out.presentValue], scans };
      });
      cacheOut.push(...loop.carried);
      const rest = last ? loop.scans : loop.scans.slice(1);
      if (!last) hiddenIn = loop.scans[0]!;
      if (scored.includes(l)) {
        hiddenScans.push(rest[0]!);
        if (quant) scaleScans.push(rest[1]!);
        // Outputs that a CPU node writes (8-bit codes, bf16 bits) leave the device before the next layer's Loop
        // starts, which waits for them through its trip count (+ 0, host integers): the device holds one
        // layer's capture at a time instead of all of them until the end of the run.
        const host = captureOutputs(scored.indexOf(l), rest[0]!, quant ? rest[1]! : undefined);
        if (host && !last) trips = g.add(nPrefill, g.reshape(g.mul(g.shape(host, 0, 1), g.constant([0], 'int64')), []));
      }
    }
  }
  const firstN = (x: string) => (numTokensEnd ? g.sliceVec(x, g.constant([0], 'int64', undefined, 'idx'), numTokensEnd, [2]) : g.slice(x, [0], [numTokens], [2]));
  const cache = layers.map((l) => ({ key: firstN(cacheOut[2 * l]!), value: firstN(cacheOut[2 * l + 1]!) }));
  if (prefillOrder === 'chunks') {
    scored.forEach((_, s) => quant && captureOutputs(s, hiddenScans[s]!, scaleScans[s]));
    scored.forEach((_, s) => !quant && captureOutputs(s, hiddenScans[s]!));
  }
  if (!opts.reconstruct) {
    ctx.weights.register(g);
    return g;
  }

  // ---- 2. reconstruction passes: Loop over context chunks; each attends to the whole cache ----
  const repeatIds = g.input('repeat_ids', 'int64', ['n_repeat', 'repeat_len']);
  const repeatLens = g.input('repeat_lens', 'int64', ['n_repeat']);
  const chunkStarts = g.input('chunk_starts', 'int64', ['n_repeat']);
  const chunkLens = g.input('chunk_lens', 'int64', ['n_repeat']);
  const maxChunk = hostBounds ? undefined : g.reduce('ReduceMax', chunkLens, [0], false); // scores are padded to this
  const nRepeat = g.reshape(g.shape(repeatIds, 0, 1), []);
  const table = mainZero ? passTable(g, mainZero, { repeatLens, chunkStarts, chunkLens, numTokens, prefixLen }) : undefined;
  const carriedTable = table ? [{ name: 'pass_table', dtype: 'int64' as const, shape: ['n_repeat', PASS_COLUMNS.length], init: table }] : [];
  const repeat = g.loop('repeat', nRepeat, carriedTable, (b, i, carriedIn) => {
    const pass = hostBounds ? hostPassValues(b, i, carriedIn[0]!) : devicePassValues(b, i, { repeatLens, chunkStarts, chunkLens, numTokens, prefixLen, maxChunk: maxChunk! });
    const { R, cStart, cLen, numTokens: N, prefixLen: P } = pass;
    const ids = b.unsqueeze(b.slice(b.gather(repeatIds, i, 0), [0], [R], [0]), [0]); // [1, R]
    const repeatEnd = b.add(N, R); // the pass's tokens sit at cache positions [N, N + R)
    const positions = b.unsqueeze(b.op('Range', [N, repeatEnd, b.constant(1, 'int64')]), [0]);
    const fwd: ForwardInputs = { positions, ...gqaLengths(b, N, R), rope: new Map(), room: opts.room ?? DEFAULT_KVZIP_ROOM };
    const visibleBefore = b.add(P, cLen); // prefix and chunk keys: visible to every repeat query
    const bounds = scoreBounds(b, { prefixLen: P, cStart, cLen, numTokens: N, repeatEnd, visibleBefore, maxChunk: pass.maxChunk });
    const score =
      scoring === 'fused'
        ? fusedScorer(b, ctx, { R, visibleBefore, bounds })
        : classicScorer(b, ctx, { R, visibleBefore, bounds });
    let h = makeEmbedding(b, ctx, ids);
    const layerScores: string[] = [];
    const layered = (opts.passOrder ?? DEFAULT_KVZIP_PASS_ORDER) === 'layers';
    let after: string | undefined; // 'layers': an int64 [1] zero that exists once the last scored layer's scores do
    for (const l of layers) {
      const out = makeLayer(b, ctx, l, h, layered ? layerForward(b, fwd, after) : fwd, cache[l]!);
      h = out.hidden;
      if (scored.includes(l)) {
        layerScores.push(
          b.within(`score.${l}`, () =>
            score(out.query, out.presentKey),
          ),
        );
        if (layered) after = b.mul(b.shape(layerScores.at(-1)!, 1, 2), b.constant([0], 'int64'));
      }
    }
    const scores = b.concat(layerScores.map((s) => b.unsqueeze(s, [0])), 0); // [L_s, H, C_max]
    return { carried: pass.carried, scans: [{ value: scores, name: 'scores_scan', dtype: 'float32' }] };
  });
  g.output(repeat.scans[0]!, 'scores', 'float32', ['n_repeat', scored.length, H, 'max_chunk']);
  ctx.weights.register(g);
  return g;
}

/**
 * A layer's forward inputs in the 'layers' pass order (see KvzipPassOrder). 'concat' room: the room's
 * shape comes from the layer's own key and `after` (a zero that exists once the previous scored layer's
 * scores do), so ONNX Runtime can make the room neither before the layer's attention nor before those
 * scores, which then free that layer's present; integer shape values on the host, no device work.
 * 'gqa' room (no room node): `after` is added to GroupQueryAttention's seqlens_k instead (a device
 * input: a small host-to-device copy, no device-to-host wait). The same values either way.
 */
function layerForward(b: Graph, fwd: ForwardInputs, after: string | undefined): ForwardInputs {
  if (fwd.room === 'gqa') return after ? { ...fwd, seqlensK: b.add(fwd.seqlensK, b.cast(after, 'int32')) } : fwd;
  const roomShape = (g: Graph, past: string, key: string) => {
    const T = after ? g.add(g.shape(key, 1, 2), after) : g.shape(key, 1, 2);
    return g.concat([g.shape(past, 0, 2), T, g.shape(past, 3, 4)], 0);
  };
  return { ...fwd, roomShape };
}

/** One reconstruction pass's scalars (int64), and the loop's carried values. */
interface PassScalars {
  /** length of the pass's repeat input */
  R: string;
  /** cache position and length of the pass's context chunk */
  cStart: string;
  cLen: string;
  /** N = prefix ⧺ context length, P = prefix length, the longest chunk (scores are padded to it) */
  numTokens: string;
  prefixLen: string;
  maxChunk: string;
  carried: string[];
}

interface PassInputs {
  repeatLens: string;
  chunkStarts: string;
  chunkLens: string;
  numTokens: string;
  prefixLen: string;
}

/** The pass's scalars read from the graph's inputs inside the loop ('device' bounds). */
function devicePassValues(b: Graph, i: string, x: PassInputs & { maxChunk: string }): PassScalars {
  return {
    R: b.gather(x.repeatLens, i, 0),
    cStart: b.gather(x.chunkStarts, i, 0),
    cLen: b.gather(x.chunkLens, i, 0),
    numTokens: x.numTokens,
    prefixLen: x.prefixLen,
    maxChunk: x.maxChunk,
    carried: [],
  };
}

/** Columns of the 'host' bounds' per-pass table. */
const PASS_COLUMNS = ['R', 'cStart', 'cLen', 'numTokens', 'prefixLen', 'maxChunk'] as const;

/**
 * A zero of shape [1] that ONNX Runtime computes on the CPU: its CUDA EP places an int64 node on
 * the CPU only when it consumes a Shape output (or another such node's) and otherwise only small
 * initializers and the graph's own inputs (GetCpuPreferredNodes in fallback_cpu_capability.cc).
 * Adding it to a graph input makes that input's arithmetic such a node; `of` must have a shape
 * unknown at build time (a static Shape is folded into a constant before placement).
 */
function hostZero(b: Graph, of: string): string {
  return b.mul(b.shape(of, 0, 1), b.constant([0], 'int64'));
}

/** The per-pass table [n_repeat, PASS_COLUMNS], built on the CPU from the graph's inputs (`zero`: a hostZero). */
function passTable(g: Graph, zero: string, x: PassInputs): string {
  const column = (v: string) => g.unsqueeze(g.add(v, zero), [1]); // [n_repeat, 1]
  const lens = column(x.repeatLens);
  const perPass = (scalar: string) => g.add(g.mul(lens, g.constant(0, 'int64')), scalar); // the scalar in every row
  const maxChunk = g.reduce('ReduceMax', g.add(x.chunkLens, zero), [0], false);
  return g.concat([lens, column(x.chunkStarts), column(x.chunkLens), perPass(x.numTokens), perPass(x.prefixLen), perPass(maxChunk)], 1);
}

/**
 * The pass's scalars from the carried table ('host' bounds): row i, gathered and cut on the CPU,
 * and the table carried on unchanged by a CPU node (an Identity would be placed on the device).
 */
function hostPassValues(b: Graph, i: string, table: string): PassScalars {
  const zero = hostZero(b, table);
  const row = b.gather(table, b.reshape(b.add(i, zero), []), 0); // [PASS_COLUMNS]
  const col = (name: (typeof PASS_COLUMNS)[number]) => {
    const k = PASS_COLUMNS.indexOf(name);
    return b.reshape(b.slice(row, [k], [k + 1], [0]), []);
  };
  return {
    R: col('R'),
    cStart: col('cStart'),
    cLen: col('cLen'),
    numTokens: col('numTokens'),
    prefixLen: col('prefixLen'),
    maxChunk: col('maxChunk'),
    carried: [b.add(table, zero)],
  };
}

/**
 * The scoring of `layers` scored layers in one reconstruction pass, alone (no model weights): what
 * the scoring forms are timed and compared with (bench/kvzip_scoring.ts). Per-pass values (masks,
 * bounds) are shared by the layers as in the KVzip graph.
 * Inputs: query [layers, 1, R, Hq, d] and present_key [layers, 1, H, N + R, d] fp32 (each layer's
 * post-RoPE queries and its cache with the pass's keys at the end; cast to `dtype`, the cache's
 * type, in the graph), prefix_len, chunk_start, chunk_len and max_chunk (int64 scalars).
 * Output: scores [layers, H, max_chunk] fp32.
 */
export function buildKvzipScoreGraph(spec: ScoreContext['spec'], dtype: ComputeDType, scoring: KvzipScoring, layers = 1): Graph {
  const { numKvHeads: H, numHeads: Hq, headDim: d } = spec;
  const g = new Graph(`fastkvzip_kvzip_score_${scoring}`);
  const toDtype = (x: string) => (dtype === 'float32' ? x : g.cast(x, dtype));
  const queries = toDtype(g.input('query', 'float32', [layers, 1, 'R', Hq, d]));
  const presentKeys = toDtype(g.input('present_key', 'float32', [layers, 1, H, 'total', d]));
  const [prefixLen, cStart, cLen, maxChunk] = ['prefix_len', 'chunk_start', 'chunk_len', 'max_chunk'].map((n) => g.input(n, 'int64', []));
  const R = g.reshape(g.shape(queries, 2, 3), []);
  const repeatEnd = g.reshape(g.shape(presentKeys, 3, 4), []);
  const numTokens = g.sub(repeatEnd, R);
  const visibleBefore = g.add(prefixLen!, cLen!);
  const bounds = scoreBounds(g, { prefixLen: prefixLen!, cStart: cStart!, cLen: cLen!, numTokens, repeatEnd, visibleBefore, maxChunk: maxChunk! });
  const ctx = { spec, dtype };
  const score = scoring === 'fused' ? fusedScorer(g, ctx, { R, visibleBefore, bounds }) : classicScorer(g, ctx, { R, visibleBefore, bounds });
  const layer = (x: string, l: number) => g.gather(x, g.constant(l, 'int64'), 0);
  const scores = Array.from({ length: layers }, (_, l) => g.unsqueeze(score(layer(queries, l), layer(presentKeys, l)), [0]));
  g.output(layers === 1 ? scores[0]! : g.concat(scores, 0), 'scores', 'float32', [layers, H, 'max_chunk']);
  return g;
}

/**
 * Identity on uint16 that only the CPU execution provider implements (BitwiseAnd with 0xFFFF).
 * A graph output computed on CUDA is copied by ONNX Runtime straight into a pageable host buffer;
 * a CPU node's input instead arrives through a MemcpyToHost node in CUDA-pinned memory (DMA at
 * full speed), and the CPU node then writes the output. On an H200 this took a 0.6B-shaped 20k
 * context from 2.48 to 2.08 s (BENCHMARKS.md). Give `name` when the result is a graph output.
 */
export function viaPinnedHost(g: Graph, x: string, name?: string, dtype: 'uint16' | 'int8' | 'uint8' = 'uint16'): string {
  const ones = { uint16: 0xffff, int8: -1, uint8: 0xff }[dtype];
  // named like the graph output it feeds, so no (CUDA) Identity sits between it and the caller
  return g.node('BitwiseAnd', [x, g.constant(ones, dtype)], {}, name ? { outputs: [name] } : {})[0]!;
}

/**
 * The reduced key set is padded with zero keys to a multiple of this many, so the rows of the
 * fp32 logits stay 128-byte aligned for the GEMM, the mask add, Softmax and MaxPool kernels; the
 * mask hides the padding.
 */
const KEY_ALIGN = 32;

/**
 * Additive mask [R·G, width] over a key set [visible | repeat | padding] (visible: the first
 * `visibleBefore` keys, e.g. prefix and chunk; none in the fused scorer's key set B), one
 * row per (repeat query r, group member g) in that order: the visible keys are seen by every
 * row; query r sees repeat keys 0..r (causal inside the repeat block); padding is hidden.
 */
function reducedCausalMask(b: Graph, visibleBefore: string, R: string, width: string, G: number): string {
  const cols = b.op('Range', [b.constant(0, 'int64'), width, b.constant(1, 'int64')]); // [width]
  const rowQuery = b.div(b.op('Range', [b.constant(0, 'int64'), b.mul(R, b.constant(G, 'int64')), b.constant(1, 'int64')]), b.constant(G, 'int64')); // [R·G]: r of each row
  const repeatCol = b.sub(b.unsqueeze(cols, [0]), visibleBefore); // [1, width]: key index inside the repeat block
  const hidden = b.op('Greater', [repeatCol, b.unsqueeze(rowQuery, [1])]); // [R·G, width]
  return b.op('Where', [hidden, b.constant(-Infinity, 'float32'), b.constant(0, 'float32')]);
}

/**
 * Max over the rows of x [H, rows, K] -> [H, K]. ONNX Runtime's CUDA ReduceMax over a middle
 * axis is slow (a cuDNN reduction: 33 ms for 8x8192x4096 on an H200, more than the attention
 * itself), so rows are first folded in windows of 64 by MaxPool (padding counts as -inf), twice,
 * leaving a handful of rows for ReduceMax. Every window holds at least one real row.
 */
export function maxOverRows(b: Graph, x: string): string {
  const k = 64;
  let y = b.unsqueeze(x, [1]); // [H, 1, rows, K]
  for (let stage = 0; stage < 2; stage++) {
    y = b.op('MaxPool', [y], { kernel_shape: [k, 1], strides: [k, 1], pads: [k - 1, 0, k - 1, 0] });
  }
  return b.squeeze(b.reduce('ReduceMax', y, [2], false), [1]);
}

/**
 * The index vectors every scored layer slices and pads with, built once per reconstruction pass.
 * ONNX Runtime reads Slice bounds and Pad amounts on the host; computed per layer, each would be
 * a separate device value and a synchronising copy to the host (≈ 8 per layer and pass: 2,600 per
 * 8B context in the session-4 profile).
 */
interface ScoreBounds {
  /** [P]: end of the prefix keys, start of the context-chunk scores */
  prefixEnd: string;
  /** [cStart], [cStart + cLen]: the context chunk's keys in the cache */
  chunkStart: string;
  chunkEnd: string;
  /** [N], [N + R]: the repeat keys */
  repeatStart: string;
  repeatEnd: string;
  /** [P + cLen]: end of the chunk's columns in the reduced key set */
  chunkColumnsEnd: string;
  /** Pad amounts [H, cLen] -> [H, C_max] */
  scorePads: string;
}

function scoreBounds(
  b: Graph,
  s: { prefixLen: string; cStart: string; cLen: string; numTokens: string; repeatEnd: string; visibleBefore: string; maxChunk: string },
): ScoreBounds {
  const vec = (x: string) => b.reshape(x, [1]);
  return {
    prefixEnd: vec(s.prefixLen),
    chunkStart: vec(s.cStart),
    chunkEnd: vec(b.add(s.cStart, s.cLen)),
    repeatStart: vec(s.numTokens),
    repeatEnd: vec(s.repeatEnd),
    chunkColumnsEnd: vec(s.visibleBefore),
    scorePads: b.concat([b.constant([0, 0, 0], 'int64'), vec(b.sub(s.maxChunk, s.cLen))], 0),
  };
}

/** What the scorers need of the model: the attention shape and the cache's dtype. */
type ScoreContext = { spec: Pick<ModelSpec, 'numKvHeads' | 'numHeads' | 'headDim'>; dtype: ComputeDType };

/** Scores one scored layer: (query [1, R, Hq, d], presentKey [1, H, N + R, d]) -> [H, C_max]. */
type LayerScorer = (query: string, presentKey: string) => string;

/** What a reconstruction pass shares between its scored layers. */
interface PassValues {
  /** length of the pass's repeat input */
  R: string;
  /** P + cLen: prefix and chunk keys, visible to every repeat query */
  visibleBefore: string;
  bounds: ScoreBounds;
}

/** Rounds an int64 count up to a multiple of KEY_ALIGN. */
function alignUp(b: Graph, n: string): string {
  const align = b.constant(KEY_ALIGN, 'int64');
  return b.mul(b.div(b.add(n, b.sub(align, b.constant(1, 'int64'))), align), align);
}

/** Zero keys [1, H, count, d] in the cache's dtype, to pad a key set. */
function zeroKeys(b: Graph, ctx: ScoreContext, count: string): string {
  const { numKvHeads: H, headDim: d } = ctx.spec;
  const shape = b.concat([b.constant([1, H], 'int64'), b.reshape(count, [1]), b.constant([d], 'int64')], 0);
  return b.op('Expand', [b.cast(b.constant(0, 'float32'), ctx.dtype), shape]);
}

/** The repeat queries [1, R, H·G, d] as [H, R·G, d] fp32: one row per (repeat query, group member). */
function queryRows(b: Graph, ctx: ScoreContext, query: string): string {
  const { numKvHeads: H, headDim: d } = ctx.spec;
  const G = ctx.spec.numHeads / H;
  return b.cast(b.reshape(b.transpose(b.reshape(b.squeeze(query, [0]), [-1, H, G, d]), [1, 0, 2, 3]), [H, -1, d]), 'float32');
}

/**
 * score[h, j] = max over the G query heads of KV head h and over repeat queries of
 * softmax_{prefix ∪ chunk ∪ repeat}(q·k/√d)[j], for j in the chunk; fp32 throughout.
 * The classic form: logits over the whole reduced key set, mask Add, Softmax, max over rows.
 */
function classicScorer(b: Graph, ctx: ScoreContext, p: PassValues): LayerScorer {
  const { numKvHeads: H, headDim: d } = ctx.spec;
  const keyCount = b.add(p.visibleBefore, p.R); // P + cLen + R reduced keys ...
  const paddedKeyCount = alignUp(b, keyCount); // ... rounded up
  const mask = reducedCausalMask(b, p.visibleBefore, p.R, paddedKeyCount, ctx.spec.numHeads / H); // [R·G, K_pad], 0 or -inf
  const keyPad = zeroKeys(b, ctx, b.sub(paddedKeyCount, keyCount)); // [1, H, K_pad - K, d]
  const s = p.bounds;
  return (query, presentKey) => {
    const keys = b.concat(
      [
        b.sliceVec(presentKey, b.constant([0], 'int64', undefined, 'idx'), s.prefixEnd, [2]),
        b.sliceVec(presentKey, s.chunkStart, s.chunkEnd, [2]),
        b.sliceVec(presentKey, s.repeatStart, s.repeatEnd, [2]),
        keyPad,
      ],
      2,
    ); // [1, H, K_pad, d]
    const kT32 = b.cast(b.transpose(b.squeeze(keys, [0]), [0, 2, 1]), 'float32'); // [H, d, K_pad]
    const logits = b.mul(b.matmul(queryRows(b, ctx, query), kT32), b.constant(1 / Math.sqrt(d), 'float32')); // [H, R·G, K_pad]
    const probs = b.op('Softmax', [b.add(logits, mask)], { axis: -1 });
    const best = b.sliceVec(maxOverRows(b, probs), s.prefixEnd, s.chunkColumnsEnd, [1]); // [H, cLen]
    return b.op('Pad', [best, s.scorePads]); // [H, C_max]
  };
}

/**
 * A logit that ends as an exact 0 after exp; the padding keys of key set A get it through an
 * extra key column (a zero key would give logit 0, i.e. weight 1, in the softmax).
 */
const PAD_LOGIT = -1e30;

/** Extra columns appended to queries and keys of key set A (see fusedScorer); 4 keep rows 16-byte aligned. */
const EXTRA_COLUMNS = 4;

/**
 * The same scores as classicScorer with fewer passes over the fp32 logits. The reduced key set
 * is cut in two:
 *   B = repeat ⧺ padding: causal, the only block that needs the mask Add (about half the keys).
 *     It is reduced to each row's log-sum-exp lse_B, read off LogSoftmax (one row kernel on every
 *     EP; ReduceLogSumExp is four kernels and a full temporary on CUDA) as l[:, 0] − logsoftmax(l)[:, 0]
 *     (key 0 of B is visible to every row).
 *   A = prefix ⧺ chunk ⧺ one "rest" slot ⧺ padding: seen by every row, no mask. The GEMM itself
 *     puts lse_B in the rest slot: the queries carry lse_B·√d in extra columns against ones in
 *     that key's extra columns, and PAD_LOGIT against the padding keys'. A LogSoftmax over A then
 *     normalises over the whole reduced key set: its chunk columns are log(softmax) exactly.
 * The max over rows reads those log-probabilities and the Exp runs on [H, cLen] only: per logit,
 * one GEMM write, one LogSoftmax read and write, one max read, plus the mask Add on B (classic:
 * GEMM, Add, Softmax and max over all keys). lse_B·√d is split in three parts that TF32 holds
 * exactly (bf16 ⊂ TF32), so the fold keeps fp32 accuracy where ONNX Runtime's CUDA GEMMs run in
 * TF32 (the cached q and k are half values, which TF32 holds). The GEMMs are FusedMatMul with
 * transB (no transposed key copies) and alpha = 1/√d.
 */
function fusedScorer(b: Graph, ctx: ScoreContext, p: PassValues): LayerScorer {
  const { numKvHeads: H, headDim: d } = ctx.spec;
  const G = ctx.spec.numHeads / H;
  const s = p.bounds;
  const int64 = (v: number[]) => b.constant(v, 'int64');
  // key set A: P + cLen keys, the rest slot, padding; extra key columns [0,0,0,0] (real), [1,1,1,0] (rest slot), [0,0,0,1] (padding)
  const widthA = alignUp(b, b.add(p.visibleBefore, b.constant(1, 'int64')));
  const keyPadA = zeroKeys(b, ctx, b.sub(widthA, p.visibleBefore));
  const column = b.op('Range', [b.constant(0, 'int64'), widthA, b.constant(1, 'int64')]); // [A]
  const isRest = b.cast(b.op('Equal', [column, p.visibleBefore]), 'float32');
  const isPad = b.cast(b.op('Greater', [column, p.visibleBefore]), 'float32');
  const keyColumnsA = b.op('Expand', [
    b.transpose(b.concat([isRest, isRest, isRest, isPad].map((x) => b.unsqueeze(x, [0])), 0), [1, 0]), // [A, 4]
    b.concat([int64([H]), b.shape(column), int64([EXTRA_COLUMNS])], 0),
  ]); // [H, A, 4]
  // key set B: R repeat keys, padding; the mask hides the causal future and the padding
  const widthB = alignUp(b, p.R);
  const keyPadB = zeroKeys(b, ctx, b.sub(widthB, p.R));
  const maskB = reducedCausalMask(b, b.constant(0, 'int64'), p.R, widthB, G); // [R·G, B]
  const rowsShape = b.concat([int64([H]), b.reshape(b.mul(p.R, b.constant(G, 'int64')), [1]), int64([1])], 0);
  const padColumn = b.op('Expand', [b.constant(PAD_LOGIT * Math.sqrt(d), 'float32'), rowsShape]); // [H, R·G, 1]
  const gemm = (x: string, y: string) => b.ms('FusedMatMul', [x, y], { alpha: { float: 1 / Math.sqrt(d) }, transB: 1 })[0]!;
  const [first, second] = [int64([0]), int64([1])];
  const column0 = (x: string) => b.sliceVec(x, first, second, [2]); // [H, R·G, 1]
  const sqrtD = b.constant(Math.sqrt(d), 'float32');
  return (query, presentKey) => {
    const q = queryRows(b, ctx, query); // [H, R·G, d]
    const keysB = b.cast(b.squeeze(b.concat([b.sliceVec(presentKey, s.repeatStart, s.repeatEnd, [2]), keyPadB], 2), [0]), 'float32'); // [H, B, d]
    const logitsB = b.add(gemm(q, keysB), maskB); // [H, R·G, B]
    const lseB = b.sub(column0(logitsB), column0(b.op('LogSoftmax', [logitsB], { axis: -1 }))); // [H, R·G, 1]
    const keysA = b.cast(b.squeeze(b.concat([b.sliceVec(presentKey, first, s.prefixEnd, [2]), b.sliceVec(presentKey, s.chunkStart, s.chunkEnd, [2]), keyPadA], 2), [0]), 'float32'); // [H, A, d]
    const queriesA = b.concat([q, ...splitForTf32(b, b.mul(lseB, sqrtD)), padColumn], 2); // [H, R·G, d + 4]
    const logProbs = b.op('LogSoftmax', [gemm(queriesA, b.concat([keysA, keyColumnsA], 2))], { axis: -1 }); // [H, R·G, A]
    const best = b.sliceVec(maxOverRows(b, logProbs), s.prefixEnd, s.chunkColumnsEnd, [1]); // [H, cLen]
    return b.op('Pad', [b.op('Exp', [best]), s.scorePads]); // [H, C_max]
  };
}

/**
 * x (fp32) as hi + mid + lo with each part a bfloat16 value: TF32 (10 mantissa bits) holds all
 * three exactly, and hi + mid + lo = x exactly (each subtraction is exact), so a GEMM on TF32
 * tensor cores adds x with fp32 accuracy.
 */
function splitForTf32(b: Graph, x: string): string[] {
  const toBf16 = (v: string) => b.cast(b.cast(v, 'bfloat16'), 'float32');
  const hi = toBf16(x);
  const rest = b.sub(x, hi);
  const mid = toBf16(rest);
  return [hi, mid, b.sub(rest, mid)];
}
