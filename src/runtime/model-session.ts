// Resolve --model (hub id or folder), open and check it, and create sessions on its graphs.
import { resolveModel } from '../hub/index.js';
import { openModel, type OpenedModel } from '../model/load.js';
import { ensureGraphs, gqaRoute, type GraphFiles, type GraphKind } from '../onnx/index.js';
import { createSession, sessionOptions, type Device, type DeviceOptions, ort } from './session.js';
import type { ComputeDType } from '../onnx/weights.js';
import { cacheIoDtype } from '../onnx/step-graph.js';
import type { DType } from '../onnx/builder.js';
import type { RopeOverride } from '../model/rope-override.js';

export interface LoadedModel {
  model: OpenedModel;
  /** hub id or the folder as given */
  id: string;
  revision: string | null;
  commit: string | null;
  graphs: GraphFiles;
  dtype: ComputeDType;
  cacheDtype: DType;
}

export interface LoadModelOptions {
  revision?: string;
  device: DeviceOptions;
  dtype?: ComputeDType;
  /** graph kinds to build (or a function of the model, when the choice depends on it) */
  kinds: GraphKind[] | ((spec: OpenedModel['spec']) => GraphKind[]);
  requireTokenizer?: boolean;
  /** run the model with this RoPE instead of its config's (part of the graphs' identity) */
  ropeOverride?: RopeOverride | null;
  /** the 8-bit graph kinds' channels per scale (default: the hidden size) */
  quantBlock?: number;
  log?: (line: string) => void;
}

/** Compute dtype for a device: fp32 on CPU; the model's half type on GPUs (GQA has no fp32 CUDA kernel). */
export function defaultComputeDtype(device: Device, modelDtype: string): ComputeDType {
  if (device === 'cpu') return 'float32';
  if (device === 'webgpu') return 'float16';
  return modelDtype === 'bfloat16' ? 'bfloat16' : 'float16';
}

export async function loadModel(idOrDir: string, o: LoadModelOptions): Promise<LoadedModel> {
  sessionOptions(o.device); // a missing execution provider fails here, before any download or build
  const resolved = await resolveModel(idOrDir, { revision: o.revision });
  const model = openModel(resolved.dir, { requireTokenizer: o.requireTokenizer ?? true, ropeOverride: o.ropeOverride });
  const dtype = o.dtype ?? defaultComputeDtype(o.device.device, model.spec.torchDtype);
  const kinds = typeof o.kinds === 'function' ? o.kinds(model.spec) : o.kinds;
  const graphs = ensureGraphs(model, { dtype, kinds, quantBlock: o.quantBlock, gqa: gqaRoute(o.device.device), log: o.log ?? ((l) => process.stderr.write(l + '\n')) });
  return { model, id: resolved.repoId ?? idOrDir, revision: resolved.revision, commit: resolved.commit, graphs, dtype, cacheDtype: cacheIoDtype(dtype) };
}

export async function sessionFor(m: LoadedModel, kind: GraphKind, device: DeviceOptions, extra: Partial<ort.InferenceSession.SessionOptions> = {}): Promise<ort.InferenceSession> {
  const p = m.graphs.paths[kind];
  if (!p) throw new Error(`graph ${kind} was not built`);
  return createSession(p, device, extra);
}
