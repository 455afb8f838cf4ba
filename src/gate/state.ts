// Training state of a group of gate layers: stacked fp32 parameters in the graph's layout
// (src/gate/graph.ts), their momentum buffers, initialisation, and conversion to and from the
// PyTorch layouts of GateSet (src/gate/types.ts).
import { PARAMS, paramShape, type GateDims, type ParamName } from './graph.js';
import type { GateLayerParams } from './types.js';
import { Rng } from '../util/random.js';

export type StackedParams = Record<ParamName, Float32Array>;

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

export function zerosLike(d: GateDims): StackedParams {
  return Object.fromEntries(PARAMS.map((n) => [n, new Float32Array(size(paramShape(n, d)))])) as StackedParams;
}

/**
 * The public initialisation (docs/method.md §4): nn.Linear default init — weight and bias uniform in
 * ±1/√D — for q_proj and k_proj, ones for the norms, zeros for b and k_base. Seeded per layer
 * so a layer's init does not depend on which group it is trained in.
 */
export function initLayer(d: Omit<GateDims, 'L'>, seed: number, layer: number): GateLayerParams {
  const { D, H, G, r, S } = d;
  const rng = new Rng((seed * 1_000_003 + layer * 7919 + 17) >>> 0);
  const bound = 1 / Math.sqrt(D);
  const uni = (n: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = rng.uniform(-bound, bound);
    return a;
  };
  return {
    'q_proj.weight': uni(H * G * r * D),
    'q_proj.bias': uni(H * G * r),
    'k_proj.weight': uni(H * r * D),
    'q_norm.weight': new Float32Array(r).fill(1),
    'k_norm.weight': new Float32Array(r).fill(1),
    b: new Float32Array(H * G),
    k_base: new Float32Array(H * S * r),
  };
}

/** PyTorch-layout layers -> stacked graph layout. */
export function stack(layers: GateLayerParams[], d: GateDims): StackedParams {
  const out = zerosLike(d);
  const { D, H, G, r } = d;
  const qOut = H * G * r;
  const kOut = H * r;
  layers.forEach((p, l) => {
    // nn.Linear weight [out, D] -> [D, out]
    for (let o = 0; o < qOut; o++) for (let i = 0; i < D; i++) out.wq[l * D * qOut + i * qOut + o] = p['q_proj.weight'][o * D + i]!;
    for (let o = 0; o < kOut; o++) for (let i = 0; i < D; i++) out.wk[l * D * kOut + i * kOut + o] = p['k_proj.weight'][o * D + i]!;
    out.c.set(p['q_proj.bias'], l * qOut);
    out.gq.set(p['q_norm.weight'], l * r);
    out.gk.set(p['k_norm.weight'], l * r);
    out.b.set(p.b, l * H * G); // [H,1,G] == [H,G]
    out.kb.set(p['k_base'], l * H * d.S * r); // [H,1,S,r] == [H,S,r]
  });
  return out;
}

/** Stacked graph layout -> PyTorch-layout layers. */
export function unstack(s: StackedParams, d: GateDims): GateLayerParams[] {
  const { L, D, H, G, r, S } = d;
  const qOut = H * G * r;
  const kOut = H * r;
  return Array.from({ length: L }, (_, l) => {
    const qProjWeight = new Float32Array(qOut * D);
    const kProjWeight = new Float32Array(kOut * D);
    for (let i = 0; i < D; i++) {
      for (let o = 0; o < qOut; o++) qProjWeight[o * D + i] = s.wq[l * D * qOut + i * qOut + o]!;
      for (let o = 0; o < kOut; o++) kProjWeight[o * D + i] = s.wk[l * D * kOut + i * kOut + o]!;
    }
    return {
      'q_proj.weight': qProjWeight,
      'q_proj.bias': s.c.slice(l * qOut, (l + 1) * qOut),
      'k_proj.weight': kProjWeight,
      'q_norm.weight': s.gq.slice(l * r, (l + 1) * r),
      'k_norm.weight': s.gk.slice(l * r, (l + 1) * r),
      b: s.b.slice(l * H * G, (l + 1) * H * G),
      k_base: s.kb.slice(l * H * S * r, (l + 1) * H * S * r),
    };
  });
}
