"""Self-tests of the pure-torch reference pieces (no transformers needed).

    python3 tools/reference/selftest.py
"""
import math
import os
import sys

sys.dont_write_bytecode = True  # keep __pycache__ out of the repo
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gate_golden  # noqa: E402
import st_io  # noqa: E402
from gate_ref import Gate, loss_fn, lr_schedule, split_positions, train  # noqa: E402
from kvzip_ref import (causal_probs, chunk_scores, chunk_scores_naive, inv_freq_default,  # noqa: E402
                       inv_freq_llama3, repeat_plan)


def test_safetensors_roundtrip():
    ts = {"a": torch.randn(3, 4), "b": torch.arange(7, dtype=torch.int64), "c": torch.randn(5).to(torch.bfloat16),
          "d": torch.zeros(0, 3), "e": torch.tensor([True, False]), "f": torch.randn(2, 2, 2).double()}
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x.safetensors")
        st_io.save(p, ts, metadata={"k": "v"})
        raw = open(p, "rb").read()
        n = int.from_bytes(raw[:8], "little")
        assert (8 + n) % 8 == 0, "data must start 8-byte aligned"
        back, meta = st_io.load(p)
    assert meta == {"k": "v"}
    for k, t in ts.items():
        assert back[k].dtype == t.dtype and back[k].shape == t.shape and torch.equal(back[k], t), k


def test_chunk_scores_vs_naive():
    g = torch.Generator().manual_seed(0)
    for H, G, P, C, R, d in [(2, 2, 3, 5, 7, 8), (1, 4, 0, 1, 3, 4), (3, 1, 2, 4, 1, 6)]:
        q = torch.randn(H * G, R, d, generator=g) * 2
        kp, kc, kr = (torch.randn(H, n, d, generator=g) * 2 for n in (P, C, R))
        fast, slow = chunk_scores(q, kp, kc, kr), chunk_scores_naive(q, kp, kc, kr)
        assert fast.shape == (H, C) and fast.dtype == torch.float32
        assert (fast.double() - slow).abs().max() < 1e-6, (fast, slow)
        assert fast.min() >= 0 and fast.max() <= 1


def test_chunk_scores_group_mapping():
    # query head j belongs to KV head j // G: a huge query in head 1 (group 0) only lifts KV head 0
    H, G, R, d = 2, 2, 1, 4
    q = torch.zeros(H * G, R, d)
    q[1, 0, 0] = 50.0
    kc = torch.zeros(H, 2, d)
    kc[:, 0, 0] = 1.0
    s = chunk_scores(q, torch.zeros(H, 1, d), kc, torch.zeros(H, R, d))
    assert s[0, 0] > 0.99 and s[1, 0] < 0.5


def test_causal_probs_bottom_right():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(4, 3, 8, generator=g), torch.randn(2, 10, 8, generator=g)
    p = causal_probs(q, k, 0.3)
    assert torch.allclose(p.sum(-1), torch.ones(4, 3))
    assert p[:, 0, 8:].abs().max() == 0 and p[:, 0, :8].min() > 0  # first query sits at position 7
    assert p[:, 2].min() > 0                                        # last query sees everything


def naive_gate(g, x):
    """SPEC §3 written token by token."""
    H, G, r, S = g.H, g.G, g.r, g.S
    out = torch.zeros(H, x.shape[0], dtype=torch.float64)
    Wq, c, Wk = g.q_proj.weight.double(), g.q_proj.bias.double(), g.k_proj.weight.double()
    rms = lambda v, w: v / torch.sqrt((v * v).mean() + 1e-6) * w.double()  # noqa: E731
    for n in range(x.shape[0]):
        qa = (Wq @ x[n].double() + c).view(H, G, r)
        ka = (Wk @ x[n].double()).view(H, r)
        for h in range(H):
            k = rms(ka[h], g.k_norm.weight)
            acc = 0.0
            for gi in range(G):
                q = rms(qa[h, gi], g.q_norm.weight)
                ell = float(k @ q) / math.sqrt(r) + float(g.b[h, 0, gi])
                beta = [float(g.k_base[h, 0, s].double() @ q) / math.sqrt(r) for s in range(S)]
                acc += 1.0 / (1.0 + sum(math.exp(bs - ell) for bs in beta))
            out[h, n] = acc / G
    return out


