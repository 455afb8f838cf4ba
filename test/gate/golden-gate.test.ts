// Issue 4 proof: our gate graphs (forward, analytic backward, SGD-momentum Loop) against the
// Python re-implementation of the public gate and optimizer (tools/reference/gate_ref.py).
import { describe, it, expect, beforeAll } from 'vitest';
import * as ort from 'onnxruntime-node';
import { golden, maxAbsDiff, maxAbs } from '../helpers/golden.js';
import { Graph, encodeModel } from '../../src/onnx/builder.js';
import { buildGradGraph, buildTrainGraph, PARAMS, paramShape, type GateDims, type ParamName } from '../../src/gate/graph.js';
import { stack, unstack, zerosLike, type StackedParams } from '../../src/gate/state.js';
import { GATE_STATE_KEYS, type GateLayerParams } from '../../src/gate/types.js';
import { lrMultiplier, splitPositions } from '../../src/gate/schedule.js';

const g = golden('gate');
const m = g.meta;
const d: GateDims = { L: m.layers, D: m.D, H: m.H, G: m.G, r: m.r, S: m.S };
const N = m.N;

function layerParams(prefix: string, l: number): GateLayerParams {
  const t = (n: string) => g.f32(`${prefix}.${l}.${n}`);
  return Object.fromEntries(GATE_STATE_KEYS.map((key) => [key, t(key)])) as GateLayerParams;
}
const paramsOf = (prefix: string) => stack([0, 1].map((l) => layerParams(prefix, l)), d);
const x = g.f32('x'); // [L, N, D]
const yHN = g.f32('y'); // [L, H, N]
const yNH = new Float32Array(yHN.length); // [L, N, H]
for (let l = 0; l < d.L; l++) for (let h = 0; h < d.H; h++) for (let n = 0; n < N; n++) yNH[(l * N + n) * d.H + h] = yHN[(l * d.H + h) * N + n]!;

const tensorFeeds = (P: StackedParams) => Object.fromEntries(PARAMS.map((n) => [n, new ort.Tensor('float32', P[n], paramShape(n, d))]));

