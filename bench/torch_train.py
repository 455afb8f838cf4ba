"""The public gate optimizer (PyTorch), timed on a fastkvzip feature store, for side-by-side GPU timing.

As the public optimizer does it: all features in host RAM (bf16), every step gathers the batch
on the host and copies it to the GPU, bf16 projections, fp32 norms and sinks, BCE, SGD momentum
0.9 with the lr schedule. Runs --steps steps (the full 5,000 take ~12 min; we time a prefix and
extrapolate, saying so).

    python3 bench/torch_train.py --features STORE --steps 300 --out torch_train.json
"""
import argparse, glob, json, math, os, time

import numpy as np
import pyarrow as pa
import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):  # Qwen3RMSNorm semantics
    def __init__(self, n, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        dt = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dt)


class Gate(nn.Module):
    def __init__(self, D, r, H, G, dtype, S=16):
        super().__init__()
        self.r, self.H = r, H
        self.q_proj = nn.Linear(D, H * G * r, bias=True, dtype=dtype)
        self.k_proj = nn.Linear(D, H * r, bias=False, dtype=dtype)
        self.q_norm, self.k_norm = RMSNorm(r), RMSNorm(r)
        self.b = nn.Parameter(torch.zeros([H, 1, G], dtype=dtype))
        self.k_base = nn.Parameter(torch.zeros([H, 1, S, r]))

    def forward(self, x):
        n = x.shape[0]
        q = self.q_norm(self.q_proj(x).view(n, self.H, -1, self.r)).transpose(0, 1).transpose(-1, -2)
        k = self.k_norm(self.k_proj(x).view(n, self.H, -1, self.r)).transpose(0, 1)
        logit = torch.matmul(k, q) / math.sqrt(self.r) + self.b.unsqueeze(2)
        base = torch.matmul(self.k_base, q) / math.sqrt(self.r)
        return (1 / (1 + torch.exp(base - logit).sum(2, keepdim=True))).mean(-1).squeeze(-1)


def lr_schedule(i, m):
    return 0.01 * i if i < 0.01 * m else 0.25 if i >= 0.75 * m else 0.5 if i >= 0.5 * m else 1.0


def load_store(store):
    man = json.load(open(os.path.join(store, "manifest.json")))
    D, H = man["model"]["D"], man["model"]["H"]
    hid, sco = [], []
    for sh in man["shards"]:
        r = pa.ipc.open_file(os.path.join(store, sh["file"]))
        layers_h, layers_s = [], []
        for i in range(r.num_record_batches):
            b = r.get_batch(i)
            h = b.column("hidden").values.to_numpy(zero_copy_only=False).view(np.uint16).reshape(-1, D)
            s = b.column("score").values.to_numpy().reshape(-1, H)
            layers_h.append(torch.from_numpy(h.copy()).view(torch.bfloat16) if man["hiddenDtype"] == "bfloat16"
                            else torch.from_numpy(h.copy()).view(torch.float16))
            layers_s.append(torch.from_numpy(s.T.copy()))
        hid.append(torch.stack(layers_h))
        sco.append(torch.stack(layers_s))
    return man, torch.cat(hid, 1), torch.cat(sco, 2)  # [L,N,D] host, [L,H,N]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--max-steps", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    t0 = time.time()
    man, x, y = load_store(a.features)
    load_s = time.time() - t0
    L, N, D = x.shape
    H, G = man["model"]["H"], man["model"]["G"]
    n = torch.arange(N)
    test = (n + 1) % 100 == 0
    x_train, y_train = x[:, ~test], y[:, :, ~test]
    x_test, y_test = x[:, test].cuda(), y[:, :, test].cuda()
    torch.manual_seed(0)
    mods = nn.ModuleList([Gate(D, 16, H, G, x.dtype).cuda() for _ in range(L)])
    opt = torch.optim.SGD(mods.parameters(), lr=0.2, momentum=0.9)
    ns = x_train.shape[1]
    n_split = ns // a.batch
    torch.cuda.synchronize()
    t1 = time.time()
    for i in range(a.steps):
        split = i % n_split
        if split == 0:
            perm = torch.randperm(ns)
        idx = perm[split * a.batch:(split + 1) * a.batch]
        xb = x_train[:, idx].cuda()
        yb = y_train[:, :, idx].cuda()
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for l in range(L):
            total = total + F.binary_cross_entropy(mods[l](xb[l]).float(), yb[l], reduction="none").mean(-1).sum(-1)
        total.backward()
        for g in opt.param_groups:
            g["lr"] = 0.2 * lr_schedule(i, a.max_steps)
        opt.step()
        if i % 50 == 0:
            with torch.no_grad():
                for l in range(L):
                    mods[l](x_test[l])
    torch.cuda.synchronize()
    secs = time.time() - t1
    res = {"store": a.features, "layers": L, "tokens": N, "D": D, "H": H, "G": G, "load_seconds": round(load_s, 1),
           "steps_timed": a.steps, "seconds": round(secs, 2), "ms_per_step": round(1000 * secs / a.steps, 1),
           "extrapolated_5000_steps_seconds": round(secs / a.steps * a.max_steps, 1),
           "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
           "host_rss_gib": round(int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 2**20, 2)}
    json.dump(res, open(a.out, "w"), indent=2)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
