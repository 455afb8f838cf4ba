// The gate of docs/method.md §3 and its analytic gradient, as ONNX nodes batched over a group of
// layers (every tensor carries a leading layer axis L, so the node count does not grow with
// the number of layers). Used for: a K-step SGD-momentum training Loop (one session.run
// per block of steps, parameters stay on the device inside the run), a loss+gradient graph
// (tests, finite differences), and the exported inference graph.
//
// Gradient derivation (per layer; docs/method.md §4.1):
//   a = x Wqᵀ + c  -> [B,H,G,r];  ρq = sqrt(mean_r a² + ε);  n_q = a/ρq;  q = γq ⊙ n_q
//   u = x Wkᵀ      -> [B,H,r];    ρk, n_k, k = γk ⊙ n_k likewise
//   ℓ = k·q/√r + b [B,H,G];  β_s = k_base_s·q/√r [B,H,G,S];  E_s = exp(β_s − ℓ)
//   p = 1/(1 + Σ_s E_s);  s = mean_g p;  L = Σ_h mean_b BCE(s, y)
//   ∂L/∂s = (s − y) / max(s(1−s), 1e-12) / B          (PyTorch's BCE backward)
//   ∂p/∂ℓ = p(1 − p);   ∂p/∂β_s = −p² E_s
//   ∂ℓ/∂q = k/√r, ∂ℓ/∂k = Σ_g q/√r, ∂ℓ/∂b = 1;  ∂β_s/∂q = k_base_s/√r, ∂β_s/∂k_base_s = q/√r
//   RMSNorm:  ∂γ = Σ dq ⊙ n;   da = (dn − n · mean_r(dn ⊙ n)) / ρ   with dn = dq ⊙ γ
//   Linear:   ∂Wqᵀ = xᵀ da,  ∂c = Σ_b da,  ∂Wkᵀ = xᵀ du
import { Graph, type DType } from '../onnx/builder.js';
import type { GateDims } from './types.js';
import { FP8_E4M3_VALUES } from '../features/quant.js';

export type { GateDims } from './types.js';

/**
 * Training-state layout (fp32, leading layer axis). Projections are stored transposed
 * ([in, out]) for MatMul; src/gate/state.ts converts to and from PyTorch layouts.
 */
export const PARAMS = ['wq', 'c', 'wk', 'gq', 'gk', 'b', 'kb'] as const;
export type ParamName = (typeof PARAMS)[number];

export function paramShape(name: ParamName, d: GateDims): number[] {
  const { L, D, H, G, r, S } = d;
  switch (name) {
    case 'wq': return [L, D, H * G * r];
    case 'c': return [L, 1, H * G * r];
    case 'wk': return [L, D, H * r];
    case 'gq': return [L, 1, 1, 1, r];
    case 'gk': return [L, 1, 1, r];
    case 'b': return [L, H, 1, G];
    case 'kb': return [L, H, S, r];
  }
}

export const RMS_EPS = 1e-6;
export const ACC_THRESHOLD = 0.05;
const BCE_EPS = 1e-12;

type Params = Record<ParamName, string>;

interface Forward {
  /** [L, H, B] gate score per KV head */
  s: string;
  // saved for the backward pass
  x: string;
  nq: string; rhoq: string; q: string; qt: string;
  nk: string; rhok: string; kt: string;
  p: string; E: string;
}

/**
 * Gate forward on x [L, B, D] (any float dtype; matmuls run in `mm`, the rest in fp32).
 * Returns scores [L, H, B] and the intermediates the backward pass needs.
 */
