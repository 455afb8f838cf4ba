// The "step_compressed_block" graph: up to `steps` greedy decode steps over the compressed cache
// (src/onnx/compressed-graph.ts) in one ONNX Loop, so the cache crosses to the device once per
// block instead of once per token (onnxruntime-node gives no way to keep a CUDA tensor on the
// device between runs: outputs always come back to host memory). Eviction happens only between
// blocks: the gates score the block's buffered attention inputs every 128 tokens (the method's
// decode cadence), so inside a block the cache only grows.
//
// Inputs:  input_ids [1, 1] int64 (the first token to feed), position int64 scalar (its position),
//          steps int64 scalar (at most this many tokens are fed), stop_ids [S] int64 (S >= 1; the
//          block stops after emitting one), past_key.<l>.<h> / past_value.<l>.<h> [1, 1, n, d] and
//          keep.<l>.<h> [n'] int32: the slots still held (the last eviction round's drops are
//          gathered out here, on the device, instead of copying the cache on the host).
// Outputs: tokens [k] int64 (the greedy token after each fed one; k <= steps, the last may be a
//          stop id), present_key.<l>.<h> / present_value.<l>.<h> [1, 1, n + k, d] (the k fed
//          tokens' entries appended), attn_input.<l> [k, D] of the scored layers (the gates' input).
//          n' + k entries: the held ones, then the fed tokens'.
//
// Every head's buffer gets `steps` empty slots once, before the Loop; the Loop carries the
// buffers and writes token i's entries at slot n + i (GQA's seqlens_k), so nothing grows or is
// copied per step beyond what attention itself does.
import { Graph } from './builder.js';
import { makeEmbedding, makeLayer, makeLmHead, type DecoderContext, type ForwardInputs, type HeadCache } from './decoder.js';
import { cacheIoDtype, attnInputIoDtype } from './step-graph.js';
import type { LoopCarry } from './builder.js';

