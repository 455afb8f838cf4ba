// Write a model's ONNX graphs and their shared weight file into one folder.
import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { encodeModel } from './builder.js';
import { WeightFile, type ComputeDType, type TensorSource } from './weights.js';
import { buildStepGraph } from './step-graph.js';
import { buildKvzipGraph, DEFAULT_KVZIP_SCORING, DEFAULT_BF16_BITS_ROUTE, DEFAULT_KVZIP_BOUNDS, DEFAULT_KVZIP_ROOM, DEFAULT_KVZIP_PREFILL, DEFAULT_KVZIP_PASS_ORDER, BITCAST_OPSET, type KvzipScoring, type Bf16BitsRoute, type KvzipBounds, type KvzipRoom, type KvzipPrefill, type KvzipPassOrder } from './kvzip-graph.js';
import { buildCompressedGraph } from './compressed-graph.js';
import { buildDecodeBlockGraph } from './decode-block-graph.js';
import type { ModelSpec } from '../model/config.js';
import type { GqaRoute } from './decoder.js';
import { writeFileAtomicSync } from '../util/atomic.js';

/**
 * step: generation (last-token logits); step_full: all logits + every layer's attention input;
 * kvzip: context scoring in one run; prefill: its chunked prefill with capture only (benchmarks);
 * step_masked: eviction evaluation (per-head keep masks, last-token logits, scored layers' attention
 * inputs and SnapKV window attention); step_masked_full: the same masks with logits at every position;
 * step_compressed / step_compressed_full: a compacted cache, one buffer per (layer, KV head) with its own
 * length (compressed generation and `eval --cache compressed`), last-token logits + scored layers' attention
 * inputs / all logits; step_compressed_decode: step_compressed without the SnapKV outputs (decoding);
 * step_compressed_block: up to `steps` greedy decode steps over that cache in one ONNX Loop (the cache
 * crosses to the device once per block);
 * kvzip_int8 / kvzip_int8_keep / kvzip_fp8 / kvzip_fp8_keep: kvzip with the attention inputs quantised to int8 (e4m3fn) in the graph (all rows / the kept rows; issue 16)
 */
export type GraphKind =
  | 'step'
  | 'step_full'
  | 'kvzip'
  | 'kvzip_bf16'
  | 'kvzip_int8'
  | 'kvzip_int8_keep'
  | 'kvzip_fp8'
  | 'kvzip_fp8_keep'
  | 'prefill'
  | 'prefill_bf16'
  | 'step_masked'
  | 'step_masked_full'
  | 'step_compressed'
  | 'step_compressed_full'
  | 'step_compressed_decode'
  | 'step_compressed_block';
export const ALL_GRAPHS: GraphKind[] = ['step', 'step_full', 'kvzip'];

export interface GraphFiles {
  dir: string;
  dtype: ComputeDType;
  paths: Partial<Record<GraphKind, string>>;
  weightBytes: number;
}

export const WEIGHT_FILE = 'weights.bin';

/** Build variants of the KVzip graphs (A/B switches for benchmarks: the same results). */
export interface GraphVariants {
  scoring?: KvzipScoring;
  bf16Bits?: Bf16BitsRoute;
  bounds?: KvzipBounds;
  room?: KvzipRoom;
  /** the prefill's loop order (the KVzip and prefill kinds) */
  prefill?: KvzipPrefill;
  /** the order of the reconstruction passes' layers and scores (the KVzip kinds) */
  passOrder?: KvzipPassOrder;
  /** the 8-bit kinds: channels per scale (undefined: the whole row, D) */
  quantBlock?: number;
  /** how every kind calls GroupQueryAttention (default 'flash'; 'sink' adds a `.sink` file-name part) */
  gqa?: GqaRoute;
}

/** Graph kinds whose file depends on the KVzip scoring form (and bounds, room), and on the bf16 bit route. */
const QUANT_KINDS: GraphKind[] = ['kvzip_int8', 'kvzip_int8_keep', 'kvzip_fp8', 'kvzip_fp8_keep'];
const SCORING_KINDS: GraphKind[] = ['kvzip', 'kvzip_bf16', ...QUANT_KINDS];
const BF16_KINDS: GraphKind[] = ['kvzip_bf16', 'prefill_bf16'];
/** Graph kinds whose file depends on the prefill's loop order. */
const PREFILL_KINDS: GraphKind[] = [...SCORING_KINDS, 'prefill', 'prefill_bf16'];

