// In-memory representation of trained Fast KVzip gates (docs/method.md §3). The trainer produces
// it; the exporters (src/export/) write it; export/read-gates.ts reads any gates file back into it.

/** One gated layer; fp32 master copies in PyTorch layouts (row-major, nn.Linear [out, in]). */
export interface GateLayerParams {
  /** [H*G*r, D] */
  qProjWeight: Float32Array;
  /** [H*G*r] */
  qProjBias: Float32Array;
  /** [H*r, D] */
  kProjWeight: Float32Array;
  /** [r] */
  qNormWeight: Float32Array;
  /** [r] */
  kNormWeight: Float32Array;
  /** [H, 1, G] */
  b: Float32Array;
  /** [H, 1, S, r] */
  kBase: Float32Array;
}

/** Sizes of gates: L of them (a gate set, or a training group of layers), input D, H KV heads, group size G, rank r, S sinks. */
export interface GateDims {
  L: number;
  D: number;
  H: number;
  G: number;
  r: number;
  S: number;
}

export type GateModelDtype = 'float32' | 'float16' | 'bfloat16';

/** Per-evaluation, per-layer metrics: each is [numEvals][numLayers]. */
export interface GateMetrics {
  /** held-out loss */
  loss: number[][];
  /** held-out accuracy */
  acc: number[][];
  lossTrain: number[][];
  accTrain: number[][];
}

export interface GateSet {
  /** hidden size (gate input) */
  D: number;
  /** KV heads */
  H: number;
  /** query group size */
  G: number;
  /** gate rank */
  r: number;
  /** gate sinks */
  S: number;
  /** model layer index of each gate (Gemma-3: global layers only) */
  layers: number[];
  params: GateLayerParams[];
  /** dtype of the model; projections and `b` are exported in it */
  modelDtype: GateModelDtype;
  metrics?: GateMetrics;
  /** model id, revision, recipe, ... */
  meta?: Record<string, string>;
}
