// writeGatePt -> readGatePt round trips, byte-level determinism, and reader errors.
import { afterAll, describe, expect, it, vi } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { writeGatePt } from '../../src/export/write-gate-pt.js';
import { readGatePt } from '../../src/export/read-gate-pt.js';
import { GATE_STATE_KEYS, gateStateDtypes } from '../../src/gate/gate-tensors.js';
import { ZipReader } from '../../src/export/torch-file/zip-reader.js';
import { StoredZipWriter } from '../../src/export/torch-file/zip-writer.js';
import { bf16ArrayToF32, f16ArrayToF32, f32ArrayToBf16, f32ArrayToF16 } from '../../src/util/half.js';
import type { GateSet } from '../../src/gate/types.js';
import { makeGateSet, runPython, tempDir, torchPython } from './helpers.js';

const { dir, cleanup } = tempDir('pt-roundtrip');
afterAll(cleanup);

/** What the file holds for `values` stored as `dtype`. */
function stored(values: Float32Array, dtype: string): Float32Array {
  if (dtype === 'bfloat16') return bf16ArrayToF32(f32ArrayToBf16(values));
  if (dtype === 'float16') return f16ArrayToF32(f32ArrayToF16(values));
  return values;
}

function expectSameAsStored(read: GateSet, original: GateSet): void {
  expect({ D: read.D, H: read.H, G: read.G, r: read.r, S: read.S, dtype: read.modelDtype }).toEqual({
    D: original.D,
    H: original.H,
    G: original.G,
    r: original.r,
    S: original.S,
    dtype: original.modelDtype,
  });
  const dtypes = gateStateDtypes(original.modelDtype);
  expect(read.params.length).toBe(original.params.length);
  original.params.forEach((p, i) => {
    for (const key of GATE_STATE_KEYS) {
      const field = key;
      expect(read.params[i]![field], `${i} ${key}`).toEqual(stored(p[field], dtypes[key]));
    }
  });
  expect(read.metrics).toEqual(original.metrics);
}