/** `<kind>.onnx`, with `.<variant>` before `.onnx` for each non-default variant the kind depends on. */
export function graphFileName(kind: GraphKind, v: GraphVariants = {}): string {
  const scoring = v.scoring ?? DEFAULT_KVZIP_SCORING;
  const bits = v.bf16Bits ?? DEFAULT_BF16_BITS_ROUTE;
  const parts: string[] = [kind];
  if (SCORING_KINDS.includes(kind) && scoring !== DEFAULT_KVZIP_SCORING) parts.push(scoring);
  if (SCORING_KINDS.includes(kind) && (v.bounds ?? DEFAULT_KVZIP_BOUNDS) !== DEFAULT_KVZIP_BOUNDS) parts.push(`${v.bounds}bounds`);
  if (SCORING_KINDS.includes(kind) && (v.room ?? DEFAULT_KVZIP_ROOM) !== DEFAULT_KVZIP_ROOM) parts.push(`${v.room}room`);
  if (SCORING_KINDS.includes(kind) && (v.passOrder ?? DEFAULT_KVZIP_PASS_ORDER) !== DEFAULT_KVZIP_PASS_ORDER) parts.push(`${v.passOrder}passes`);
  if (PREFILL_KINDS.includes(kind) && (v.prefill ?? DEFAULT_KVZIP_PREFILL) !== DEFAULT_KVZIP_PREFILL) parts.push(`${v.prefill}prefill`);
  if (BF16_KINDS.includes(kind) && bits !== DEFAULT_BF16_BITS_ROUTE) parts.push(bits);
  if (QUANT_KINDS.includes(kind) && v.quantBlock !== undefined) parts.push(`b${v.quantBlock}`);
  if ((v.gqa ?? 'flash') !== 'flash') parts.push(v.gqa!);
  return `${parts.join('.')}.onnx`;
}

export function writeModelGraphs(
  dir: string,
  spec: ModelSpec,
  source: TensorSource,
  dtype: ComputeDType,
  kinds: GraphKind[] = ALL_GRAPHS,
  variants: GraphVariants = {},
): GraphFiles {
  const { scoring, bf16Bits, bounds, room, prefill, passOrder } = variants;
  // int8 codes are made from the store's 16-bit dtype: bf16 for bf16 models, fp16 otherwise (as extract stores them)
  const quant = { block: variants.quantBlock ?? spec.hiddenSize, source: spec.torchDtype === 'bfloat16' ? 'bfloat16' : 'float16' } as const;
  mkdirSync(dir, { recursive: true });
  const weights = new WeightFile(dir, WEIGHT_FILE, dtype);
  const ctx = { spec, dtype, weights, source, gqa: variants.gqa };
  const paths: Partial<Record<GraphKind, string>> = {};
  const metadata = { family: spec.family, dtype, builder: 'fastkvzip' };
  // every reconstructing KVzip kind takes the same variants (the merge of two branches once left the 8-bit kinds without bounds/room)
  const kvzip = { reconstruct: true, scoring, bounds, room, prefill, passOrder } as const;
  const graphs: [GraphKind, () => ReturnType<typeof buildStepGraph>][] = [
    ['step', () => buildStepGraph(ctx, { logits: 'last', captureLayers: [] })],
    ['step_full', () => buildStepGraph(ctx, { logits: 'all', captureLayers: spec.layerKinds.map((_, l) => l), captureQueries: true })],
    ['kvzip', () => buildKvzipGraph(ctx, kvzip)],
    ['kvzip_int8', () => buildKvzipGraph(ctx, { ...kvzip, quant: { ...quant, dtype: 'int8', keep: false } })],
    ['kvzip_int8_keep', () => buildKvzipGraph(ctx, { ...kvzip, quant: { ...quant, dtype: 'int8', keep: true } })],
    ['kvzip_fp8', () => buildKvzipGraph(ctx, { ...kvzip, quant: { ...quant, dtype: 'float8e4m3', keep: false } })],
    ['kvzip_fp8_keep', () => buildKvzipGraph(ctx, { ...kvzip, quant: { ...quant, dtype: 'float8e4m3', keep: true } })],
    ['prefill', () => buildKvzipGraph(ctx, { reconstruct: false, prefill })],
    ['kvzip_bf16', () => buildKvzipGraph(ctx, { ...kvzip, bf16Hidden: true, bf16Bits })],
    ['prefill_bf16', () => buildKvzipGraph(ctx, { reconstruct: false, bf16Hidden: true, bf16Bits, prefill })],
    ['step_masked', () => buildStepGraph(ctx, { logits: 'last', captureLayers: spec.scoredLayers, keepMask: true, snapScores: true })],
    ['step_masked_full', () => buildStepGraph(ctx, { logits: 'all', captureLayers: [], keepMask: true })],
    ['step_compressed', () => buildCompressedGraph(ctx, { logits: 'last', snapScores: true })],
    ['step_compressed_full', () => buildCompressedGraph(ctx, { logits: 'all' })],
    ['step_compressed_decode', () => buildCompressedGraph(ctx, { logits: 'last' })],
    ['step_compressed_block', () => buildDecodeBlockGraph(ctx)],
  ];
  const encoded: [GraphKind, Uint8Array][] = [];
  for (const [kind, build] of graphs) {
    if (!kinds.includes(kind)) continue;
    const opset = BF16_KINDS.includes(kind) && bf16Bits === 'bitcast' ? BITCAST_OPSET : undefined;
    encoded.push([kind, encodeModel(build(), { metadata, opset })]);
  }
  weights.close();
  for (const [kind, bytes] of encoded) {
    const p = path.join(dir, graphFileName(kind, variants));
    writeFileAtomicSync(p, bytes);
    paths[kind] = p;
  }
  return { dir, dtype, paths, weightBytes: weights.bytes };
}

