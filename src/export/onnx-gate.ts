// `export --format onnx`: the gates as an ONNX model for ONNX Runtime serving.
// Input attn_input [L, T, D] (the attention inputs of the gated layers, fp32 or fp16),
// output scores [L, H, T] — the same math as training (src/gate/graph.ts), parameters baked in.
import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { Graph, encodeModel, type DType } from '../onnx/builder.js';
import { gateForward, PARAMS, paramShape, type GateDims } from '../gate/graph.js';
import { stack } from '../gate/state.js';
import type { GateSet } from '../gate/types.js';
import { writeFileAtomicSync } from '../util/atomic.js';
import { validateGateSet } from './gateTensors.js';

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
      metadata: {
        layers: JSON.stringify(gates.layers),
        G: String(gates.G),
        r: String(gates.r),
        S: String(gates.S),
        note: 'Fast KVzip gates: attn_input [L, T, D] = the input-RMSNorm outputs of the gated layers; scores [L, H, T] in (0, 1)',
      },
    }),
  );
  return model;
}

