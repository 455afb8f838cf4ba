// Issue 4: the exported .pt, loaded by torch.load and run through the public gate formula
// (a PyTorch re-statement of the public inference module, b added once), gives the same scores
// as our exported ONNX gate.
import { describe, it, expect, afterAll } from 'vitest';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { makeGateSet, tempDir, torchPython, runPython, dumpF32 } from './helpers.js';
import { writeGatePt } from '../../src/export/index.js';
import { writeOnnxGate } from '../../src/export/onnx-gate.js';
import { Rng } from '../../src/util/random.js';

const PUBLIC_FORMULA = `
import sys, json, math, torch
pt, feats, out, T = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ck = torch.load(pt, weights_only=False)
def rms(x, w):  # Qwen3RMSNorm: fp32 statistics, weight * normalized.to(input dtype)
    dt = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    return w * x.to(dt)
raw = torch.frombuffer(bytearray(open(feats, 'rb').read()), dtype=torch.float32)
L = len(ck["module"])
x_all = raw.view(L, T, -1)
res = []
for l, sd in enumerate(ck["module"]):
    dt = sd["q_proj.weight"].dtype
    r = sd["q_norm.weight"].shape[-1]
    H = sd["k_proj.weight"].shape[0] // r
    x = x_all[l].to(dt)
    q = rms((x @ sd["q_proj.weight"].T + sd["q_proj.bias"]).view(T, H, -1, r), sd["q_norm.weight"])
    k = rms((x @ sd["k_proj.weight"].T).view(T, H, -1, r), sd["k_norm.weight"])
    q = q.transpose(0, 1).transpose(-1, -2)  # H, T, r, G
    k = k.transpose(0, 1)                    # H, T, 1, r
    logit = torch.matmul(k, q) / math.sqrt(r) + sd["b"].unsqueeze(2).float()
    base = torch.matmul(sd["k_base"], q) / math.sqrt(r)
    s = (1 / (1 + torch.exp(base - logit).sum(2, keepdim=True))).mean(-1).squeeze(-1)  # H, T
    res.append(s.float())
torch.stack(res).numpy().astype("float32").tofile(out)
print(json.dumps({"layers": L, "dtype": str(ck["module"][0]["q_proj.weight"].dtype)}))
`;

describe.skipIf(!torchPython.ok)('exported .pt through the public formula == exported ONNX gate', () => {
  const tmp = tempDir('onnx-vs-public');
  afterAll(() => tmp.cleanup());
  for (const modelDtype of ['float32', 'bfloat16'] as const) {
    it(`${modelDtype} model`, async () => {
      const gates = makeGateSet({ D: 64, H: 2, G: 2, r: 16, S: 16, layers: [0, 1, 2], modelDtype, seed: 9 });
      const pt = path.join(tmp.dir, `${modelDtype}.pt`);
      await writeGatePt(pt, gates);
      const T = 50;
      const rng = new Rng(3);
      // features representable in bf16, like the stored attention inputs
      const x = new Float32Array(3 * T * 64).map(() => Math.fround(Number(rng.uniform(-3, 3).toPrecision(2))));
      const feats = path.join(tmp.dir, `${modelDtype}.x`);
      dumpF32(feats, [x]);
      const out = path.join(tmp.dir, `${modelDtype}.out`);
      runPython(tmp.dir, 'public_formula.py', PUBLIC_FORMULA, [pt, feats, out, String(T)]);
      const bytes = (await import('node:fs')).readFileSync(out);
      const want = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
      // our ONNX gate runs the exported (rounded) parameters when the model is bf16: read them back from the .pt
      const { readGatePt } = await import('../../src/export/index.js');
      const exported = await readGatePt(pt, { layers: gates.layers });
      const model = writeOnnxGate(tmp.dir, `gate-${modelDtype}`, { ...exported, modelDtype });
      const s = await ort.InferenceSession.create(model);
      const got = (await s.run({ attn_input: new ort.Tensor('float32', x, [3, T, 64]) })).scores!.data as Float32Array;
      let maxDiff = 0;
      for (let i = 0; i < got.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i]! - want[i]!));
      // fp32: same math; bf16: the public formula runs the projections in bf16, we in fp32 on the same (bf16) weights
      expect(maxDiff).toBeLessThan(modelDtype === 'float32' ? 1e-5 : 1e-2);
      if (modelDtype === 'bfloat16') expect(maxDiff).toBeGreaterThan(0); // the test compares two different pipelines
    });
  }
});
