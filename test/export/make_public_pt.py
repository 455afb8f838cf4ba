# Writes gate checkpoints the way the public training script does (torch.save of
# Module.state_dict() lists plus numpy metric arrays), and fp32 dumps to compare against.
# argv[1]: output folder. Prints one JSON line describing what was written.
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn

out = sys.argv[1]
KEYS = ["q_proj.weight", "q_proj.bias", "k_proj.weight", "q_norm.weight", "k_norm.weight", "b", "k_base"]


class Norm(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))


class Gate(nn.Module):
    # public registration order: the sink keys and b are own parameters, so state_dict()
    # lists them before the submodules' weights, and carries a _metadata attribute
    def __init__(self, D, r, H, G, S, dtype):
        super().__init__()
        self.q_proj = nn.Linear(D, H * G * r, bias=True, dtype=dtype)
        self.k_proj = nn.Linear(D, H * r, bias=False, dtype=dtype)
        self.q_norm = Norm(r)
        self.k_norm = Norm(r)
        self.k_base = nn.Parameter(torch.randn([H, 1, S, r]))
        self.b = nn.Parameter(torch.randn([H, 1, G]).to(dtype))


def dump(sds, path):
    with open(path, "wb") as f:
        for sd in sds:
            for k in KEYS:
                f.write(sd[k].detach().float().contiguous().numpy().astype("<f4").tobytes())


torch.manual_seed(0)
result = {}

# 1) the public layout, bf16
D, r, H, G, S = 24, 4, 2, 3, 5
mods = [Gate(D, r, H, G, S, torch.bfloat16) for _ in range(3)]
for m in mods:
    with torch.no_grad():
        m.q_norm.weight.uniform_(0.5, 1.5)
        m.k_norm.weight.uniform_(0.5, 1.5)
sds = [m.state_dict() for m in mods]
metrics = {k: np.random.rand(4, 3) for k in ["loss", "acc", "loss_train", "acc_train"]}
torch.save({"module": sds, **metrics}, os.path.join(out, "public.pt"))
dump(sds, os.path.join(out, "public.f32"))
result["public"] = {"keys": list(sds[0].keys()), "metrics": {k: v.tolist() for k, v in metrics.items()}}

# 2) views with offsets and strides, Parameters, protocol 4, Fortran-order metrics, fp32
D, r, H, G, S = 8, 2, 2, 2, 3
m = Gate(D, r, H, G, S, torch.float32)
sd = m.state_dict(keep_vars=True)  # nn.Parameter objects
big = torch.randn(H, 1, S + 2, r)
sd["k_base"] = big[:, :, 1:1 + S, :]  # non-contiguous view with an offset
wt = torch.randn(D, H * G * r)
sd["q_proj.weight"] = wt.t()  # transposed view
shared = torch.randn(2 * r)
sd["q_norm.weight"] = shared[:r]
sd["k_norm.weight"] = shared[r:]  # two views of one storage
sd2 = Gate(D, r, H, G, S, torch.float32).state_dict()
metrics = {k: np.asfortranarray(np.random.rand(3, 2)) for k in ["loss", "acc", "loss_train", "acc_train"]}
metrics["acc"] = np.asfortranarray(np.random.rand(2, 2).astype(np.float32))
torch.save({"module": [sd, sd2], **metrics}, os.path.join(out, "views.pt"), pickle_protocol=4)
dump([sd, sd2], os.path.join(out, "views.f32"))
result["views"] = {"metrics": {k: v.astype(np.float64).tolist() for k, v in metrics.items()}}

print(json.dumps(result))
