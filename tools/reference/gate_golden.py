"""Gate golden fixture (SPEC §3, §4): test/fixtures/golden/gate.safetensors + gate.json. Pure torch."""
import json
import os

import torch

import st_io
from gate_ref import Gate, acc_fn, loss_fn, lr_schedule, train

D, H, G, R_DIM, S = 64, 2, 2, 16, 16
LAYERS, N = 2, 400
STEPS, BATCH, LR, MOMENTUM = 30, 32, 0.2, 0.9
SEED = 1234


def make_data(gen):
    # features: unit-scale normal with a per-dimension scale, like RMS-normed hidden states
    X = torch.randn(LAYERS, N, D, generator=gen) * (0.5 + torch.rand(LAYERS, 1, D, generator=gen))
    # targets: skewed towards 0 (u**4), a few exact zeros and a few values close to 1
    Y = torch.rand(LAYERS, H, N, generator=gen) ** 4
    Y.view(-1)[torch.randperm(Y.numel(), generator=gen)[:12]] = 0.0
    Y.view(-1)[torch.randperm(Y.numel(), generator=gen)[:12]] = 0.97 + 0.03 * torch.rand(12, generator=gen)
    return X, Y


def new_gates(seed):
    torch.manual_seed(seed)  # nn.Linear default init draws from the global generator
    return [Gate(D, H, G, R_DIM, S) for _ in range(LAYERS)]


def params(prefix, gates):
    return {f"{prefix}.{l}.{n}": p.detach().clone() for l, g in enumerate(gates) for n, p in g.named_parameters()}


def make(out_dir):
    gen = torch.Generator().manual_seed(SEED)
    X, Y = make_data(gen)
    tensors = {"x": X, "y": Y}

    # forward golden: default init, then b / k_base / norms perturbed so every term matters
    fwd = new_gates(SEED + 1)
    with torch.no_grad():
        for g in fwd:
            g.b.copy_(0.5 * torch.randn(g.b.shape, generator=gen))
            g.k_base.copy_(torch.randn(g.k_base.shape, generator=gen))
            g.q_norm.weight.copy_(1 + 0.2 * torch.randn(R_DIM, generator=gen))
            g.k_norm.weight.copy_(1 + 0.2 * torch.randn(R_DIM, generator=gen))
        tensors.update(params("fwd", fwd))
        for l, g in enumerate(fwd):
            tensors[f"fwd.{l}.out"] = g(X[l])
            tensors[f"fwd.{l}.loss"] = loss_fn(tensors[f"fwd.{l}.out"], Y[l]).reshape(1)
            tensors[f"fwd.{l}.acc"] = acc_fn(tensors[f"fwd.{l}.out"], Y[l]).reshape(1)

    # training golden: default init (norms ones, b and k_base zeros)
    gates = new_gates(SEED + 2)
    tensors.update(params("init", gates))
    perm_gen = torch.Generator().manual_seed(SEED + 3)
    rec = train(gates, X, Y, STEPS, BATCH, LR, perm_gen, momentum=MOMENTUM)
    tensors.update(params("final", gates))
    with torch.no_grad():
        for l, g in enumerate(gates):
            tensors[f"final.{l}.out"] = g(X[l])
    for step, per_layer in rec["grads"].items():
        for l, grads in enumerate(per_layer):
            for n, t in grads.items():
                tensors[f"train.grad{step}.{l}.{n}"] = t
    tensors["train.train_positions"] = rec["train_positions"].to(torch.int64)
    tensors["train.test_positions"] = rec["test_positions"].to(torch.int64)
    tensors["train.batch_index"] = torch.stack(rec["batch_index"]).to(torch.int64)
    tensors["train.batch_positions"] = rec["train_positions"][tensors["train.batch_index"]]
    tensors["train.lr"] = torch.tensor(rec["lr"], dtype=torch.float32)
    tensors["train.loss"] = torch.tensor(rec["loss"], dtype=torch.float32)
    tensors["train.layer_loss"] = torch.tensor(rec["layer_loss"], dtype=torch.float32)
    tensors["train.layer_acc"] = torch.tensor(rec["layer_acc"], dtype=torch.float32)
    tensors["train.test_loss"] = torch.tensor(rec["test_loss"], dtype=torch.float32)
    tensors["train.test_acc"] = torch.tensor(rec["test_acc"], dtype=torch.float32)
    for k, t in tensors.items():
        if t.is_floating_point() and t.dtype != torch.float32:
            raise AssertionError(f"gate golden: {k} is {t.dtype}, expected float32")

    meta = {
        "D": D, "H": H, "G": G, "r": R_DIM, "S": S, "layers": LAYERS, "N": N,
        "rmsnorm_eps": 1e-6, "b_added": "once", "acc_threshold": 0.05, "dtype": "float32",
        "loss": "binary_cross_entropy (log clamped at -100), mean over tokens, sum over heads, sum over layers",
        "train": {
            "steps": STEPS, "batch": BATCH, "lr": LR, "momentum": MOMENTUM, "weight_decay": 0.0,
            "heldout": "every 100th 1-based position", "n_train": len(rec["train_positions"]),
            "n_test": len(rec["test_positions"]), "n_split": rec["n_split"],
            "lr_multipliers": [lr_schedule(i, STEPS) for i in range(STEPS)],
            "loss": rec["loss"], "layer_loss": rec["layer_loss"], "layer_acc": rec["layer_acc"],
            "test_loss": rec["test_loss"], "test_acc": rec["test_acc"],
            "grad_steps": sorted(rec["grads"].keys()),
        },
        "versions": {"torch": torch.__version__},
    }
    st_io.save(os.path.join(out_dir, "gate.safetensors"), tensors)
    with open(os.path.join(out_dir, "gate.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"gate: loss {rec['loss'][0]:.4f} -> {rec['loss'][-1]:.4f}, held-out {rec['test_loss']}")
    return tensors, meta