export function gateForward(g: Graph, x: string, P: Params, d: GateDims, mm: DType): Forward {
  const { H, G, r } = d;
  const f32 = (v: number) => g.constant(v, 'float32');
  const invSqrtR = f32(1 / Math.sqrt(r));
  const xm = g.cast(x, mm);
  const proj = (w: string) => g.cast(g.matmul(xm, g.cast(w, mm)), 'float32');
  const rms = (a: string) => g.op('Sqrt', [g.add(g.reduce('ReduceMean', g.mul(a, a), [-1]), f32(RMS_EPS))]);

  const a = g.reshape(g.add(proj(P.wq), P.c), [0, 0, H, G, r]); // [L,B,H,G,r]
  const rhoq = rms(a);
  const nq = g.div(a, rhoq);
  const q = g.mul(nq, P.gq);
  const u = g.reshape(proj(P.wk), [0, 0, H, r]); // [L,B,H,r]
  const rhok = rms(u);
  const nk = g.div(u, rhok);
  const k = g.mul(nk, P.gk);

  const qt = g.transpose(q, [0, 2, 1, 3, 4]); // [L,H,B,G,r]
  const kt = g.transpose(k, [0, 2, 1, 3]); // [L,H,B,r]
  const ell = g.add(g.mul(g.reduce('ReduceSum', g.mul(qt, g.unsqueeze(kt, [3])), [-1], false), invSqrtR), P.b); // [L,H,B,G]
  const qFlat = g.reshape(qt, [0, 0, -1, r]); // [L,H,B*G,r]
  const beta = g.mul(g.matmul(qFlat, g.transpose(P.kb, [0, 1, 3, 2])), invSqrtR); // [L,H,B*G,S]
  const betaT = g.reshape(beta, g.concat([g.shape(qt, 0, 4), g.constant([d.S], 'int64')], 0)); // [L,H,B,G,S]
  const E = g.op('Exp', [g.sub(betaT, g.unsqueeze(ell, [4]))]);
  const p = g.op('Reciprocal', [g.add(f32(1), g.reduce('ReduceSum', E, [-1], false))]); // [L,H,B,G]
  const s = g.reduce('ReduceMean', p, [-1], false); // [L,H,B]
  return { s, x: xm, nq, rhoq, q, qt, nk, rhok, kt, p, E };
}

/** Per-layer BCE loss (sum over heads of the mean over tokens) and 0.05-threshold accuracy. */
export function gateLoss(g: Graph, s: string, y: string): { loss: string; acc: string } {
  const f32 = (v: number) => g.constant(v, 'float32');
  const clampLog = (v: string) => g.op('Max', [g.op('Log', [v]), f32(-100)]); // PyTorch clamps log at -100
  const one = f32(1);
  const bce = g.op('Neg', [g.add(g.mul(y, clampLog(s)), g.mul(g.sub(one, y), clampLog(g.sub(one, s))))]); // [L,H,B]
  const loss = g.reduce('ReduceSum', g.reduce('ReduceMean', bce, [2], false), [1], false); // [L]
  const thr = f32(ACC_THRESHOLD);
  const agree = g.op('Equal', [g.op('GreaterOrEqual', [s, thr]), g.op('GreaterOrEqual', [y, thr])]);
  const acc = g.reduce('ReduceMean', g.cast(agree, 'float32'), [1, 2], false); // [L]
  return { loss, acc };
}

