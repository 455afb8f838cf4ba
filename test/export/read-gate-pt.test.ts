// readGatePt on files that PyTorch itself wrote: the public layout (state dicts with
// _metadata, own parameters first, numpy metrics) and harder cases (views with offsets and
// strides, nn.Parameter entries, pickle protocol 4, Fortran-order and float32 metrics).
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readGatePt } from '../../src/export/read-gate-pt.js';
import { writeGatePt } from '../../src/export/write-gate-pt.js';
import { GATE_STATE_KEYS, gateStateShapes, numel } from '../../src/gate/gate-tensors.js';
import type { GateSet } from '../../src/gate/types.js';
import { runPython, tempDir, torchPython } from './helpers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const { dir, cleanup } = tempDir('pt-public');
afterAll(cleanup);

/** Compare every tensor of `gates` with the fp32 dump Python wrote (GATE_STATE_KEYS order). */
function expectValuesFromDump(gates: GateSet, dumpFile: string): void {
  const raw = readFileSync(dumpFile);
  const all = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const shapes = gateStateShapes(gates);
  let at = 0;
  gates.params.forEach((p, i) => {
    for (const key of GATE_STATE_KEYS) {
      const n = numel(shapes[key]);
      expect(p[key], `${i} ${key}`).toEqual(all.slice(at, at + n));
      at += n;
    }
  });
  expect(at).toBe(all.length);
}

describe('readGatePt on torch 2.11 / numpy 2 files (fixtures)', () => {
  const fixtures = path.join(here, 'fixtures');
  const info = JSON.parse(readFileSync(path.join(fixtures, 'torch211-info.json'), 'utf8'));

  it('reads the public layout', async () => {
    const pub = await readGatePt(path.join(fixtures, 'torch211-public.pt'));
    expect({ D: pub.D, H: pub.H, G: pub.G, r: pub.r, S: pub.S, dtype: pub.modelDtype }).toEqual({ D: 24, H: 2, G: 3, r: 4, S: 5, dtype: 'bfloat16' });
    expectValuesFromDump(pub, path.join(fixtures, 'torch211-public.f32'));
    expect(pub.metrics!.lossTrain).toEqual(info.public.metrics.loss_train);
    expect(pub.metrics!.acc).toEqual(info.public.metrics.acc);
  });

  it('reads views, parameters, protocol 4 and Fortran-order metrics', async () => {
    const views = await readGatePt(path.join(fixtures, 'torch211-views.pt'));
    expectValuesFromDump(views, path.join(fixtures, 'torch211-views.f32'));
    expect(views.metrics!.loss).toEqual(info.views.metrics.loss);
    expect(views.metrics!.acc).toEqual(info.views.metrics.acc);
  });
});

describe.skipIf(!torchPython.ok)(`readGatePt on torch.save files (${torchPython.reason})`, () => {
  it('reads the public layout and the harder cases exactly', async () => {
    const script = readFileSync(path.join(here, 'make_public_pt.py'), 'utf8');
    const info = runPython(dir, 'make_public_pt.py', script, [dir]);
    expect(info.public.keys[0]).toBe('k_base'); // the public order differs from ours; the reader must not care

    const pub = await readGatePt(path.join(dir, 'public.pt'), { layers: [0, 1, 2], meta: { modelId: 'x/y' } });
    expect({ D: pub.D, H: pub.H, G: pub.G, r: pub.r, S: pub.S, dtype: pub.modelDtype }).toEqual({ D: 24, H: 2, G: 3, r: 4, S: 5, dtype: 'bfloat16' });
    expect(pub.meta).toEqual({ modelId: 'x/y' });
    expectValuesFromDump(pub, path.join(dir, 'public.f32'));
    expect(pub.metrics).toEqual({
      loss: info.public.metrics.loss,
      acc: info.public.metrics.acc,
      lossTrain: info.public.metrics.loss_train,
      accTrain: info.public.metrics.acc_train,
    });

    const views = await readGatePt(path.join(dir, 'views.pt'));
    expect({ D: views.D, H: views.H, G: views.G, r: views.r, S: views.S, dtype: views.modelDtype }).toEqual({ D: 8, H: 2, G: 2, r: 2, S: 3, dtype: 'float32' });
    expectValuesFromDump(views, path.join(dir, 'views.f32'));
    expect(views.metrics!.acc.length).toBe(2);
    expect(views.metrics!.loss).toEqual(info.views.metrics.loss);
    expect(views.metrics!.acc).toEqual(info.views.metrics.acc);

    // what we read from a public file re-exports to a file with the same content
    const again = path.join(dir, 'again', 'public.pt');
    await writeGatePt(again, pub);
    const back = await readGatePt(again, { layers: [0, 1, 2], meta: { modelId: 'x/y' } });
    expect(back).toEqual(pub);
  });
});
