// One gate file format, one reader: every file a command writes for gates — `train`'s
// gates.safetensors, and `export` as .pt, .safetensors and .onnx — is taken by every command
// that takes gates: `export` (exportTrained, the command's entry point) and `eval` (loadGates
// and the gate session it scores with).
import { afterAll, describe, expect, it } from 'vitest';
import * as path from 'node:path';
import { writeGateFile } from '../../src/gate/gate-file.js';
import { gateStateDtypes, GATE_STATE_KEYS } from '../../src/gate/gate-tensors.js';
import type { GateSet } from '../../src/gate/types.js';
import { exportTrained, readGates, GATE_FILE_FORMATS } from '../../src/export/index.js';
import { gateSession, loadGates } from '../../src/eval/gates.js';
import type { ModelSpec } from '../../src/model/config.js';
import { ort } from '../../src/runtime/session.js';
import { bf16ArrayToF32, f32ArrayToBf16 } from '../../src/util/half.js';
import { makeGateSet, tempDir } from './helpers.js';

const { dir, cleanup } = tempDir('gate-formats');
afterAll(cleanup);

const MODEL_ID = 'Org/Tiny-Model';
// gates for the model's layers 0..2 (a .pt records list positions only, which then are the layers)
const gates: GateSet = { ...makeGateSet({ D: 24, H: 2, G: 2, r: 4, S: 3, layers: [0, 1, 2], modelDtype: 'bfloat16', seed: 7 }), meta: { model_id: MODEL_ID, revision: 'r1' } };
const spec = { hiddenSize: gates.D, numKvHeads: gates.H, numHeads: gates.H * gates.G, scoredLayers: gates.layers } as ModelSpec;

/** What a file in the published dtypes holds: projections and b rounded to bf16. */
function published(g: GateSet): GateSet {
  const dtypes = gateStateDtypes(g.modelDtype);
  return {
    ...g,
    params: g.params.map((p) => {
      const q = { ...p };
      for (const key of GATE_STATE_KEYS) if (dtypes[key] === 'bfloat16') q[key] = bf16ArrayToF32(f32ArrayToBf16(p[key]));
      return q;
    }),
  };
}

async function scores(g: GateSet): Promise<Float32Array> {
  const session = await gateSession(g, { device: 'cpu', threads: 1 }, 'float32', path.join(dir, `session-${Math.random().toString(36).slice(2)}`));
  try {
    const T = 5;
    const x = Float32Array.from({ length: g.layers.length * T * g.D }, (_, i) => Math.sin(i * 0.37));
    const out = await session.run({ attn_input: new ort.Tensor('float32', x, [g.layers.length, T, g.D]) });
    return out.scores!.data as Float32Array;
  } finally {
    await session.release();
  }
}

describe('gate files: every writer against every reader', async () => {
  const train = path.join(dir, 'train');
  await writeGateFile(path.join(train, 'gates.safetensors'), gates); // exactly what `train` writes
  const exported: Record<string, string> = {};
  for (const format of GATE_FILE_FORMATS) {
    const r = await exportTrained({ gates: train, format, out: path.join(dir, 'export') });
    exported[format] = r.files[0]!;
  }
  // source -> the gate set it holds (the .pt carries no meta; the ONNX model keeps fp32 masters)
  const sources: [string, string, GateSet][] = [
    ['train output', train, gates],
    ['export .pt', exported.pt!, { ...published(gates), meta: undefined }],
    ['export .safetensors', exported.safetensors!, published(gates)],
    ['export .onnx', exported.onnx!, gates],
  ];
  // model_id is what export publishes (a local id by its folder name: test/export/model-card-and-naming), not compared here
  const metaOf = (g: GateSet) => {
    const { model_id: _id, ...rest } = g.meta ?? {};
    return Object.keys(rest).length ? rest : undefined;
  };
  const strip = (g: GateSet) => JSON.parse(JSON.stringify({ ...g, meta: metaOf(g), params: g.params.map((p) => Object.fromEntries(Object.entries(p).map(([k, v]) => [k, Array.from(v)]))) }));

  it('exports land in the published layout', () => {
    expect(Object.values(exported).map((f) => path.relative(path.join(dir, 'export'), f))).toEqual(['tiny-model/q2_dim4_sink3.pt', 'tiny-model/q2_dim4_sink3.safetensors', 'tiny-model/q2_dim4_sink3.onnx']);
  });

  for (const [name, file, want] of sources) {
    it(`${name}: the one reader gives back the gates, metrics and meta`, async () => {
      const { gates: read } = await readGates(file);
      expect(strip(read)).toEqual(strip(want));
    });

    it(`${name} -> eval: accepted, and scores as the gates it holds`, async () => {
      const { gates: read } = await loadGates(file, spec);
      const got = await scores(read);
      const ref = await scores(want);
      expect(Array.from(got)).toEqual(Array.from(ref));
    });

    for (const format of GATE_FILE_FORMATS) {
      it(`${name} -> export --format ${format}: accepted, and reads back the same`, async () => {
        const out = path.join(dir, `re-${name.replace(/\W+/g, '-')}-${format}`);
        const r = await exportTrained({ gates: file, format, out, modelId: MODEL_ID });
        const { gates: again } = await readGates(r.files[0]!);
        // writing can only round further to the published dtypes (.pt, .safetensors) and drop meta (.pt)
        let expected = format === 'onnx' ? want : published(want);
        if (format === 'pt') expected = { ...expected, meta: undefined };
        expect(strip(again)).toEqual(strip(expected));
      });
    }
  }

  it('names a file of another kind, and a folder without gates, in one line', async () => {
    await expect(readGates(path.join(dir, 'export', 'README.md'))).rejects.toThrow(/README\.md: not a gates file \(expected \.safetensors, \.pt, \.onnx\)/);
    await expect(readGates(path.join(dir, 'export'))).rejects.toThrow(/no gates\.safetensors in this folder or its train\//);
  });
});