def test_gate_vs_naive():
    torch.manual_seed(3)
    g = Gate(12, 2, 3, 4, 5)
    with torch.no_grad():
        g.b.normal_()
        g.k_base.normal_()
        g.q_norm.weight.uniform_(0.5, 1.5)
        g.k_norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(7, 12)
    with torch.no_grad():
        assert (g(x).double() - naive_gate(g, x)).abs().max() < 1e-5


def test_gate_b_added_once():
    # with k_base = 0 and S sinks: p = 1 / (1 + S·exp(-ℓ)); ℓ shifts by exactly b
    torch.manual_seed(4)
    g = Gate(8, 1, 1, 4, 3)
    x = torch.randn(5, 8)
    with torch.no_grad():
        p0 = g(x)
        g.b.fill_(0.7)
        p1 = g(x)
    ell0 = -torch.log((1 / p0 - 1) / 3)
    ell1 = -torch.log((1 / p1 - 1) / 3)
    assert (ell1 - ell0 - 0.7).abs().max() < 1e-4


def test_lr_schedule_and_split():
    assert [lr_schedule(i, 30) for i in (0, 1, 14, 15, 22, 23, 29)] == [0.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert lr_schedule(49, 5000) == 0.49 and lr_schedule(50, 5000) == 1.0 and lr_schedule(3750, 5000) == 0.25
    tr, te = split_positions(400)
    assert te.tolist() == [99, 199, 299, 399] and len(tr) == 396


def test_repeat_plan():
    ctx = list(range(100, 150))
    plan = repeat_plan(ctx, 12, [1, 2], [3, 4, 5], [9], 8)
    assert [(s, e) for s, e, _ in plan] == [(0, 12), (12, 24), (24, 36), (36, 48), (48, 50)]
    assert plan[0][2] == [1, 2, 9] + ctx[0:12]
    assert plan[1][2] == [3, 4, 5] + ctx[4:12] + [9] + ctx[12:24]
    assert plan[4][2] == [3, 4, 5] + ctx[40:48] + [9] + ctx[48:50]


def test_llama3_rope_regimes():
    base = inv_freq_default(10000.0, 16)
    got = inv_freq_llama3(10000.0, 16, 8.0, 1.0, 4.0, 32)
    wavelen = 2 * math.pi / base
    assert torch.equal(got[wavelen < 8], base[wavelen < 8])               # high frequency kept
    assert torch.allclose(got[wavelen > 32], base[wavelen > 32] / 8)      # low frequency divided
    mid = (wavelen >= 8) & (wavelen <= 32)
    assert mid.sum() >= 1 and (wavelen < 8).sum() >= 1                    # all three regimes used
    assert ((got[mid] < base[mid]) & (got[mid] > base[mid] / 8)).all()


def manual_sgd_replay(X, Y, init, batch_index, train_pos, lrs, momentum=0.9):
    """Training replay without torch.optim: what a port has to do, step for step."""
    L = X.shape[0]
    gates = [Gate(X.shape[2], gate_golden.H, gate_golden.G, gate_golden.R_DIM, gate_golden.S) for _ in range(L)]
    with torch.no_grad():
        for l, g in enumerate(gates):
            for n, p in g.named_parameters():
                p.copy_(init[f"init.{l}.{n}"])
    bufs = {}
    for i in range(batch_index.shape[0]):
        pos = train_pos[batch_index[i]]
        total = sum(loss_fn(gates[l](X[l, pos]), Y[l][:, pos]) for l in range(L))
        for g in gates:
            g.zero_grad(set_to_none=True)
        total.backward()
        with torch.no_grad():
            for l, g in enumerate(gates):
                for n, p in g.named_parameters():
                    key = (l, n)
                    bufs[key] = p.grad.clone() if key not in bufs else momentum * bufs[key] + p.grad
                    p -= lrs[i] * bufs[key]
    return gates


def test_gate_golden_file_and_replay():
    with tempfile.TemporaryDirectory() as d:
        gate_golden.make(d)
        ts, _ = st_io.load(os.path.join(d, "gate.safetensors"))
        assert os.path.getsize(os.path.join(d, "gate.safetensors")) < 1_000_000
    assert ts["x"].shape == (2, 400, 64) and ts["y"].shape == (2, 2, 400)
    assert ts["train.batch_index"].shape == (30, 32) and ts["train.batch_index"].dtype == torch.int64
    assert (ts["y"] == 0).any() and (ts["y"] > 0.97).any()
    assert ts["fwd.0.out"].shape == (2, 400) and ts["train.grad0.1.k_base"].shape == (2, 1, 16, 16)
    # every shuffle epoch is a permutation prefix: no repeated index within an epoch (12 batches/epoch)
    for e in range(2):
        flat = ts["train.batch_index"][12 * e:12 * (e + 1)].reshape(-1)
        assert flat.unique().numel() == flat.numel()
    assert ((ts["train.batch_positions"] + 1) % 100 != 0).all()
    # the recorded batches + init + lr reproduce the final parameters without torch.optim
    gates = manual_sgd_replay(ts["x"], ts["y"], ts, ts["train.batch_index"], ts["train.train_positions"],
                              ts["train.lr"].tolist())
    for l, g in enumerate(gates):
        for n, p in g.named_parameters():
            assert (p - ts[f"final.{l}.{n}"]).abs().max() < 1e-5, (l, n)
    # lr multiplier is 0 at step 0, so grads of steps 0 and 1 are both taken at the init
    assert ts["train.lr"][0] == 0
    init_gates = manual_sgd_replay(ts["x"], ts["y"], ts, ts["train.batch_index"][:0], ts["train.train_positions"], [])
    for step in (0, 1):
        pos = ts["train.train_positions"][ts["train.batch_index"][step]]
        for g in init_gates:
            g.zero_grad(set_to_none=True)
        sum(loss_fn(init_gates[l](ts["x"][l, pos]), ts["y"][l][:, pos]) for l in range(2)).backward()
        for l, g in enumerate(init_gates):
            for n, p in g.named_parameters():
                assert (p.grad - ts[f"train.grad{step}.{l}.{n}"]).abs().max() < 1e-6, (step, l, n)
    assert (ts["final.0.k_base"] != 0).any() and (ts["final.0.b"] != 0).any()


def test_committed_gate_fixture():
    """If test/fixtures/golden/gate.safetensors exists, its outputs follow from its own inputs."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "test", "fixtures", "golden",
                        "gate.safetensors")
    if not os.path.exists(path):
        print("     (no committed gate fixture; skipped)")
        return
    ts, _ = st_io.load(path)
    for prefix in ("fwd", "final"):
        for l in range(2):
            g = Gate(64, gate_golden.H, gate_golden.G, gate_golden.R_DIM, gate_golden.S)
            with torch.no_grad():
                for n, p in g.named_parameters():
                    p.copy_(ts[f"{prefix}.{l}.{n}"])
                assert (g(ts["x"][l]) - ts[f"{prefix}.{l}.out"]).abs().max() < 1e-5, (prefix, l)
    gates = manual_sgd_replay(ts["x"], ts["y"], ts, ts["train.batch_index"], ts["train.train_positions"],
                              ts["train.lr"].tolist())
    for l, g in enumerate(gates):
        for n, p in g.named_parameters():
            assert (p - ts[f"final.{l}.{n}"]).abs().max() < 1e-5, (l, n)


def test_train_is_deterministic():
    X, Y = torch.randn(1, 250, 8), torch.rand(1, 1, 250)
    finals = []
    for _ in range(2):
        torch.manual_seed(0)
        gates = [Gate(8, 1, 1, 4, 2)]
        train(gates, X, Y, 5, 16, 0.2, torch.Generator().manual_seed(9))
        finals.append(torch.cat([p.detach().reshape(-1) for p in gates[0].parameters()]))
    assert torch.equal(finals[0], finals[1])


if __name__ == "__main__":
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    failed = 0
    for name, fn in tests:
        try:
            fn()
            print(f"ok   {name}")
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
    print(f"{len(tests) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
