// src/onnx/host-reads.ts applies ONNX Runtime's CUDA placement rule (GetCpuPreferredNodes) to a
// graph: int64 bound arithmetic stays on the CPU only when seeded from a Shape output and fed by small
// initializers, the graph's own inputs or other such nodes; every other bound the CUDA kernels read
// on the host is one device-to-host copy per execution.
import { describe, it, expect } from 'vitest';
import onnxProto from 'onnx-proto';
import { Graph, encodeModel } from '../../src/onnx/builder.js';
import { hostReads } from '../../src/onnx/host-reads.js';

const reports = (g: Graph) => Object.fromEntries(hostReads(onnxProto.onnx.ModelProto.decode(encodeModel(g)).graph!).map((r) => [r.graph, r]));

describe('hostReads', () => {
  it('a bound from a graph input alone runs on the device; seeded from a Shape output it stays on the host', () => {
    const g = new Graph('main');
    const x = g.input('x', 'float32', ['n', 8]);
    const n = g.input('n', 'int64', []);
    const a = g.sliceVec(x, g.constant([0], 'int64'), g.reshape(n, [1]), [0]); // Reshape of a graph input: not a candidate -> device
    const zero = g.mul(g.shape(x, 0, 1), g.constant([0], 'int64'));
    const b = g.sliceVec(x, g.constant([0], 'int64'), g.add(n, zero), [0]); // seeded by Shape -> CPU
    const c = g.sliceVec(x, g.constant([0], 'int64'), g.reshape(n, [1]), [0]); // a second device bound
    g.output(g.add(g.add(a, b), c), 'y', 'float32');
    const r = reports(g).main!;
    expect(r.deviceToHost).toBe(2);
    expect(r.readers).toEqual({ Slice: 2 });
    expect(r.cpuNodes).toBe(2); // the Mul and the Add
  });

  it('in a Loop body an outer-scope value is never a CPU input; a carried one is, once seeded', () => {
    const g = new Graph('main');
    const x = g.input('x', 'float32', ['n', 8]);
    const lens = g.input('lens', 'int64', ['k']);
    const trips = g.reshape(g.shape(lens, 0, 1), []);
    const loop = g.loop('body', trips, [{ name: 't', dtype: 'int64', shape: ['k'], init: lens }], (b, i, [t]) => {
      const fromOuter = b.gather(lens, i, 0); // outer scope: placed on the device
      const zero = b.mul(b.shape(t!, 0, 1), b.constant([0], 'int64'));
      const fromCarried = b.gather(t!, b.reshape(b.add(i, zero), []), 0); // seeded, carried input: CPU
      const y = b.add(b.slice(x, [0], [fromOuter], [0]), b.slice(x, [0], [fromCarried], [0]));
      return { carried: [b.add(t!, zero)], scans: [{ value: y, name: 'y', dtype: 'float32' }] };
    });
    g.output(loop.scans[0]!, 'ys', 'float32');
    const r = reports(g);
    expect(r.main!.deviceToHost).toBe(0); // the trip count comes from a Shape
    expect(r.body!.deviceToHost).toBe(1);
    expect(r.body!.dynamicHostInputs).toBe(2); // the two Slice ends: one read from the device, one on the host
  });
});