/** Analytic gradients of Σ_layers loss with respect to every parameter. */
export function gateBackward(g: Graph, f: Forward, y: string, P: Params, d: GateDims, mm: DType, batch: string): Params {
  const { H, G, r } = d;
  const f32 = (v: number) => g.constant(v, 'float32');
  const invSqrtR = f32(1 / Math.sqrt(r));
  const one = f32(1);

  // ∂L/∂s [L,H,B]
  const denom = g.op('Max', [g.mul(f.s, g.sub(one, f.s)), f32(BCE_EPS)]);
  const ds = g.div(g.div(g.sub(f.s, y), denom), batch);
  const dp = g.div(g.unsqueeze(ds, [3]), f32(G)); // [L,H,B,G]
  const dell = g.mul(dp, g.mul(f.p, g.sub(one, f.p))); // [L,H,B,G]
  const dbeta = g.op('Neg', [g.mul(g.unsqueeze(g.mul(dp, g.mul(f.p, f.p)), [4]), f.E)]); // [L,H,B,G,S]

  const db = g.reduce('ReduceSum', dell, [2]); // [L,H,1,G]
  const dellU = g.unsqueeze(dell, [4]); // [L,H,B,G,1]
  let dqt = g.mul(g.mul(dellU, g.unsqueeze(f.kt, [3])), invSqrtR); // [L,H,B,G,r]
  const dkt = g.mul(g.reduce('ReduceSum', g.mul(dellU, f.qt), [3], false), invSqrtR); // [L,H,B,r]
  const dbetaFlat = g.reshape(dbeta, [0, 0, -1, d.S]); // [L,H,B*G,S]
  const qFlat = g.reshape(f.qt, [0, 0, -1, r]);
  dqt = g.add(dqt, g.reshape(g.mul(g.matmul(dbetaFlat, P.kb), invSqrtR), g.shape(dqt)));
  const dkb = g.mul(g.matmul(g.transpose(dbetaFlat, [0, 1, 3, 2]), qFlat), invSqrtR); // [L,H,S,r]

  const dq = g.transpose(dqt, [0, 2, 1, 3, 4]); // [L,B,H,G,r]
  const dk = g.transpose(dkt, [0, 2, 1, 3]); // [L,B,H,r]
  const normBack = (dOut: string, n: string, rho: string, gamma: string) => {
    const dn = g.mul(dOut, gamma);
    const da = g.div(g.sub(dn, g.mul(n, g.reduce('ReduceMean', g.mul(dn, n), [-1]))), rho);
    return { da, dGamma: g.mul(dOut, n) };
  };
  const nqb = normBack(dq, f.nq, f.rhoq, P.gq);
  const nkb = normBack(dk, f.nk, f.rhok, P.gk);
  const dgq = g.reduce('ReduceSum', nqb.dGamma, [1, 2, 3]); // [L,1,1,1,r]
  const dgk = g.reduce('ReduceSum', nkb.dGamma, [1, 2]); // [L,1,1,r]
  const da = g.reshape(nqb.da, [0, 0, H * G * r]); // [L,B,HGr]
  const du = g.reshape(nkb.da, [0, 0, H * r]); // [L,B,Hr]
  const xT = g.transpose(f.x, [0, 2, 1]); // [L,D,B]
  const outer = (dy: string) => g.cast(g.matmul(xT, g.cast(dy, mm)), 'float32');
  return {
    wq: outer(da),
    c: g.reduce('ReduceSum', da, [1]),
    wk: outer(du),
    gq: dgq,
    gk: dgk,
    b: db,
    kb: dkb,
  };
}

/** 8-bit stored features (issue 16): codes gathered like 16-bit rows, then fp32(decode(q) · scale). */
export interface Dequant {
  dtype: 'int8' | 'float8e4m3';
  /** channels per scale */
  block: number;
  /** [·, D / block] fp32 scales, row-aligned with the codes */
  scales: RowSource;
}

/** Codes [L, B, D] (int8, or uint8 e4m3fn bits) and scales [L, B, D/block] -> fp32 [L, B, D]. */
export function dequantRows(g: Graph, codes: string, scales: string, dtype: Dequant['dtype'], block: number): string {
  const values = dtype === 'int8' ? g.cast(codes, 'float32') : g.gather(g.constant(FP8_E4M3_VALUES, 'float32', [256], 'fp8_e4m3_values'), g.cast(codes, 'int32'), 0);
  const blocks = g.reshape(values, [0, 0, -1, block]); // [L,B,nb,block]
  return g.reshape(g.mul(blocks, g.unsqueeze(scales, [3])), [0, 0, -1]);
}

export interface TrainGraphOptions {
  dims: GateDims;
  /** dtype of the stored features (the gather source) */
  featureDtype: DType;
  /** 8-bit stored features: how to dequantise the gathered rows */
  dequant?: Dequant;
  /** dtype of the projection matmuls (fp32 on CPU; the features' dtype on GPUs) */
  mm: DType;
  momentum: number;
  /** where the features [L, ·, D] and targets [L, ·, H] come from (added by the caller) */
  features: RowSource;
  targets: RowSource;
}

/**
 * Rows of every layer of the group at token positions `idx` [B] -> [L, B, ·]. Either one
 * stacked initializer [L, N, ·], or per layer a list of pieces (e.g. the store's shards).
 */
export type RowSource = string | { pieces: RowPiece[][] };
export interface RowPiece {
  /** initializer [rows, cols] */
  name: string;
  /** first token position it holds */
  start: number;
  rows: number;
  cols: number;
}

