"""Reference Fast KVzip gate (SPEC §3) and its training loop (SPEC §4), pure torch, fp32.

Inference form: the bias b is added ONCE (the public training script adds it twice).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

EPS = 1e-6          # RMSNorm eps of q_norm / k_norm
ACC_THRESHOLD = 0.05


class RMSNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.float()
        return self.weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + EPS))


class Gate(nn.Module):
    """One layer's gate. State-dict keys: q_proj.weight/bias, k_proj.weight, q_norm.weight,
    k_norm.weight, b [H,1,G], k_base [H,1,S,r] (the public layout)."""

    def __init__(self, D, H, G, r, S):
        super().__init__()
        self.H, self.G, self.r, self.S = H, G, r, S
        self.q_proj = nn.Linear(D, H * G * r, bias=True)
        self.k_proj = nn.Linear(D, H * r, bias=False)
        self.q_norm = RMSNorm(r)
        self.k_norm = RMSNorm(r)
        self.b = nn.Parameter(torch.zeros(H, 1, G))
        self.k_base = nn.Parameter(torch.zeros(H, 1, S, r))

    def forward(self, x):
        """x [N, D] -> gate score [H, N] in (0, 1)."""
        N = x.shape[0]
        q = self.q_norm(self.q_proj(x).view(N, self.H, self.G, self.r))   # [N,H,G,r]
        k = self.k_norm(self.k_proj(x).view(N, self.H, self.r))           # [N,H,r]
        scale = 1.0 / math.sqrt(self.r)
        self_logit = torch.einsum("nhr,nhgr->hng", k, q) * scale + self.b[:, 0, :].unsqueeze(1)  # [H,N,G]
        sink_logit = torch.einsum("hsr,nhgr->hnsg", self.k_base[:, 0], q) * scale                # [H,N,S,G]
        p = 1.0 / (1.0 + torch.exp(sink_logit - self_logit.unsqueeze(2)).sum(2))                 # [H,N,G]
        return p.mean(-1)


def loss_fn(pred, target):
    """BCE per element, mean over tokens (last dim), sum over heads. pred/target [H, N]."""
    return F.binary_cross_entropy(pred, target.to(pred.dtype), reduction="none").mean(-1).sum(-1)


def acc_fn(pred, target):
    return ((pred >= ACC_THRESHOLD) == (target >= ACC_THRESHOLD)).float().mean()


def lr_schedule(i, max_step):
    if i < 0.01 * max_step:
        return 0.01 * i
    if 0.5 * max_step <= i < 0.75 * max_step:
        return 0.5
    if i >= 0.75 * max_step:
        return 0.25
    return 1.0


def split_positions(n):
    """Token-level split: every 100th 1-based position is held out."""
    pos = torch.arange(n)
    test = (pos + 1) % 100 == 0
    return pos[~test], pos[test]


def train(gates, X, Y, steps, batch_size, lr, generator, momentum=0.9):
    """Replay of the public optimiser loop. X [L,N,D], Y [L,H,N].

    Returns a dict of records: batch_index [steps,batch] (indices into the train positions),
    lr [steps], loss [steps], layer_loss/layer_acc [steps,L], grads at steps 0 and 1
    ({step: {layer: {param: tensor}}}), held-out test_loss/test_acc [L] after the last step.
    """
    L = X.shape[0]
    train_pos, test_pos = split_positions(X.shape[1])
    x_train, y_train = X[:, train_pos], Y[..., train_pos]
    x_test, y_test = X[:, test_pos], Y[..., test_pos]
    params = [p for g in gates for p in g.parameters()]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    n_samples = x_train.shape[1]
    n_split = n_samples // batch_size
    rec = {"batch_index": [], "lr": [], "loss": [], "layer_loss": [], "layer_acc": [], "grads": {}}
    for i in range(steps):
        split = i % n_split
        if split == 0:
            perm = torch.randperm(n_samples, generator=generator)
        idx = perm[split * batch_size:(split + 1) * batch_size]
        x, y = x_train[:, idx], y_train[..., idx]
        opt.zero_grad(set_to_none=True)
        total, losses, accs = 0.0, [], []
        for l in range(L):
            pred = gates[l](x[l])
            loss = loss_fn(pred, y[l])
            total = total + loss
            losses.append(loss.item())
            accs.append(acc_fn(pred, y[l]).item())
        total.backward()
        if i in (0, 1):
            rec["grads"][i] = [{n: p.grad.detach().clone() for n, p in g.named_parameters()} for g in gates]
        alpha = lr_schedule(i, steps)
        for group in opt.param_groups:
            group["lr"] = lr * alpha
        opt.step()
        rec["batch_index"].append(idx.clone())
        rec["lr"].append(lr * alpha)
        rec["loss"].append(total.item())
        rec["layer_loss"].append(losses)
        rec["layer_acc"].append(accs)
    with torch.no_grad():
        rec["test_loss"] = [loss_fn(gates[l](x_test[l]), y_test[l]).item() for l in range(L)]
        rec["test_acc"] = [acc_fn(gates[l](x_test[l]), y_test[l]).item() for l in range(L)]
    rec["train_positions"], rec["test_positions"] = train_pos, test_pos
    rec["n_split"] = n_split
    return rec
