"""KVzip scores and attention inputs of fastkvzip's store vs the PyTorch reference, on the first context.

Both run the same bf16 weights, but through different kernels (flash/sdpa vs ONNX Runtime), so
bf16 rounding differs; we report the differences and the agreement of the top-30 % sets.
"""
import argparse, json, os

import numpy as np
import pyarrow as pa


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--torch", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    man = json.load(open(os.path.join(a.store, "manifest.json")))
    D, H = man["model"]["D"], man["model"]["H"]
    first = man["shards"][0]
    r = pa.ipc.open_file(os.path.join(a.store, first["file"]))
    ref = np.load(a.torch)
    rows = []
    for i in range(r.num_record_batches):
        b = r.get_batch(i)
        ours = b.column("score").values.to_numpy().reshape(-1, H).T  # [H, T]
        theirs = ref[f"score.{i}"]
        n = min(ours.shape[1], theirs.shape[1])
        o, t = ours[:, :n], theirs[:, :n]
        k = max(1, int(0.3 * n))
        rec = np.mean([len(set(np.argsort(-o[h])[:k]) & set(np.argsort(-t[h])[:k])) / k for h in range(H)])
        rows.append({"layer": i, "tokens": [int(ours.shape[1]), int(theirs.shape[1])], "max_abs": float(np.abs(o - t).max()),
                     "mean_abs": float(np.abs(o - t).mean()), "pearson": float(np.corrcoef(o.ravel(), t.ravel())[0, 1]), "top30_overlap": float(rec)})
    hid = {}
    for l in (0, r.num_record_batches - 1):
        b = r.get_batch(l)
        raw = b.column("hidden").values.to_numpy(zero_copy_only=False).view(np.uint16).reshape(-1, D)[:64]
        ours = (raw.astype(np.uint32) << 16).view(np.float32) if man["hiddenDtype"] == "bfloat16" else raw.view(np.float16).astype(np.float32)
        theirs = ref[f"hidden.{l}"]
        hid[l] = {"max_abs": float(np.abs(ours - theirs).max()), "max_ref": float(np.abs(theirs).max())}
    res = {"layers": rows, "hidden_first_64_tokens": hid,
           "summary": {"max_abs": max(x["max_abs"] for x in rows), "mean_pearson": float(np.mean([x["pearson"] for x in rows])),
                       "mean_top30_overlap": float(np.mean([x["top30_overlap"] for x in rows]))}}
    json.dump(res, open(a.out, "w"), indent=2)
    print(json.dumps(res["summary"]))


if __name__ == "__main__":
    main()
