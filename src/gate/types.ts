// In-memory representation of trained Fast KVzip gates (docs/method.md §3). The trainer produces
// it; the exporters (src/export/) write it; export/read-gates.ts reads any gates file back into it.

/** State-dict keys of one gate layer, in the order we write them: the one name of each gate tensor. */
export const GATE_STATE_KEYS = ['q_proj.weight', 'q_proj.bias', 'k_proj.weight', 'q_norm.weight', 'k_norm.weight', 'b', 'k_base'] as const;
export type GateStateKey = (typeof GATE_STATE_KEYS)[number];

/**
 * One gated layer by state-dict key; fp32 master copies in PyTorch layouts (row-major,
 * nn.Linear [out, in]): q_proj.weight [H*G*r, D], q_proj.bias [H*G*r], k_proj.weight [H*r, D],
 * q_norm.weight [r], k_norm.weight [r], b [H, 1, G], k_base [H, 1, S, r].
 */
export type GateLayerParams = Record<GateStateKey, Float32Array>;

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
