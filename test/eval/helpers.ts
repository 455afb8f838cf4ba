// Shared pieces of the eval tests: fixture models with their masked graphs in a temp cache,
// and random gates shaped for a model.
import { mkdtempSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openModel, type OpenedModel } from '../../src/model/load.js';
import { ensureGraphs, type GraphFiles } from '../../src/onnx/index.js';
import { createSession, ort } from '../../src/runtime/session.js';
import type { GateSet } from '../../src/gate/types.js';
import type { ModelSpec } from '../../src/model/config.js';
import { Rng } from '../../src/util/random.js';

export interface EvalModel {
  model: OpenedModel;
  graphs: GraphFiles;
  step: ort.InferenceSession;
  stepFull: ort.InferenceSession;
  masked: ort.InferenceSession;
  maskedFull: ort.InferenceSession;
  kvzip: ort.InferenceSession;
}

export async function openEvalModel(dir: string): Promise<EvalModel> {
  const model = openModel(dir);
  const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'fkz-eval-graphs-'));
  const graphs = ensureGraphs(model, { dtype: 'float32', kinds: ['step_full', 'step_masked', 'step_masked_full', 'kvzip'], cacheDir });
  const open = (k: keyof GraphFiles['paths']) => createSession(graphs.paths[k]!, { device: 'cpu' });
  return { model, graphs, stepFull: await open('step_full'), step: await open('step_full'), masked: await open('step_masked'), maskedFull: await open('step_masked_full'), kvzip: await open('kvzip') };
}

export function randomGates(spec: ModelSpec, seed = 5): GateSet {
  const rng = new Rng(seed);
  const H = spec.numKvHeads;
  const G = spec.numHeads / H;
  const D = spec.hiddenSize;
  const r = 8;
  const S = 4;
  const u = (n: number, scale: number) => Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale);
  return {
    D,
    H,
    G,
    r,
    S,
    layers: spec.scoredLayers,
    modelDtype: 'float32',
    params: spec.scoredLayers.map(() => ({
      'q_proj.weight': u(H * G * r * D, 1 / Math.sqrt(D)),
      'q_proj.bias': u(H * G * r, 0.1),
      'k_proj.weight': u(H * r * D, 1 / Math.sqrt(D)),
      'q_norm.weight': new Float32Array(r).fill(1),
      'k_norm.weight': new Float32Array(r).fill(1),
      b: u(H * G, 0.5),
      k_base: u(H * S * r, 0.5),
    })),
  };
}
