// Write a model's ONNX graphs and their shared weight file into one folder.
import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { encodeModel } from './builder.js';
import { WeightFile, type ComputeDType, type TensorSource } from './weights.js';
import { buildStepGraph } from './step-graph.js';
import { buildKvzipGraph } from './kvzip-graph.js';
import { buildCompressedGraph } from './compressed-graph.js';
import type { ModelSpec } from '../model/config.js';
import { writeFileAtomicSync } from '../util/atomic.js';

/**
 * step: generation (last-token logits); step_full: all logits + every layer's attention input;
 * kvzip: context scoring in one run; prefill: its chunked prefill with capture only (benchmarks);
 * step_masked: eviction evaluation (per-head keep masks, last-token logits, scored layers' attention
 * inputs and SnapKV window attention); step_masked_full: the same masks with logits at every position;
 * step_compressed / step_compressed_full: a compacted cache with per-layer, per-head lengths (compressed
 * generation and `eval --cache compressed`), last-token logits + scored layers' attention inputs / all logits;
 * step_compressed_decode: step_compressed for one token at a time (decoding), all heads in one attention node
 */
export type GraphKind =
  | 'step'
  | 'step_full'
  | 'kvzip'
  | 'kvzip_bf16'
  | 'prefill'
  | 'prefill_bf16'
  | 'step_masked'
  | 'step_masked_full'
  | 'step_compressed'
  | 'step_compressed_full'
  | 'step_compressed_decode';
export const ALL_GRAPHS: GraphKind[] = ['step', 'step_full', 'kvzip'];

export interface GraphFiles {
  dir: string;
  dtype: ComputeDType;
  paths: Partial<Record<GraphKind, string>>;
  weightBytes: number;
}

export const WEIGHT_FILE = 'weights.bin';

export function writeModelGraphs(dir: string, spec: ModelSpec, source: TensorSource, dtype: ComputeDType, kinds: GraphKind[] = ALL_GRAPHS): GraphFiles {
  mkdirSync(dir, { recursive: true });
  const weights = new WeightFile(dir, WEIGHT_FILE, dtype);
  const ctx = { spec, dtype, weights, source };
  const paths: Partial<Record<GraphKind, string>> = {};
  const metadata = { family: spec.family, dtype, builder: 'fastkvzip' };
  const graphs: [GraphKind, () => ReturnType<typeof buildStepGraph>][] = [
    ['step', () => buildStepGraph(ctx, { logits: 'last', captureLayers: [] })],
    ['step_full', () => buildStepGraph(ctx, { logits: 'all', captureLayers: spec.layerKinds.map((_, l) => l), captureQueries: true })],
    ['kvzip', () => buildKvzipGraph(ctx)],
    ['prefill', () => buildKvzipGraph(ctx, { reconstruct: false })],
    ['kvzip_bf16', () => buildKvzipGraph(ctx, { reconstruct: true, bf16Hidden: true })],
    ['prefill_bf16', () => buildKvzipGraph(ctx, { reconstruct: false, bf16Hidden: true })],
    ['step_masked', () => buildStepGraph(ctx, { logits: 'last', captureLayers: spec.scoredLayers, keepMask: true, snapScores: true })],
    ['step_masked_full', () => buildStepGraph(ctx, { logits: 'all', captureLayers: [], keepMask: true })],
    ['step_compressed', () => buildCompressedGraph(ctx, { logits: 'last', snapScores: true })],
    ['step_compressed_full', () => buildCompressedGraph(ctx, { logits: 'all' })],
    ['step_compressed_decode', () => buildCompressedGraph(ctx, { logits: 'last', singleToken: true })],
  ];
  const encoded: [GraphKind, Uint8Array][] = [];
  for (const [kind, build] of graphs) {
    if (!kinds.includes(kind)) continue;
    encoded.push([kind, encodeModel(build(), { metadata })]);
  }
  weights.close();
  for (const [kind, bytes] of encoded) {
    const p = path.join(dir, `${kind}.onnx`);
    writeFileAtomicSync(p, bytes);
    paths[kind] = p;
  }
  return { dir, dtype, paths, weightBytes: weights.bytes };
}

