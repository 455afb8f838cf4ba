// Trained gates for evaluation: read --gates (any gates file or folder), check it fits the model, and
// run it as the exported ONNX gate model (attn_input [L, T, D] -> scores [L, H, T]).
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readGates, writeOnnxGate } from '../export/index.js';
import type { GateSet } from '../gate/types.js';
import type { ModelSpec } from '../model/config.js';
import { createSession, ort, type DeviceOptions } from '../runtime/session.js';
import { fileError } from '../util/errors.js';

export async function loadGates(arg: string, spec: ModelSpec): Promise<{ file: string; gates: GateSet }> {
  const { file, gates } = await readGates(arg, { layers: spec.scoredLayers });
  const want = { D: spec.hiddenSize, H: spec.numKvHeads, G: spec.numHeads / spec.numKvHeads };
  if (gates.D !== want.D || gates.H !== want.H || gates.G !== want.G) {
    throw fileError(file, `gates are for D=${gates.D}, H=${gates.H}, G=${gates.G} but the model has D=${want.D}, H=${want.H}, G=${want.G}`);
  }
  if (gates.layers.join(',') !== spec.scoredLayers.join(',')) {
    throw fileError(file, `gates cover layers [${gates.layers}] but the model's scored layers are [${spec.scoredLayers}]`);
  }
  return { file, gates };
}

/** The gates as an ONNX Runtime session (written to `dir`, a fresh temp folder by default). */
export async function gateSession(gates: GateSet, device: DeviceOptions, inputDtype: 'float32' | 'float16', dir?: string): Promise<ort.InferenceSession> {
  const folder = dir ?? mkdtempSync(path.join(os.tmpdir(), 'fastkvzip-eval-gates-'));
  try {
    const model = writeOnnxGate(folder, 'gates', gates, { inputDtype });
    return await createSession(model, device);
  } finally {
    // the session holds the model in memory: the temp folder is ours and goes at once
    if (!dir) rmSync(folder, { recursive: true, force: true });
  }
}
