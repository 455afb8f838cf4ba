// The analytic gradient of the gate graph against central finite differences (float64-free:
// fp32 graph, so we use a relative tolerance and step sizes suited to fp32).
import { describe, it, expect, beforeAll } from 'vitest';
import * as ort from 'onnxruntime-node';
import { Graph, encodeModel } from '../../src/onnx/builder.js';
import { buildGradGraph, PARAMS, paramShape, type GateDims, type ParamName } from '../../src/gate/graph.js';
import { initLayer, stack, type StackedParams } from '../../src/gate/state.js';
import { Rng } from '../../src/util/random.js';

const d: GateDims = { L: 2, D: 12, H: 2, G: 2, r: 4, S: 3 };
const B = 7;

function feeds(P: StackedParams, x: Float32Array, y: Float32Array): Record<string, ort.Tensor> {
  const f: Record<string, ort.Tensor> = {
    x: new ort.Tensor('float32', x, [d.L, B, d.D]),
    y: new ort.Tensor('float32', y, [d.L, B, d.H]),
  };
  for (const n of PARAMS) f[n] = new ort.Tensor('float32', P[n], paramShape(n, d));
  return f;
}

describe('gate gradient', () => {
  let session: ort.InferenceSession;
  let P: StackedParams;
  let x: Float32Array;
  let y: Float32Array;
  beforeAll(async () => {
    const g = new Graph('grad');
    buildGradGraph(g, d);
    session = await ort.InferenceSession.create(encodeModel(g));
    const rng = new Rng(5);
    const layers = [0, 1].map((l) => initLayer(d, 3, l));
    // non-trivial norms, b and sinks so every term of the gradient matters
    for (const p of layers) {
      p['q_norm.weight'].forEach((_, i) => (p['q_norm.weight'][i] = 1 + 0.3 * rng.uniform(-1, 1)));
      p['k_norm.weight'].forEach((_, i) => (p['k_norm.weight'][i] = 1 + 0.3 * rng.uniform(-1, 1)));
      p.b.forEach((_, i) => (p.b[i] = rng.uniform(-1, 1)));
      p['k_base'].forEach((_, i) => (p['k_base'][i] = rng.uniform(-1, 1)));
    }
    P = stack(layers, d);
    x = new Float32Array(d.L * B * d.D).map(() => rng.uniform(-2, 2));
    y = new Float32Array(d.L * B * d.H).map(() => rng.next() ** 3);
  });

  it('matches central finite differences for every parameter', async () => {
    const out = await session.run(feeds(P, x, y));
    const total = async (Q: StackedParams) => {
      const o = await session.run(feeds(Q, x, y), ['loss']);
      return Array.from(o.loss!.data as Float32Array).reduce((a, b) => a + b, 0);
    };
    for (const n of PARAMS as readonly ParamName[]) {
      const grad = out[`grad.${n}`]!.data as Float32Array;
      const rng = new Rng(n.length);
      for (let trial = 0; trial < 6; trial++) {
        const i = rng.int(grad.length);
        const h = 1e-2 * Math.max(1, Math.abs(P[n][i]!));
        const plus = { ...P, [n]: P[n].slice() } as StackedParams;
        const minus = { ...P, [n]: P[n].slice() } as StackedParams;
        plus[n][i]! += h;
        minus[n][i]! -= h;
        const fd = ((await total(plus)) - (await total(minus))) / (2 * h);
        expect(Math.abs(fd - grad[i]!), `${n}[${i}] fd=${fd} analytic=${grad[i]}`).toBeLessThan(2e-3 + 2e-2 * Math.abs(fd));
      }
    }
  });
});
