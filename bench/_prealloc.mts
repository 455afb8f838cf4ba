import * as ort from 'onnxruntime-node';
import { Graph, encodeModel } from '../src/onnx/builder.js';
const N = 1 << 28, D = 4096;
const g = new Graph('big');
const x = g.input('x', 'uint16', ['R', D]);
g.node('Identity', [x], {}, { outputs: ['y'] });
g.output('y', 'y', 'uint16', ['R', D]);
const s = await ort.InferenceSession.create(encodeModel(g));
const xin = new Uint16Array(N).fill(3);
const buf = new Uint16Array(N).fill(1);
for (let rep = 0; rep < 3; rep++) {
  const f0 = process.resourceUsage().minorPageFault;
  const t = performance.now();
  await s.run({ x: new ort.Tensor('uint16', xin, [N / D, D]) }, { y: new ort.Tensor('uint16', buf, [N / D, D]) });
  console.log('identity prealloc', ((performance.now() - t) / 1000).toFixed(3), 's, minor faults', process.resourceUsage().minorPageFault - f0, '(512 MB = 131072 pages)');
}
