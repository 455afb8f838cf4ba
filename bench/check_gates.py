"""On the GPU machine (torch 2.x, safetensors, onnxruntime, pyarrow): the exported gates of a
fastkvzip run, checked the way their users will load them.

  * `torch.load(<model>/q{G}_dim{r}_sink{S}.pt, weights_only=False)` opens, with the public
    layout (keys, shapes, dtypes);
  * the public gate formula (b added once), run with PyTorch on CUDA in the model dtype on the
    first --tokens stored attention inputs of every layer, gives the same scores as our exported
    ONNX gate (onnxruntime, fp32 input) within --tol;
  * the safetensors file opens with the `safetensors` package and holds the same tensors.

    python3 bench/check_gates.py --export EXPORT_DIR --store STORE [--tokens 2000] [--out result.json]
"""
import argparse, glob, json, os, sys

import numpy as np
import onnxruntime as ort
import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools", "reference"))
from read_store import read_shard_layer  # noqa: E402  (independent pyarrow reader)
from public_gate import public_gate  # noqa: E402

KEYS = {"q_proj.weight", "q_proj.bias", "k_proj.weight", "q_norm.weight", "k_norm.weight", "b", "k_base"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", required=True)
    ap.add_argument("--store", required=True)
    ap.add_argument("--tokens", type=int, default=2000)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--out")
    a = ap.parse_args()
    pt = glob.glob(os.path.join(a.export, "*", "q*_dim*_sink*.pt"))[0]
    ck = torch.load(pt, weights_only=False)
    problems = []
    if set(ck) != {"module", "loss", "acc", "loss_train", "acc_train"}:
        problems.append(f"top-level keys {sorted(ck)}")
    mods = ck["module"]
    for i, sd in enumerate(mods):
        if set(sd) != KEYS:
            problems.append(f"layer {i}: keys {sorted(sd)}")
        for k in ("q_norm.weight", "k_norm.weight", "k_base"):
            if sd[k].dtype != torch.float32:
                problems.append(f"layer {i}: {k} is {sd[k].dtype}, expected float32")
    st = load_file(pt[:-3] + ".safetensors")
    for i, sd in enumerate(mods):
        for k, v in sd.items():
            w = st.get(f"layers.{i}.{k}")
            if w is None or w.shape != v.shape or w.dtype != v.dtype or not torch.equal(w, v):
                problems.append(f"safetensors layers.{i}.{k} differs from the .pt")
    manifest = json.load(open(os.path.join(a.store, "manifest.json")))
    layers = manifest["model"]["scoredLayers"]
    shard = manifest["shards"][0]
    # the first --tokens rows of every layer of the first shard (exact bf16/fp16 values as fp32)
    feats = []
    for layer in layers:
        _, hidden_f32 = read_shard_layer(a.store, manifest, shard, layer)
        feats.append(np.ascontiguousarray(hidden_f32[: a.tokens]))
    x = np.stack(feats)  # [L, T, D] fp32 (exact bf16 values)
    dt = mods[0]["q_proj.weight"].dtype
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.no_grad():
        want = torch.stack([public_gate({k: v.to(dev) for k, v in sd.items()}, torch.from_numpy(x[l]).to(dev).to(dt)) for l, sd in enumerate(mods)]).cpu().numpy()
    onnx_path = pt[:-3] + ".onnx"
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    diff = float(np.abs(got - want).max())
    if not diff <= a.tol:
        problems.append(f"ONNX gate vs public formula: max abs {diff} > {a.tol}")
    res = {"pt": pt, "layers": len(mods), "model_dtype": str(dt), "tokens": int(x.shape[1]), "device": dev, "torch": torch.__version__,
           "max_abs_onnx_vs_public": diff, "mean_score": float(want.mean()), "problems": problems, "ok": not problems}
    print(json.dumps(res))
    if a.out:
        json.dump(res, open(a.out, "w"), indent=2)
    sys.exit(0 if not problems else 1)


if __name__ == "__main__":
    main()
