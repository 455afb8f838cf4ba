# Independent check of gate .pt files written by src/export/write-gate-pt.ts, using PyTorch.
# argv[1]: JSON list of cases {path, raw, dims{D,H,G,r,S}, dtype, metrics, slots, weightsOnlyExpected}
# Prints one JSON line: a list of per-case results; "problems" lists every mismatch found.
import collections
import json
import math
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn

KEYS = ["q_proj.weight", "q_proj.bias", "k_proj.weight", "q_norm.weight", "k_norm.weight", "b", "k_base"]
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class RMSNorm(nn.Module):
    # Qwen3RMSNorm semantics: variance in fp32, weight * normalized.to(input dtype)
    def __init__(self, n, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        dt = x.dtype
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dt)


class Gate(nn.Module):
    # parameter names and shapes of the public gate module
    def __init__(self, D, r, H, G, S, dtype):
        super().__init__()
        self.r, self.H, self.G = r, H, G
        self.q_proj = nn.Linear(D, H * G * r, bias=True, dtype=dtype)
        self.k_proj = nn.Linear(D, H * r, bias=False, dtype=dtype)
        self.q_norm = RMSNorm(r)
        self.k_norm = RMSNorm(r)
        self.k_base = nn.Parameter(torch.zeros([H, 1, S, r]))
        self.b = nn.Parameter(torch.zeros([H, 1, G], dtype=dtype))

    def forward(self, x):  # x: [n, D] -> [H, n]
        n = x.shape[0]
        q = self.q_norm(self.q_proj(x).view(n, self.H, -1, self.r)).transpose(0, 1).transpose(-1, -2)
        k = self.k_norm(self.k_proj(x).view(n, self.H, -1, self.r)).transpose(0, 1)
        logit = torch.matmul(k, q) / math.sqrt(self.r) + self.b.unsqueeze(2)  # H, n, 1, G
        logit_base = torch.matmul(self.k_base, q) / math.sqrt(self.r)  # H, n, S, G
        score = 1 / (1 + torch.exp(logit_base - logit).sum(2, keepdim=True))
        return score.mean(-1).squeeze(-1)


def check(case):
    problems = []
    d = case["dims"]
    D, H, G, r, S = d["D"], d["H"], d["G"], d["r"], d["S"]
    mdt = DTYPES[case["dtype"]]
    shapes = {
        "q_proj.weight": (H * G * r, D), "q_proj.bias": (H * G * r,), "k_proj.weight": (H * r, D),
        "q_norm.weight": (r,), "k_norm.weight": (r,), "b": (H, 1, G), "k_base": (H, 1, S, r),
    }
    want_dt = {k: (mdt if k in ("q_proj.weight", "q_proj.bias", "k_proj.weight", "b") else torch.float32) for k in KEYS}
    ck = torch.load(case["path"], weights_only=False)
    res = {"top_type": type(ck).__name__, "top_keys": list(ck.keys())}
    if type(ck) is not dict:
        problems.append("top level is not a dict")
    mods = ck["module"]
    res["module_type"] = type(mods).__name__
    res["n_modules"] = len(mods)
    raw = np.fromfile(case["raw"], dtype="<f4")
    off = 0
    slots = case["slots"]
    for i, sd in enumerate(mods):
        if type(sd) is not collections.OrderedDict:
            problems.append(f"module[{i}] is {type(sd).__name__}")
        if list(sd.keys()) != KEYS:
            problems.append(f"module[{i}] keys {list(sd.keys())}")
        for k in KEYS:
            t = sd[k]
            if type(t) is not torch.Tensor:
                problems.append(f"module[{i}].{k} is {type(t).__name__}")
            if tuple(t.shape) != shapes[k]:
                problems.append(f"module[{i}].{k} shape {tuple(t.shape)}")
            if t.dtype != want_dt[k]:
                problems.append(f"module[{i}].{k} dtype {t.dtype}")
            if not t.is_contiguous() or t.requires_grad:
                problems.append(f"module[{i}].{k} not a plain contiguous tensor")
            if slots[i] < 0:
                expect = torch.ones(shapes[k]) if k.endswith("norm.weight") else torch.zeros(shapes[k])
            else:
                n = int(np.prod(shapes[k]))
                expect = torch.from_numpy(raw[off:off + n].copy()).reshape(shapes[k])
                off += n
            # torch's own fp32 -> bf16/fp16 cast (round to nearest even) is the oracle
            if not torch.equal(t, expect.to(want_dt[k])):
                problems.append(f"module[{i}].{k} values differ")
    if off != raw.size:
        problems.append(f"used {off} of {raw.size} reference values")

    for key, field in [("loss", "loss"), ("acc", "acc"), ("loss_train", "lossTrain"), ("acc_train", "accTrain")]:
        a = ck[key]
        rows = case["metrics"][field] if case.get("metrics") else []
        want = np.array(rows, dtype=np.float64).reshape(len(rows), len(slots))
        if case["metricsAs"] == "tensor":
            if type(a) is not torch.Tensor or a.dtype != torch.float64:
                problems.append(f"{key} is {type(a).__name__}")
                continue
            a = a.numpy()
        elif type(a) is not np.ndarray:
            problems.append(f"{key} is {type(a).__name__}")
            continue
        if a.dtype != np.float64 or a.shape != want.shape or not np.array_equal(a, want, equal_nan=True):
            problems.append(f"{key} differs: {a.dtype} {a.shape}")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.load(case["path"], weights_only=True)
        res["weights_only"] = "ok"
    except Exception as e:  # noqa: BLE001
        res["weights_only"] = "error: " + " ".join(str(e).split())[-300:]

    # the public gate module accepts every state dict, and computes scores in (0, 1)
    torch.manual_seed(0)
    x = torch.randn(5, D)
    for i, sd in enumerate(mods):
        g = Gate(D, r, H, G, S, mdt)
        g.load_state_dict(sd)  # strict
        if mdt == torch.float16:  # CPU fp16 matmul is not available in older torch
            g = g.float()
            s = g(x)
        else:
            s = g(x.to(mdt))
        if tuple(s.shape) != (H, 5) or not bool(torch.isfinite(s).all()) or not bool(((s > 0) & (s <= 1)).all()):
            problems.append(f"module[{i}] forward gave {tuple(s.shape)} {s.min().item()}..{s.max().item()}")
    res["problems"] = problems
    return res


cases = json.load(open(sys.argv[1]))
print(json.dumps([check(c) for c in cases]))