/** ONNX Runtime's CUDA kernels index with int32: keep every tensor the graph builds below 2^31 elements. */
export const MAX_TENSOR_ELEMENTS = 2 ** 31 - 1;

/**
 * Per layer, contiguous runs of pieces are joined (once per run, outside the step loop) into
 * blocks of at most `maxElements`; a gather reads each block and keeps the rows that fall in it.
 * No tensor ever spans layers, so a group's features are held at most twice (pieces + blocks).
 */
export function prepareRows(g: Graph, src: RowSource, maxElements = MAX_TENSOR_ELEMENTS): (b: Graph, idx: string) => string {
  if (typeof src === 'string') return (b, idx) => b.gather(src, idx, 1);
  const perLayer = src.pieces.map((pieces) => {
    const blocks: { name: string; start: number; rows: number }[] = [];
    let run: RowPiece[] = [];
    const flush = () => {
      if (run.length === 0) return;
      const rows = run.reduce((a, p) => a + p.rows, 0);
      blocks.push({ name: run.length === 1 ? run[0]!.name : g.concat(run.map((p) => p.name), 0), start: run[0]!.start, rows });
      run = [];
    };
    for (const p of pieces) {
      if (p.rows * p.cols > maxElements) throw new Error(`${p.name}: ${p.rows} x ${p.cols} exceeds ${maxElements} elements`);
      const rowsSoFar = run.reduce((a, q) => a + q.rows, 0);
      if (run.length && (rowsSoFar + p.rows) * p.cols > maxElements) flush();
      run.push(p);
    }
    flush();
    return blocks;
  });
  return (b, idx) => {
    const layers = perLayer.map((blocks) => {
      if (blocks.length === 1 && blocks[0]!.start === 0) return b.gather(blocks[0]!.name, idx, 0);
      // Each row comes from exactly one block: select it, so the values are the stored ones bit for bit.
      let rows = '';
      for (const blk of blocks) {
        const local = b.sub(idx, b.constant(blk.start, 'int64'));
        const inside = b.op('And', [b.op('GreaterOrEqual', [local, b.constant(0, 'int64')]), b.op('Less', [local, b.constant(blk.rows, 'int64')])]);
        const safe = b.op('Clip', [local, b.constant(0, 'int64'), b.constant(blk.rows - 1, 'int64')]);
        const got = b.gather(blk.name, safe, 0); // [B, cols]
        rows = rows ? b.op('Where', [b.unsqueeze(inside, [1]), got, rows]) : got;
      }
      return rows;
    });
    return layers.length === 1 ? b.unsqueeze(layers[0]!, [0]) : b.concat(layers.map((x) => b.unsqueeze(x, [0])), 0);
  };
}

/**
 * One run = K SGD-momentum steps (a Loop) and then a held-out evaluation.
 * Inputs:  <param>, <param>.buf (fp32), batch_idx [K, B] int64, lr [K] fp32, test_idx [T] int64
 * Outputs: <param>.out, <param>.buf.out, train_loss [K, L], train_acc [K, L],
 *          test_loss [L], test_acc [L], test_scores [L, H, T]
 */