export function buildDecodeBlockGraph(ctx: DecoderContext): Graph {
  const { spec, dtype } = ctx;
  const g = new Graph('fastkvzip_step_compressed_block');
  const ioDtype = cacheIoDtype(dtype);
  const hd = attnInputIoDtype(dtype);
  const H = spec.numKvHeads;
  const d = spec.headDim;
  const toCompute = (b: Graph, x: string) => (ioDtype === dtype ? x : b.cast(x, dtype));
  const toIo = (x: string) => (ioDtype === dtype ? x : g.cast(x, ioDtype));

  const first = g.input('input_ids', 'int64', [1, 1]);
  const position = g.input('position', 'int64', []);
  const steps = g.input('steps', 'int64', []);
  const stopIds = g.input('stop_ids', 'int64', ['stops']);
  const room = g.op('Expand', [g.cast(g.constant(0, 'float32'), dtype), g.concat([g.constant([1, 1], 'int64'), g.reshape(steps, [1]), g.constant([d], 'int64')], 0)]);
  const carried: LoopCarry[] = [{ name: 'token', dtype: 'int64', shape: [1, 1], init: first }];
  // per (layer, head), flattened l·H + h: valid entries before the block, and the buffer with room
  const lens: string[] = [];
  const totals: string[] = [];
  for (let l = 0; l < spec.numLayers; l++) {
    for (let h = 0; h < H; h++) {
      const keep = g.input(`keep.${l}.${h}`, 'int32', [`held_${l}_${h}`]);
      const held = (x: string) => toCompute(g, g.gather(x, keep, 2));
      const key = held(g.input(`past_key.${l}.${h}`, ioDtype, [1, 1, `past_${l}_${h}`, d]));
      const value = held(g.input(`past_value.${l}.${h}`, ioDtype, [1, 1, `past_${l}_${h}`, d]));
      const withRoom = { key: g.concat([key, room], 2), value: g.concat([value, room], 2) };
      lens.push(g.cast(g.shape(key, 2, 3), 'int32'));
      totals.push(g.reshape(g.cast(g.shape(withRoom.key, 2, 3), 'int32'), []));
      carried.push({ name: `k.${l}.${h}`, dtype, shape: [1, 1, `room_${l}_${h}`, d], init: withRoom.key });
      carried.push({ name: `v.${l}.${h}`, dtype, shape: [1, 1, `room_${l}_${h}`, d], init: withRoom.value });
    }
  }
  const allLens = g.concat(lens, 0); // [L·H] int32

  const loop = g.loop('decode', steps, carried, (b, i, carriedIn) => {
    const [token, ...buffers] = carriedIn as [string, ...string[]];
    const positions = b.reshape(b.add(position, i), [1, 1]);
    // token i goes to slot lens + i of every head: GQA's seqlens_k (one Add and one Split for all heads)
    const seqlens = b.add(allLens, b.cast(i, 'int32'));
    const seqlensK = spec.numLayers * H === 1 ? [seqlens] : b.node('Split', [seqlens], { axis: 0, num_outputs: spec.numLayers * H }, { outputs: spec.numLayers * H });
    // the shared lengths are unused (every head's attention has its own), but ForwardInputs carries them
    const zero = b.constant(0, 'int32');
    const fwd: ForwardInputs = { positions, seqlensK: zero, totalLength: zero, rope: new Map() };
    let h = makeEmbedding(b, ctx, token);
    const next: string[] = [];
    const scans = [];
    for (let l = 0; l < spec.numLayers; l++) {
      const heads: HeadCache[] = Array.from({ length: H }, (_, k) => ({
        key: buffers[2 * (l * H + k)]!,
        value: buffers[2 * (l * H + k) + 1]!,
        room: { seqlensK: seqlensK[l * H + k]!, total: totals[l * H + k]! },
      }));
      const out = makeLayer(b, ctx, l, h, fwd, { heads });
      h = out.hidden;
      for (const p of out.heads!) next.push(p.key, p.value);
      if (spec.scoredLayers.includes(l)) {
        const x = b.reshape(out.attnInput, [1, spec.hiddenSize]);
        scans.push({ value: hd === dtype ? x : b.cast(x, hd), name: `attn_input_scan.${l}`, dtype: hd, shape: [1, spec.hiddenSize] });
      }
    }
    const logits = makeLmHead(b, ctx, h); // [1, 1, V]
    const tok = b.op('ArgMax', [logits], { axis: -1, keepdims: 0 }); // [1, 1]; ties: the first index, as argmax() on the host
    const stopped = b.op('ReduceMax', [b.cast(b.op('Equal', [tok, stopIds]), 'int32')], { keepdims: 0 });
    const cond = b.op('Equal', [stopped, b.constant(0, 'int32')]);
    scans.unshift({ value: b.reshape(tok, [1]), name: 'token_scan', dtype: 'int64' as const, shape: [1] });
    return { carried: [tok, ...next], scans, cond };
  });

  const tokens = g.reshape(loop.scans[0]!, [-1]); // [k]
  g.output(tokens, 'tokens', 'int64', ['k']);
  const k = g.cast(g.shape(tokens, 0, 1), 'int32');
  for (let l = 0; l < spec.numLayers; l++) {
    for (let h = 0; h < H; h++) {
      const end = g.cast(g.add(lens[l * H + h]!, k), 'int64');
      const cut = (x: string) => toIo(g.slice(x, [0], [end], [2]));
      g.output(cut(loop.carried[1 + 2 * (l * H + h)]!), `present_key.${l}.${h}`, ioDtype, [1, 1, `total_${l}_${h}`, d]);
      g.output(cut(loop.carried[2 + 2 * (l * H + h)]!), `present_value.${l}.${h}`, ioDtype, [1, 1, `total_${l}_${h}`, d]);
    }
  }
  spec.scoredLayers.forEach((l, s) => g.output(g.reshape(loop.scans[1 + s]!, [-1, spec.hiddenSize]), `attn_input.${l}`, hd, ['k', spec.hiddenSize]));
  ctx.weights.register(g);
  return g;
}