describe('writeGatePt / readGatePt', () => {
  for (const modelDtype of ['bfloat16', 'float32', 'float16'] as const) {
    it(`round-trips a ${modelDtype} gate set exactly (up to the stored dtype)`, async () => {
      const gates = makeGateSet({ D: 12, H: 2, G: 2, r: 4, S: 3, layers: [3, 7, 11], modelDtype, seed: 21 });
      const file = path.join(dir, modelDtype, 'a', 'q2_dim4_sink3.pt');
      await writeGatePt(file, gates);
      const read = await readGatePt(file, { layers: gates.layers });
      expect(read.layers).toEqual([3, 7, 11]);
      expectSameAsStored(read, gates);
      // default layer indices are the list positions
      expect((await readGatePt(file)).layers).toEqual([0, 1, 2]);
      // rewriting what was read gives the same bytes
      const again = path.join(dir, modelDtype, 'b', 'q2_dim4_sink3.pt');
      await writeGatePt(again, read);
      expect(readFileSync(again).equals(readFileSync(file))).toBe(true);
    });
  }

  it('reads metric tensors, zip64 end records and gate sets without metrics', async () => {
    const gates = makeGateSet({ D: 8, H: 1, G: 1, r: 2, S: 0, layers: [0, 1], modelDtype: 'bfloat16', seed: 3 });
    const file = path.join(dir, 'misc', 'g.pt');
    await writeGatePt(file, gates, { metricsAs: 'tensor', forceZip64: 'all' });
    expectSameAsStored(await readGatePt(file), gates);
    delete gates.metrics;
    await writeGatePt(file, gates);
    expect((await readGatePt(file)).metrics).toBeUndefined();
  });

  it.skipIf(!torchPython.ok)(`zip64 records are read by Python's zipfile too (${torchPython.reason})`, async () => {
    const gates = makeGateSet({ D: 8, H: 1, G: 1, r: 2, S: 1, layers: [0], modelDtype: 'bfloat16', seed: 12 });
    const file = path.join(dir, 'zip64', 'g.pt');
    await writeGatePt(file, gates, { forceZip64: 'all' });
    const script = 'import json, sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nprint(json.dumps({"bad": z.testzip(), "names": z.namelist()}))';
    const res = runPython(path.dirname(file), 'zip.py', script, [file]);
    expect(res.bad).toBeNull();
    expect(res.names).toContain('g/data.pkl');
  });

  it('writes placeholders for ungated layers when asked for one entry per model layer', async () => {
    const gates = makeGateSet({ D: 8, H: 1, G: 2, r: 2, S: 2, layers: [1, 3], modelDtype: 'float32', seed: 4 });
    const file = path.join(dir, 'padded', 'g.pt');
    await writeGatePt(file, gates, { modelLayerCount: 4 });
    const read = await readGatePt(file);
    expect(read.layers).toEqual([0, 1, 2, 3]);
    expect(read.params[1]!['q_proj.weight']).toEqual(gates.params[0]!['q_proj.weight']);
    expect(read.params[3]!['k_base']).toEqual(gates.params[1]!['k_base']);
    expect(Array.from(read.params[0]!['q_proj.weight']).every((v) => v === 0)).toBe(true);
    expect(Array.from(read.params[2]!['q_norm.weight'])).toEqual([1, 1]);
    expect(read.metrics!.loss[0]![0]).toBeNaN();
    expect(read.metrics!.loss[0]![1]).toBe(gates.metrics!.loss[0]![0]);
    await expect(writeGatePt(file, gates, { modelLayerCount: 3 })).rejects.toThrow(/model layer 3 does not fit modelLayerCount 3/);
  });

  it('is deterministic: same gate set, same bytes, whatever the clock says', async () => {
    const gates = makeGateSet({ D: 16, H: 2, G: 2, r: 4, S: 4, layers: [0, 1], modelDtype: 'bfloat16', seed: 5 });
    const a = path.join(dir, 'det', 'a', 'q2_dim4_sink4.pt');
    const b = path.join(dir, 'det', 'b', 'q2_dim4_sink4.pt');
    await writeGatePt(a, gates);
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(new Date('2031-07-04T12:34:56Z'));
      await writeGatePt(b, gates);
    } finally {
      vi.useRealTimers();
    }
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
    // the zip's entries: archive folder named after the file, data 64-byte aligned, fixed 1980-01-01 times
    const zip = await ZipReader.open(a);
    try {
      expect(zip.entries.map((e) => e.name).slice(0, 3)).toEqual(['q2_dim4_sink4/data.pkl', 'q2_dim4_sink4/byteorder', 'q2_dim4_sink4/data/0']);
      expect(zip.entries.at(-1)!.name).toBe('q2_dim4_sink4/version');
      const bytes = readFileSync(a);
      for (const e of zip.entries) {
        const at = e.localHeaderOffset;
        expect(bytes.readUInt16LE(at + 10)).toBe(0); // time
        expect(bytes.readUInt16LE(at + 12)).toBe(0x21); // date 1980-01-01
        expect(e.method).toBe(0);
        const dataAt = at + 30 + bytes.readUInt16LE(at + 26) + bytes.readUInt16LE(at + 28);
        expect(dataAt % 64).toBe(0);
      }
      expect(Buffer.from(await zip.read(zip.find('q2_dim4_sink4/version')!)).toString()).toBe('3\n');
    } finally {
      await zip.close();
    }
  });

  it('leaves no temp file behind and keeps the old file when validation fails', async () => {
    const gates = makeGateSet({ D: 4, H: 1, G: 1, r: 2, S: 1, layers: [0], modelDtype: 'float32', seed: 6 });
    const file = path.join(dir, 'atomic', 'g.pt');
    await writeGatePt(file, gates);
    const before = readFileSync(file);
    gates.params[0]!.b[0] = NaN;
    await expect(writeGatePt(file, gates)).rejects.toThrow(/gate 0 \(model layer 0\) b has a non-finite value/);
    expect(readFileSync(file).equals(before)).toBe(true);
    const { readdirSync } = await import('node:fs');
    expect(readdirSync(path.dirname(file))).toEqual(['g.pt']);
  });

  it('refuses inconsistent gate sets with a clear message', async () => {
    const file = path.join(dir, 'bad', 'g.pt');
    const g = makeGateSet({ D: 4, H: 1, G: 1, r: 2, S: 1, layers: [0, 1], modelDtype: 'float32', seed: 7 });
    await expect(writeGatePt(file, { ...g, layers: [0, 0] })).rejects.toThrow(/layer index 0 appears twice/);
    await expect(writeGatePt(file, { ...g, layers: [0] })).rejects.toThrow(/1 layer indices but 2 parameter sets/);
    const short = { ...g, params: [g.params[0]!, { ...g.params[1]!, 'k_proj.weight': new Float32Array(3) }] };
    await expect(writeGatePt(file, short)).rejects.toThrow(/gate 1 \(model layer 1\) k_proj.weight has 3 values, expected 8 \(\[2, 4\]\)/);
    const badMetrics = { ...g, metrics: { ...g.metrics!, acc: [[0.5]] } };
    await expect(writeGatePt(file, badMetrics)).rejects.toThrow(/metrics.acc\[0\] must have one value per layer \(2\)/);
    const f16 = makeGateSet({ D: 4, H: 1, G: 1, r: 2, S: 1, layers: [0], modelDtype: 'float16', seed: 8 });
    f16.params[0]!['q_proj.bias'][1] = 1e6;
    await expect(writeGatePt(file, f16)).rejects.toThrow(/value 1000000 at index 1 overflows float16/);
  });

  it('names the file and the problem when reading something that is not a gate checkpoint', async () => {
    const notZip = path.join(dir, 'errors', 'plain.pt');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(path.dirname(notZip), { recursive: true });
    writeFileSync(notZip, 'hello world, definitely not a zip archive');
    await expect(readGatePt(notZip)).rejects.toThrow(`${notZip}: not a zip-format PyTorch checkpoint`);
    await expect(readGatePt(path.join(dir, 'errors', 'missing.pt'))).rejects.toThrow(/missing.pt: file not found/);

    const noPkl = path.join(dir, 'errors', 'nopkl.pt');
    const zw = await StoredZipWriter.create(noPkl);
    await zw.addEntry('x/other', Buffer.from('abc'));
    await zw.finish();
    await expect(readGatePt(noPkl)).rejects.toThrow(/nopkl.pt: no <archive>\/data.pkl entry/);

    const gates = makeGateSet({ D: 4, H: 1, G: 1, r: 2, S: 1, layers: [0], modelDtype: 'float32', seed: 9 });
    const good = path.join(dir, 'errors', 'good.pt');
    await writeGatePt(good, gates);
    const bytes = readFileSync(good);
    const truncated = path.join(dir, 'errors', 'truncated.pt');
    writeFileSync(truncated, bytes.subarray(0, bytes.length - 200));
    await expect(readGatePt(truncated)).rejects.toThrow(/truncated.pt: /);
    const corrupt = path.join(dir, 'errors', 'corrupt.pt');
    const flipped = Buffer.from(bytes);
    flipped[70] = flipped[70]! ^ 0xff; // inside data.pkl
    writeFileSync(corrupt, flipped);
    await expect(readGatePt(corrupt)).rejects.toThrow(/corrupt.pt: zip entry good\/data.pkl: CRC mismatch/);
  });
});
