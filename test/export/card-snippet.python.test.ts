// The model card's kvpress snippet runs as written against the exported .pt: its code block is
// executed with stand-ins for the hub download, transformers' pipeline and kvpress whose
// `Weight` has the public gate module's constructor, parameter names and forward (the real
// kvpress needs transformers and a GPU). load_state_dict is strict, so a key, shape or dtype
// mismatch between our file and the public module fails here.
import { describe, it, expect, afterAll } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { makeGateSet, tempDir, torchPython, runPython } from './helpers.js';
import { writeGatePt } from '../../src/export/index.js';
import { renderModelCard } from '../../src/export/model-card.js';

const STUBS: Record<string, string> = {
  'huggingface_hub/__init__.py': `import os\ndef hf_hub_download(repo_id, filename, **kw):\n    return os.path.join(os.environ["CARD_ROOT"], filename)\n`,
  'transformers/__init__.py': `import json, torch
def pipeline(task, model, **kw):
    assert task == "kv-press-text-generation"
    def run(context, question, press):
        D = press.gates[0].q_proj.in_features
        x = torch.randn(1, 50, D).to(press.gates[0].q_proj.weight.dtype)
        scores = [g(x) for g in press.gates]
        ok = all(((s > 0) & (s < 1)).all().item() for s in scores)
        return {"answer": json.dumps({"gates": len(scores), "shape": list(scores[0].shape), "in_range": ok, "ratio": press.compression_ratio})}
    return run
`,
  'kvpress/__init__.py': `from dataclasses import dataclass, field\n@dataclass\nclass FastKVzipPress:\n    compression_ratio: float = 0.0\n    gates: list = field(init=False, default=None)\n`,
  'kvpress/presses/__init__.py': '',
  'kvpress/presses/fastkvzip_press.py': `import math, torch
from torch import nn
class RMSNorm(nn.Module):
    def __init__(self, n, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps
    def forward(self, x):
        dt = x.dtype
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dt)
class Weight(nn.Module):
    # the public module's constructor and parameters (kvpress/presses/fastkvzip_press.py)
    def __init__(self, index, input_dim, output_dim, nhead, ngroup, dtype, sink=1):
        super().__init__()
        self.index, self.output_dim, self.nhead, self.ngroup, self.sink = index, output_dim, nhead, ngroup, sink
        self.q_proj = nn.Linear(input_dim, nhead * ngroup * output_dim, bias=True, dtype=dtype)
        self.k_proj = nn.Linear(input_dim, nhead * output_dim, bias=False, dtype=dtype)
        self.q_norm = RMSNorm(output_dim)
        self.k_norm = RMSNorm(output_dim)
        self.k_base = nn.Parameter(torch.zeros([nhead, 1, sink, output_dim]))
        self.b = nn.Parameter(torch.zeros([nhead, 1, ngroup], dtype=dtype))
        self.d = math.sqrt(self.output_dim)
    def to(self, *a, **k):  # no GPU here
        return self
    def forward(self, hidden_states):
        hidden_states = hidden_states.squeeze(0)
        nseq = hidden_states.shape[0]
        shape = (nseq, self.nhead, -1, self.output_dim)
        q = self.q_norm(self.q_proj(hidden_states).view(shape)).transpose(0, 1).transpose(-1, -2)
        k = self.k_norm(self.k_proj(hidden_states).view(shape)).transpose(0, 1)
        logit = torch.matmul(k, q) / self.d + self.b.unsqueeze(2)
        logit_base = torch.matmul(self.k_base, q) / self.d
        score = 1 / (1 + torch.exp(logit_base - logit).sum(2, keepdim=True))
        return score.mean(-1).squeeze(-1).unsqueeze(0)
`,
};

describe.skipIf(!torchPython.ok)('model card snippet', () => {
  const tmp = tempDir('card-snippet');
  afterAll(() => tmp.cleanup());
  for (const modelDtype of ['bfloat16', 'float32'] as const) {
    it(`the kvpress example loads a ${modelDtype} .pt into the public module and scores`, async () => {
      const root = path.join(tmp.dir, modelDtype);
      const gates = makeGateSet({ D: 32, H: 2, G: 2, r: 16, S: 16, layers: [0, 1, 2], modelDtype, seed: 5 });
      gates.meta = { model_id: 'Qwen/Qwen3-8B', commit: 'abc' };
      await writeGatePt(path.join(root, 'qwen3-8b', 'q2_dim16_sink16.pt'), gates);
      const card = renderModelCard(gates, undefined, { repoId: 'me/gates' });
      const blocks = [...card.matchAll(/```python\n([\s\S]*?)```/g)].map((m) => m[1]!);
      const kvpress = blocks.find((b) => b.includes('FastKVzipPress'));
      expect(kvpress).toBeDefined();
      const stubs = path.join(root, 'stubs');
      for (const [file, text] of Object.entries(STUBS)) {
        mkdirSync(path.dirname(path.join(stubs, file)), { recursive: true });
        writeFileSync(path.join(stubs, file), text);
      }
      const script = `import os, sys\nsys.path.insert(0, ${JSON.stringify(stubs)})\nos.environ["CARD_ROOT"] = ${JSON.stringify(root)}\n${kvpress}`;
      const r = runPython(root, 'snippet.py', script, []);
      expect(r).toEqual({ gates: 3, shape: [1, 2, 50], in_range: true, ratio: 0.7 });
    });
  }
});
