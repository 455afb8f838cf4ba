// `export --format onnx`: the gates as an ONNX model for ONNX Runtime serving.
// Input attn_input [L, T, D] (the attention inputs of the gated layers, fp32 or fp16),
// output scores [L, H, T] — the same math as training (src/gate/graph.ts), parameters baked in
// (fp32, in `<name>.onnx.data`); the metadata is the gate file's description (src/gate/gate-file.ts),
// so readOnnxGate gives back the gate set.
import { mkdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { onnx as OnnxTypes } from 'onnx-proto';
import { Graph, encodeModel, onnx, type DType } from '../onnx/builder.js';
import { gateForward, PARAMS, paramShape, type GateDims, type ParamName } from '../gate/graph.js';
import { describeGates, parseGateDescription } from '../gate/gate-file.js';
import { stack, unstack, type StackedParams } from '../gate/state.js';
import type { GateSet } from '../gate/types.js';
import { writeFileAtomicSync } from '../util/atomic.js';
import { fileError } from '../util/errors.js';
import { validateGateSet } from '../gate/gate-tensors.js';

const NOTE = 'Fast KVzip gates: attn_input [L, T, D] = the input-RMSNorm outputs of the gated layers; scores [L, H, T] in (0, 1)';

export interface OnnxGateOptions {
  /** input dtype of attn_input (default float32) */
  inputDtype?: 'float32' | 'float16';
}

/** Write `<dir>/<name>.onnx` (+ `<name>.onnx.data` holding the parameters). Returns the model path. */
export function writeOnnxGate(dir: string, name: string, gates: GateSet, o: OnnxGateOptions = {}): string {
  validateGateSet(gates); // the same checks as the .pt and safetensors writers
  mkdirSync(dir, { recursive: true });
  const d: GateDims = { L: gates.layers.length, D: gates.D, H: gates.H, G: gates.G, r: gates.r, S: gates.S };
  const g = new Graph('fastkvzip_gates');
  const inDtype: DType = o.inputDtype ?? 'float32';
  const x = g.input('attn_input', inDtype, [d.L, 'tokens', d.D]);
  const stacked = stack(gates.params, d);
  const dataFile = `${name}.onnx.data`;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  const P = Object.fromEntries(
    PARAMS.map((n) => {
      const bytes = new Uint8Array(stacked[n].buffer, stacked[n].byteOffset, stacked[n].byteLength);
      const pad = (64 - (offset % 64)) % 64;
      if (pad) chunks.push(new Uint8Array(pad));
      offset += pad;
      const init = g.externalInitializer(`gate.${n}`, 'float32', paramShape(n, d), { location: dataFile, offset, length: bytes.length });
      chunks.push(bytes);
      offset += bytes.length;
      return [n, init];
    }),
  ) as Record<(typeof PARAMS)[number], string>;
  const f = gateForward(g, x, P, d, 'float32');
  g.output(f.s, 'scores', 'float32', [d.L, d.H, 'tokens']);
  const data = new Uint8Array(offset);
  let at = 0;
  for (const c of chunks) {
    data.set(c, at);
    at += c.length;
  }
  writeFileAtomicSync(path.join(dir, dataFile), data);
  const model = path.join(dir, `${name}.onnx`);
  writeFileAtomicSync(
    model,
    encodeModel(g, {
      metadata: { ...describeGates(gates), note: NOTE },
    }),
  );
  return model;
}


/** Read a model written by writeOnnxGate back into a gate set (its parameters are fp32 master copies). */
export function readOnnxGate(file: string): GateSet {
  let model: InstanceType<typeof onnx.ModelProto>;
  try {
    model = onnx.ModelProto.decode(readFileSync(file));
  } catch (e) {
    throw fileError(file, `not an ONNX model (${(e as Error).message})`);
  }
  const md = Object.fromEntries((model.metadataProps ?? []).map((p) => [p.key ?? '', p.value ?? '']));
  const { note: _note, ...description } = md;
  const desc = parseGateDescription(file, description);
  const d: GateDims = { L: desc.layers.length, D: desc.D, H: desc.H, G: desc.G, r: desc.r, S: desc.S };
  const inits = new Map((model.graph?.initializer ?? []).map((t) => [t.name ?? '', t]));
  const data = new Map<string, Buffer>();
  const stacked = {} as StackedParams;
  for (const n of PARAMS) {
    stacked[n] = readParam(file, inits.get(`gate.${n}`), n, paramShape(n, d), data);
  }
  return { ...desc, params: unstack(stacked, d) };
}

/** One fp32 parameter, from the external data file the model names beside it. */
function readParam(file: string, t: OnnxTypes.ITensorProto | undefined, n: ParamName, shape: number[], data: Map<string, Buffer>): Float32Array {
  if (!t) throw fileError(file, `no initializer gate.${n}`);
  const dims = (t.dims ?? []).map(Number);
  if (dims.join(',') !== shape.join(',') || t.dataType !== onnx.TensorProto.DataType.FLOAT) throw fileError(file, `initializer gate.${n} is not fp32 [${shape.join(', ')}]`);
  const ext = Object.fromEntries((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  if (!ext.location || path.basename(ext.location) !== ext.location) throw fileError(file, `initializer gate.${n} has no external data file beside the model`);
  const dataFile = path.join(path.dirname(file), ext.location);
  let bytes = data.get(dataFile);
  if (!bytes) {
    try {
      bytes = readFileSync(dataFile);
    } catch {
      throw fileError(dataFile, 'missing or unreadable (the parameters of the ONNX gate model)');
    }
    data.set(dataFile, bytes);
  }
  const offset = Number(ext.offset ?? 0);
  const length = Number(ext.length);
  const want = shape.reduce((a, b) => a * b, 1) * 4;
  if (length !== want || !(offset >= 0) || offset + length > bytes.length) throw fileError(dataFile, `gate.${n} lies outside the file or has ${length} bytes, expected ${want}`);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset + offset, bytes.byteOffset + offset + length));
}
