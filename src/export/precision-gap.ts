// How much the exported .pt's half-precision projections change the gate scores: the ONNX gate
// keeps the fp32 master parameters, the .pt stores q_proj/k_proj/b in the model dtype (as the
// public code does). Measured on CPU on attention inputs from the feature store the gates were
// trained on, for the model card.
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { readLayer, readManifest } from '../features/index.js';
import type { GateLayerParams, GateSet } from '../gate/types.js';
import { bf16ArrayToF32, f16ArrayToF32, f32ArrayToBf16, f32ArrayToF16 } from '../util/half.js';
import { gateStateDtypes, GATE_STATE_KEYS } from '../gate/gate-tensors.js';
import { writeOnnxGate } from './onnx-gate.js';

/** attention inputs per layer taken for the measurement (the first context's first tokens) */
export const PRECISION_GAP_TOKENS = 512;

export interface PrecisionGap {
  /** the .pt's projection dtype */
  dtype: string;
  tokens: number;
  /** over layers, heads and tokens: max and mean |score_fp32 - score_pt| */
  maxAbs: number;
  meanAbs: number;
  /** share of the fp32 gates' top 30 % (per layer and head) that the rounded gates also rank top 30 % */
  top30Agreement: number;
}

/** Round every tensor the .pt stores in half precision, as writeGatePt does. */
export function roundAsStored(gates: GateSet): GateSet {
  const dtypes = gateStateDtypes(gates.modelDtype);
  const round = (v: Float32Array, dt: string) =>
    dt === 'bfloat16' ? bf16ArrayToF32(f32ArrayToBf16(v)) : dt === 'float16' ? f16ArrayToF32(f32ArrayToF16(v)) : Float32Array.from(v);
  const params = gates.params.map((p) => {
    const q = { ...p } as GateLayerParams;
    for (const key of GATE_STATE_KEYS) q[key] = round(p[key], dtypes[key]);
    return q;
  });
  return { ...gates, params };
}

async function scores(dir: string, name: string, gates: GateSet, x: Float32Array, T: number): Promise<Float32Array> {
  const model = writeOnnxGate(dir, name, gates);
  const session = await ort.InferenceSession.create(model, { executionProviders: ['cpu'], intraOpNumThreads: 1 });
  try {
    const out = await session.run({ attn_input: new ort.Tensor('float32', x, [gates.layers.length, T, gates.D]) });
    return out.scores!.data as Float32Array;
  } finally {
    await session.release();
  }
}

/** The measurement, or null when the gates keep fp32 projections or the store is not there. */
export async function measurePrecisionGap(gates: GateSet, storeDir: string | undefined): Promise<PrecisionGap | null> {
  if (gates.modelDtype === 'float32' || !storeDir) return null;
  let m;
  try {
    m = await readManifest(storeDir);
  } catch {
    return null;
  }
  // measured on 16-bit stores (8-bit stores would add their own quantisation to the gap)
  if (m.shards.length === 0 || m.model.D !== gates.D || (m.hiddenDtype !== 'float16' && m.hiddenDtype !== 'bfloat16')) return null;
  const T = Math.min(PRECISION_GAP_TOKENS, m.shards[0]!.tokens);
  const L = gates.layers.length;
  const x = new Float32Array(L * T * gates.D);
  for (let i = 0; i < L; i++) {
    for await (const chunk of readLayer(storeDir, gates.layers[i]!, { maxTokens: T })) {
      const bits = chunk.hidden.subarray(0, T * gates.D) as Uint16Array;
      x.set(m.hiddenDtype === 'float16' ? f16ArrayToF32(bits) : bf16ArrayToF32(bits), i * T * gates.D);
      break;
    }
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fastkvzip-gap-'));
  try {
    const a = await scores(dir, 'fp32', gates, x, T);
    const b = await scores(dir, 'stored', roundAsStored(gates), x, T);
    let maxAbs = 0;
    let sum = 0;
    for (let i = 0; i < a.length; i++) {
      const d = Math.abs(a[i]! - b[i]!);
      maxAbs = Math.max(maxAbs, d);
      sum += d;
    }
    const k = Math.max(1, Math.round(0.3 * T));
    let agree = 0;
    let rows = 0;
    for (let r = 0; r * T < a.length; r++) {
      const top = (s: Float32Array) => new Set([...s.subarray(r * T, (r + 1) * T).keys()].sort((i, j) => s[r * T + j]! - s[r * T + i]!).slice(0, k));
      const ta = top(a);
      const tb = top(b);
      let n = 0;
      for (const i of ta) if (tb.has(i)) n++;
      agree += n / k;
      rows++;
    }
    return { dtype: gates.modelDtype, tokens: T, maxAbs, meanAbs: sum / a.length, top30Agreement: agree / rows };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