export function buildTrainGraph(g: Graph, o: TrainGraphOptions): void {
  const d = o.dims;
  const params = Object.fromEntries(PARAMS.map((n) => [n, g.input(n, 'float32', paramShape(n, d))])) as Params;
  const bufs = Object.fromEntries(PARAMS.map((n) => [n, g.input(`${n}.buf`, 'float32', paramShape(n, d))])) as Params;
  const batchIdx = g.input('batch_idx', 'int64', ['steps', 'batch']);
  const lr = g.input('lr', 'float32', ['steps']);
  const testIdx = g.input('test_idx', 'int64', ['test']);
  const codeRows = prepareRows(g, o.features);
  const scaleRows = o.dequant ? prepareRows(g, o.dequant.scales) : null;
  const featureRows = (b: Graph, idx: string) => (o.dequant ? dequantRows(b, codeRows(b, idx), scaleRows!(b, idx), o.dequant.dtype, o.dequant.block) : codeRows(b, idx));
  const targetRows = prepareRows(g, o.targets);

  const steps = g.reshape(g.shape(batchIdx, 0, 1), []);
  const carried = [
    ...PARAMS.map((n) => ({ name: n, dtype: 'float32' as const, shape: paramShape(n, d), init: params[n] })),
    ...PARAMS.map((n) => ({ name: `${n}.buf`, dtype: 'float32' as const, shape: paramShape(n, d), init: bufs[n] })),
  ];
  const loop = g.loop('step', steps, carried, (body, i, carriedIn) => {
    const P = Object.fromEntries(PARAMS.map((n, j) => [n, carriedIn[j]!])) as Params;
    const Bf = Object.fromEntries(PARAMS.map((n, j) => [n, carriedIn[PARAMS.length + j]!])) as Params;
    const idx = body.gather(batchIdx, i, 0); // [B]
    const x = featureRows(body, idx); // [L,B,D]
    const y = body.transpose(targetRows(body, idx), [0, 2, 1]); // [L,H,B]
    const batch = body.cast(body.shape(idx, 0, 1), 'float32');
    const f = gateForward(body, x, P, d, o.mm);
    const { loss, acc } = gateLoss(body, f.s, y);
    const grads = gateBackward(body, f, y, P, d, o.mm, batch);
    const step = body.gather(lr, i, 0);
    const mu = body.constant(o.momentum, 'float32');
    const nextBuf = Object.fromEntries(PARAMS.map((n) => [n, body.add(body.mul(mu, Bf[n]), grads[n])])) as Params; // PyTorch SGD: buf = μ·buf + g
    return {
      carried: [...PARAMS.map((n) => body.sub(P[n], body.mul(step, nextBuf[n]))), ...PARAMS.map((n) => nextBuf[n])],
      scans: [
        { value: loss, name: 'loss_scan', dtype: 'float32' },
        { value: acc, name: 'acc_scan', dtype: 'float32' },
      ],
    };
  });
  const outs = [...loop.carried, ...loop.scans];
  PARAMS.forEach((n, j) => g.output(outs[j]!, `${n}.out`, 'float32', paramShape(n, d)));
  PARAMS.forEach((n, j) => g.output(outs[PARAMS.length + j]!, `${n}.buf.out`, 'float32', paramShape(n, d)));
  g.output(outs[PARAMS.length * 2]!, 'train_loss', 'float32', ['steps', d.L]);
  g.output(outs[PARAMS.length * 2 + 1]!, 'train_acc', 'float32', ['steps', d.L]);

  const final = Object.fromEntries(PARAMS.map((n, j) => [n, outs[j]!])) as Params;
  const xt = featureRows(g, testIdx);
  const yt = g.transpose(targetRows(g, testIdx), [0, 2, 1]);
  const ft = gateForward(g, xt, final, d, o.mm);
  const tl = gateLoss(g, ft.s, yt);
  g.output(tl.loss, 'test_loss', 'float32', [d.L]);
  g.output(tl.acc, 'test_acc', 'float32', [d.L]);
  g.output(ft.s, 'test_scores', 'float32', [d.L, d.H, 'test']);
}

/**
 * Loss and gradients for given parameters on given features (no update): inputs <param>,
 * x [L, B, D], y [L, B, H]; outputs loss [L], acc [L], scores [L, H, B], grad.<param>.
 */
export function buildGradGraph(g: Graph, d: GateDims, mm: DType = 'float32'): void {
  const P = Object.fromEntries(PARAMS.map((n) => [n, g.input(n, 'float32', paramShape(n, d))])) as Params;
  const x = g.input('x', 'float32', [d.L, 'batch', d.D]);
  const y = g.transpose(g.input('y', 'float32', [d.L, 'batch', d.H]), [0, 2, 1]);
  const f = gateForward(g, x, P, d, mm);
  const { loss, acc } = gateLoss(g, f.s, y);
  const batch = g.cast(g.shape(x, 1, 2), 'float32');
  const grads = gateBackward(g, f, y, P, d, mm, batch);
  g.output(loss, 'loss', 'float32', [d.L]);
  g.output(acc, 'acc', 'float32', [d.L]);
  g.output(f.s, 'scores', 'float32', [d.L, d.H, 'batch']);
  for (const n of PARAMS) g.output(grads[n], `grad.${n}`, 'float32', paramShape(n, d));
}
