"""The public Fast KVzip gate formula at inference (b added once), on one layer's state dict as
`torch.load` returns it from a `q{G}_dim{r}_sink{S}.pt` file (SPEC §3): what users of the public
code and kvpress compute with our exported gates. Used by bench/check_gates.py and the export tests.
"""
import math

import torch


def rms(x, w):  # Qwen3RMSNorm: fp32 statistics, weight * normalized.to(input dtype)
    dt = x.dtype
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)
    return w * h.to(dt)


def public_gate(sd, x):
    """x [T, D] in the model dtype -> scores [H, T] fp32."""
    T = x.shape[0]
    r = sd["q_norm.weight"].shape[-1]
    H = sd["k_proj.weight"].shape[0] // r
    q = rms((x @ sd["q_proj.weight"].T + sd["q_proj.bias"]).view(T, H, -1, r), sd["q_norm.weight"])
    k = rms((x @ sd["k_proj.weight"].T).view(T, H, -1, r), sd["k_norm.weight"])
    q = q.transpose(0, 1).transpose(-1, -2)  # H, T, r, G
    k = k.transpose(0, 1)  # H, T, 1, r
    logit = torch.matmul(k, q) / math.sqrt(r) + sd["b"].unsqueeze(2).float()
    base = torch.matmul(sd["k_base"], q) / math.sqrt(r)
    return (1 / (1 + torch.exp(base - logit).sum(2, keepdim=True))).mean(-1).squeeze(-1).float()
