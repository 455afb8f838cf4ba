// The gate file (writeGateFile with the published dtypes, as `export --format safetensors`
// writes it): names, dtypes, metadata, round trip, and an independent parse in Python (the
// safetensors package when importable, else the header by hand + torch).
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { readGateFile, writeGateFile } from '../../src/gate/gate-file.js';
import { GATE_STATE_KEYS, gateLayerTensors, gateStateDtypes } from '../../src/gate/gate-tensors.js';
import { bf16ArrayToF32, f32ArrayToBf16 } from '../../src/util/half.js';
import { dumpF32, makeGateSet, runPython, tempDir, torchPython } from '../export/helpers.js';

const { dir, cleanup } = tempDir('safetensors');
afterAll(cleanup);

function header(file: string): Record<string, any> {
  const bytes = readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  return JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
}

describe('writeGateFile (published dtypes)', () => {
  const gates = makeGateSet({ D: 12, H: 2, G: 2, r: 4, S: 3, layers: [5, 11], modelDtype: 'bfloat16', seed: 31 });
  gates.meta = { model_id: 'google/gemma-3-1b-it', revision: 'abc123', recipe: 'fineweb-10k' };
  const file = path.join(dir, 'gemma-3-1b-it', 'q2_dim4_sink3.safetensors');

  it('writes layers.{i}.{key} tensors with the .pt dtypes and string metadata', async () => {
    await writeGateFile(file, gates, { dtypes: 'published' });
    const h = header(file);
    const names = Object.keys(h).filter((k) => k !== '__metadata__');
    expect(names.sort()).toEqual(GATE_STATE_KEYS.flatMap((k) => [`layers.0.${k}`, `layers.1.${k}`]).sort());
    expect(h['layers.1.q_proj.weight']).toMatchObject({ dtype: 'BF16', shape: [16, 12] });
    expect(h['layers.0.b']).toMatchObject({ dtype: 'BF16', shape: [2, 1, 2] });
    expect(h['layers.0.k_base']).toMatchObject({ dtype: 'F32', shape: [2, 1, 3, 4] });
    expect(h['layers.0.q_norm.weight']).toMatchObject({ dtype: 'F32', shape: [4] });
    const md = h.__metadata__;
    expect(Object.values(md).every((v) => typeof v === 'string')).toBe(true);
    expect(md).toMatchObject({ model_id: 'google/gemma-3-1b-it', revision: 'abc123', recipe: 'fineweb-10k', layers: '[5,11]', G: '2', r: '4', S: '3', D: '12', H: '2', model_dtype: 'bfloat16', format: 'pt' });
    const summary = JSON.parse(md.metrics);
    expect(summary.evals).toBe(3);
    expect(summary.final_acc).toEqual(gates.metrics!.acc[2]);
    expect(summary.mean_final_loss).toBeCloseTo((gates.metrics!.loss[2]![0]! + gates.metrics!.loss[2]![1]!) / 2, 12);
  });

  it('reads back exactly (up to the stored dtype) and is deterministic', async () => {
    const read = readGateFile(file);
    expect(read.layers).toEqual([5, 11]);
    expect(read.meta).toEqual(gates.meta);
    expect(read.metrics).toEqual(gates.metrics); // every evaluation, not only the summary
    const dtypes = gateStateDtypes('bfloat16');
    gates.params.forEach((p, i) => {
      for (const key of GATE_STATE_KEYS) {
        const v = p[key];
        expect(read.params[i]![key]).toEqual(dtypes[key] === 'bfloat16' ? bf16ArrayToF32(f32ArrayToBf16(v)) : v);
      }
    });
    const again = path.join(dir, 'again.safetensors');
    await writeGateFile(again, gates, { dtypes: 'published' });
    expect(readFileSync(again).equals(readFileSync(file))).toBe(true);
  });

  it("with the trainer's fp32 master copies, reads back bit for bit", async () => {
    const master = path.join(dir, 'master.safetensors');
    await writeGateFile(master, gates);
    const h = header(master);
    expect(Object.entries(h).filter(([k]) => k !== '__metadata__').every(([, t]) => (t as { dtype: string }).dtype === 'F32')).toBe(true);
    const read = readGateFile(master);
    expect(read).toEqual(gates);
  });

  it('reads train output written before the formats were one (the description under fastkvzip_gates)', async () => {
    const { writeSafetensors } = await import('../../src/model/safetensors/index.js');
    const legacy = path.join(dir, 'legacy.safetensors');
    const tensors = gates.layers.flatMap((_, pos) => gateLayerTensors(gates, pos).map((t) => ({ name: `layers.${pos}.${t.key}`, dtype: 'F32' as const, shape: t.shape, data: t.values })));
    const { params: _params, ...desc } = gates;
    await writeSafetensors(legacy, tensors, { fastkvzip_gates: JSON.stringify(desc) });
    expect(readGateFile(legacy)).toEqual(gates);
  });

  it('refuses files that are not gate exports', async () => {
    const { writeSafetensors } = await import('../../src/model/safetensors/index.js');
    const other = path.join(dir, 'other.safetensors');
    await writeSafetensors(other, [{ name: 'w', dtype: 'F32', shape: [1], data: new Float32Array(1) }], {});
    expect(() => readGateFile(other)).toThrow(/other.safetensors: not a fastkvzip gates file/);
  });

  it.skipIf(!torchPython.ok)(`parses in Python with the same values as torch's own casts (${torchPython.reason})`, () => {
    const raw = path.join(dir, 'ref.f32');
    dumpF32(raw, gates.layers.flatMap((_, pos) => gateLayerTensors(gates, pos).map((t) => t.values)));
    const script = `
import json, struct, sys
import numpy as np, torch
path, raw = sys.argv[1], sys.argv[2]
try:
    from safetensors.torch import load_file
    tensors, how = load_file(path), "safetensors"
except ImportError:
    how = "by hand"
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    dt = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
    tensors = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        buf = bytearray(data[8 + n + b: 8 + n + e])
        tensors[name] = torch.frombuffer(buf, dtype=dt[info["dtype"]]).reshape(info["shape"])
keys = ["q_proj.weight", "q_proj.bias", "k_proj.weight", "q_norm.weight", "k_norm.weight", "b", "k_base"]
ref = np.fromfile(raw, dtype="<f4")
off, bad = 0, []
for i in range(2):
    for k in keys:
        t = tensors[f"layers.{i}.{k}"]
        n = t.numel()
        want = torch.from_numpy(ref[off:off + n].copy()).reshape(t.shape).to(t.dtype)
        off += n
        if not torch.equal(t, want):
            bad.append(f"layers.{i}.{k}")
print(json.dumps({"how": how, "bad": bad, "used": off, "total": int(ref.size)}))
`;
    const res = runPython(dir, 'st.py', script, [file, raw]);
    expect(res.bad).toEqual([]);
    expect(res.used).toBe(res.total);
  });
});