describe('gate vs the PyTorch reference', () => {
  let grad: ort.InferenceSession;
  beforeAll(async () => {
    const gg = new Graph('grad');
    buildGradGraph(gg, d);
    grad = await ort.InferenceSession.create(encodeModel(gg));
  });

  it('forward: outputs within 1e-5, loss and accuracy', async () => {
    const out = await grad.run({ ...tensorFeeds(paramsOf('fwd')), x: new ort.Tensor('float32', x, [d.L, N, d.D]), y: new ort.Tensor('float32', yNH, [d.L, N, d.H]) });
    const scores = out.scores!.data as Float32Array; // [L, H, N]
    for (let l = 0; l < d.L; l++) {
      expect(maxAbsDiff(scores.subarray(l * d.H * N, (l + 1) * d.H * N), g.f32(`fwd.${l}.out`))).toBeLessThan(1e-5);
      expect(Math.abs((out.loss!.data as Float32Array)[l]! - g.f32(`fwd.${l}.loss`)[0]!)).toBeLessThan(1e-5);
      expect((out.acc!.data as Float32Array)[l]).toBeCloseTo(g.f32(`fwd.${l}.acc`)[0]!, 6);
    }
  });

  it('gradients at the init match PyTorch autograd', async () => {
    const bp = g.ids('train.batch_positions').slice(0, 32);
    const xb = new Float32Array(d.L * 32 * d.D);
    const yb = new Float32Array(d.L * 32 * d.H);
    for (let l = 0; l < d.L; l++) {
      bp.forEach((p, j) => {
        xb.set(x.subarray((l * N + p) * d.D, (l * N + p + 1) * d.D), (l * 32 + j) * d.D);
        yb.set(yNH.subarray((l * N + p) * d.H, (l * N + p + 1) * d.H), (l * 32 + j) * d.H);
      });
    }
    const out = await grad.run({ ...tensorFeeds(paramsOf('init')), x: new ort.Tensor('float32', xb, [d.L, 32, d.D]), y: new ort.Tensor('float32', yb, [d.L, 32, d.H]) });
    const ours = unstack(Object.fromEntries(PARAMS.map((n) => [n, out[`grad.${n}`]!.data as Float32Array])) as StackedParams, d);
    for (let l = 0; l < d.L; l++) {
      for (const key of GATE_STATE_KEYS) {
        const want = g.f32(`train.grad0.${l}.${key}`);
        expect(maxAbsDiff(ours[l]![key], want), `grad ${key} layer ${l}`).toBeLessThan(1e-5 + 1e-4 * maxAbs(want));
      }
    }
  });

  it('30 SGD-momentum steps: per-step losses within 1e-4 relative, final parameters and held-out metrics', async () => {
    const tg = new Graph('train');
    const features = tg.rawInitializer('features', 'float32', [d.L, N, d.D], new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
    const targets = tg.rawInitializer('targets', 'float32', [d.L, N, d.H], new Uint8Array(yNH.buffer));
    buildTrainGraph(tg, { dims: d, featureDtype: 'float32', mm: 'float32', momentum: 0.9, features, targets });
    const session = await ort.InferenceSession.create(encodeModel(tg));
    const steps = m.train.steps;
    const lr = Float32Array.from({ length: steps }, (_, i) => 0.2 * lrMultiplier(i, steps));
    expect(Array.from(lr)).toEqual(Array.from(g.f32('train.lr')));
    const split = splitPositions(N);
    expect(Array.from(split.test)).toEqual(g.ids('train.test_positions'));
    const feeds: Record<string, ort.Tensor> = {
      batch_idx: new ort.Tensor('int64', BigInt64Array.from(g.ids('train.batch_positions'), BigInt), [steps, m.train.batch]),
      lr: new ort.Tensor('float32', lr, [steps]),
      test_idx: new ort.Tensor('int64', BigInt64Array.from(split.test, (v) => BigInt(v)), [split.test.length]),
    };
    const init = paramsOf('init');
    const zero = zerosLike(d);
    for (const n of PARAMS as readonly ParamName[]) {
      feeds[n] = new ort.Tensor('float32', init[n], paramShape(n, d));
      feeds[`${n}.buf`] = new ort.Tensor('float32', zero[n], paramShape(n, d));
    }
    const out = await session.run(feeds);
    const layerLoss = out.train_loss!.data as Float32Array; // [steps, L]
    const ref = m.train.layer_loss as number[][];
    for (let i = 0; i < steps; i++) {
      for (let l = 0; l < d.L; l++) expect(Math.abs(layerLoss[i * d.L + l]! - ref[i]![l]!) / ref[i]![l]!, `step ${i} layer ${l}`).toBeLessThan(1e-4);
      const acc = (out.train_acc!.data as Float32Array).subarray(i * d.L, (i + 1) * d.L);
      expect(Array.from(acc).map((v) => Math.round(v * 64))).toEqual((m.train.layer_acc as number[][])[i]!.map((v) => Math.round(v * 64)));
    }
    const final = unstack(Object.fromEntries(PARAMS.map((n) => [n, out[`${n}.out`]!.data as Float32Array])) as StackedParams, d);
    for (let l = 0; l < d.L; l++) {
      const want = layerParams('final', l);
      for (const f of Object.keys(want) as (keyof GateLayerParams)[]) expect(maxAbsDiff(final[l]![f], want[f]), `final ${f} layer ${l}`).toBeLessThan(1e-4 + 1e-4 * maxAbs(want[f]));
    }
    const testLoss = out.test_loss!.data as Float32Array;
    m.train.test_loss.forEach((v: number, l: number) => expect(Math.abs(testLoss[l]! - v) / v).toBeLessThan(1e-4));
    expect(Array.from(out.test_acc!.data as Float32Array)).toEqual(m.train.test_acc.map((v: number) => Math.fround(v)));
  });
});
