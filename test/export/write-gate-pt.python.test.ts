// Files from writeGatePt, checked by the local PyTorch: types, keys, shapes, dtypes and
// values (torch's own fp32 -> bf16 cast is the oracle), metric arrays, weights_only
// behaviour, and load_state_dict into the public gate module.
import { afterAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeGatePt, type WriteGatePtOptions } from '../../src/export/write-gate-pt.js';
import { gateLayerTensors } from '../../src/gate/gate-tensors.js';
import type { GateSet } from '../../src/gate/types.js';
import { dumpF32, makeGateSet, runPython, tempDir, torchPython } from './helpers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const { dir, cleanup } = tempDir('pt-python');
afterAll(cleanup);

interface Case {
  name: string;
  gates: GateSet;
  options?: WriteGatePtOptions;
}

const cases: Case[] = [
  { name: 'bf16', gates: makeGateSet({ D: 24, H: 2, G: 3, r: 4, S: 5, layers: [0, 1, 2], modelDtype: 'bfloat16', seed: 7 }) },
  { name: 'fp32', gates: makeGateSet({ D: 8, H: 1, G: 2, r: 4, S: 2, layers: [0, 1], modelDtype: 'float32', seed: 8 }) },
  { name: 'fp16-no-metrics', gates: makeGateSet({ D: 8, H: 2, G: 1, r: 2, S: 3, layers: [0], modelDtype: 'float16', seed: 9, metrics: false }) },
  {
    name: 'tensor-metrics-zip64',
    gates: makeGateSet({ D: 16, H: 2, G: 2, r: 4, S: 4, layers: [0, 1], modelDtype: 'bfloat16', seed: 10 }),
    options: { metricsAs: 'tensor', forceZip64: 'end-records' },
  },
  {
    name: 'padded-gemma-like',
    gates: makeGateSet({ D: 16, H: 1, G: 2, r: 4, S: 4, layers: [1, 4], modelDtype: 'bfloat16', seed: 11 }),
    options: { modelLayerCount: 6 },
  },
];

describe.skipIf(!torchPython.ok)(`writeGatePt under PyTorch (${torchPython.reason})`, () => {
  it('loads with torch.load and matches keys, shapes, dtypes, values and the public module', async () => {
    const specs = [];
    for (const c of cases) {
      const file = path.join(dir, c.name, 'q_dim_sink.pt');
      await writeGatePt(file, c.gates, c.options);
      const raw = path.join(dir, `${c.name}.f32`);
      dumpF32(raw, c.gates.layers.flatMap((_, pos) => gateLayerTensors(c.gates, pos).map((t) => t.values)));
      const count = c.options?.modelLayerCount;
      const slots = count === undefined ? c.gates.layers.map((_, i) => i) : Array.from({ length: count }, (_, l) => c.gates.layers.indexOf(l));
      const g = c.gates;
      // padded files: metric columns of placeholder layers are NaN
      const metrics = g.metrics && {
        loss: g.metrics.loss.map((row) => slots.map((p) => (p < 0 ? NaN : row[p]))),
        acc: g.metrics.acc.map((row) => slots.map((p) => (p < 0 ? NaN : row[p]))),
        lossTrain: g.metrics.lossTrain.map((row) => slots.map((p) => (p < 0 ? NaN : row[p]))),
        accTrain: g.metrics.accTrain.map((row) => slots.map((p) => (p < 0 ? NaN : row[p]))),
      };
      specs.push({
        path: file,
        raw,
        dims: { D: g.D, H: g.H, G: g.G, r: g.r, S: g.S },
        dtype: g.modelDtype,
        metrics: metrics ?? null,
        metricsAs: c.options?.metricsAs ?? 'numpy',
        slots,
      });
    }
    // JSON has no NaN: Python's json module reads the NaN token
    const specFile = path.join(dir, 'cases.json');
    writeFileSync(specFile, JSON.stringify(specs, (_, v) => (typeof v === 'number' && Number.isNaN(v) ? '__NaN__' : v)).replaceAll('"__NaN__"', 'NaN'));
    const script = (await import('node:fs')).readFileSync(path.join(here, 'verify_pt.py'), 'utf8');
    const results = runPython(dir, 'verify_pt.py', script, [specFile]) as any[];

    results.forEach((res, i) => {
      const c = cases[i]!;
      expect(res.problems, c.name).toEqual([]);
      expect(res.top_type).toBe('dict');
      expect(res.top_keys).toEqual(['module', 'loss', 'acc', 'loss_train', 'acc_train']);
      expect(res.module_type).toBe('list');
      expect(res.n_modules).toBe(c.options?.modelLayerCount ?? c.gates.layers.length);
    });
    // numpy metric arrays need weights_only=False (as the public files do); tensor metrics load either way
    expect(results[0].weights_only).toMatch(/^error: .*numpy/i);
    expect(results[3].weights_only).toBe('ok');
  });
});
