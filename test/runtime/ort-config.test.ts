// FASTKVZIP_ORT_CONFIG passes ONNX Runtime session config entries through the Node binding's
// `extra` (the only memory lever it offers for the CUDA EP, whose provider options it ignores).
import { describe, it, expect, afterEach } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Graph, encodeModel } from '../../src/onnx/builder.js';
import { createSession, ortConfigEntries, ORT_CONFIG_ENV, ort } from '../../src/runtime/session.js';

describe('ortConfigEntries', () => {
  it('nests dotted keys as the binding joins them', () => {
    expect(ortConfigEntries('session.use_device_allocator_for_initializers=1, session.load_model_format=ONNX')).toEqual({
      session: { use_device_allocator_for_initializers: '1', load_model_format: 'ONNX' },
    });
    expect(ortConfigEntries('')).toBeUndefined();
    expect(ortConfigEntries(undefined)).toBeUndefined();
  });

  it('refuses items that are not key=value, naming the variable', () => {
    expect(() => ortConfigEntries('session.x')).toThrow(/FASTKVZIP_ORT_CONFIG: "session.x" is not key=value/);
    expect(() => ortConfigEntries('=1')).toThrow(/not key=value/);
    expect(() => ortConfigEntries('a..b=1')).toThrow(/not key=value/);
    expect(() => ortConfigEntries('a=1,a.b=2')).toThrow(/clashes/);
  });
});

describe('sessions under FASTKVZIP_ORT_CONFIG', () => {
  const saved = process.env[ORT_CONFIG_ENV];
  afterEach(() => {
    if (saved === undefined) delete process.env[ORT_CONFIG_ENV];
    else process.env[ORT_CONFIG_ENV] = saved;
  });
  const file = (() => {
    const g = new Graph('cfg');
    const w = g.constant([1, 2, 3, 4], 'float32', [4], 'w');
    g.output(g.op('Mul', [g.input('x', 'float32', [4]), w]), 'y', 'float32', [4]);
    const f = path.join(mkdtempSync(path.join(os.tmpdir(), 'fkz-cfg-')), 'm.onnx');
    writeFileSync(f, encodeModel(g));
    return f;
  })();
  const run = async () => {
    const s = await createSession(file, { device: 'cpu' });
    const y = (await s.run({ x: new ort.Tensor('float32', Float32Array.from([1, 1, 2, 2]), [4]) })).y!.data as Float32Array;
    await s.release();
    return Array.from(y);
  };

  it('reach ONNX Runtime: a model format it cannot load fails, the right one works', async () => {
    process.env[ORT_CONFIG_ENV] = 'session.load_model_format=ORT';
    await expect(run()).rejects.toThrow(/could not load the model/);
    process.env[ORT_CONFIG_ENV] = 'session.load_model_format=ONNX';
    expect(await run()).toEqual([1, 2, 6, 8]);
  });

  it('weights outside the arena give the same outputs', async () => {
    process.env[ORT_CONFIG_ENV] = 'session.use_device_allocator_for_initializers=1';
    expect(await run()).toEqual([1, 2, 6, 8]);
  });
});
