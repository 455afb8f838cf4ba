// Is a WebGPU adapter here? One tiny session (y = x * [2, 3]) on ONNX Runtime's WebGPU EP, created
// and run once; without an adapter it fails in well under a second ("No supported adapters").
import { ort } from '../../src/runtime/session.js';
import { Graph, encodeModel } from '../../src/onnx/builder.js';

export type WebgpuProbe = { ok: true } | { ok: false; reason: string };

let probe: Promise<WebgpuProbe> | undefined;

export function probeWebgpu(): Promise<WebgpuProbe> {
  probe ??= (async () => {
    const g = new Graph('webgpu_probe');
    const x = g.input('x', 'float32', [2]);
    g.output(g.mul(x, g.constant([2, 3], 'float32')), 'y', 'float32', [2]);
    try {
      const s = await ort.InferenceSession.create(encodeModel(g), { executionProviders: ['webgpu'], logSeverityLevel: 4 });
      const y = Array.from((await s.run({ x: new ort.Tensor('float32', Float32Array.of(1, 2), [2]) })).y!.data as Float32Array);
      await s.release();
      return y[0] === 2 && y[1] === 6 ? { ok: true } : { ok: false, reason: `the probe session computed [${y}] instead of [2, 6]` };
    } catch (e) {
      return { ok: false, reason: `no WebGPU adapter (${(e as Error).message.split('\n')[0]!.replace(/^.*?(Failed to get)/, '$1')})` };
    }
  })();
  return probe;
}
