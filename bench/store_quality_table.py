#!/usr/bin/env python3
"""Summarise bench/store_quality.sh results: per model and store form, mean and seed spread
(sample std over seeds) of the gate metrics, the store size against the 16-bit store, and
whether each metric is within noise of the 16-bit store (|mean diff| <= 2 x the larger of the
two seed stds). Prints JSON (--md: a markdown table)."""
import glob, json, statistics, sys

args = [a for a in sys.argv[1:] if not a.startswith("--")]
rows = [json.load(open(f)) for d in args for f in sorted(glob.glob(f"{d}/*.json"))]
METRICS = [("testLoss", lambda r: r["train"]["mean"]["testLoss"], "held-out BCE", False),
           ("testAcc", lambda r: r["train"]["mean"]["testAcc"], "held-out acc", True),
           ("recall30", lambda r: r["train"]["mean"]["recall30"], "KVzip top-30 % recall (held-out)", True)]
for ratio in ("0.5", "0.3", "0.2"):
    METRICS += [(f"reconAccRel@{ratio}", lambda r, q=ratio: r["eval"][q]["reconAccRel"] if "eval" in r else None, f"recon acc rel @{ratio}", True),
                (f"reconLogLik@{ratio}", lambda r, q=ratio: r["eval"][q]["reconLogLikDelta"] if "eval" in r else None, f"recon loglik delta @{ratio}", True),
                (f"retrieval@{ratio}", lambda r, q=ratio: r["eval"][q]["retrieval"] if "eval" in r else None, f"retrieval @{ratio}", True),
                (f"agreement@{ratio}", lambda r, q=ratio: r["eval"][q]["agreement"] if "eval" in r else None, f"KVzip top-k recall @{ratio} (eval)", True)]

out = {}
for model in sorted({r["model"] for r in rows}):
    forms = {}
    for r in rows:
        if r["model"] == model:
            forms.setdefault(r["form"], []).append(r)
    base = forms.get("bf16")
    res = {}
    for form, rs in forms.items():
        e = {"seeds": sorted(r["seed"] for r in rs), "storeBytes": statistics.mean(r["storeBytes"] for r in rs),
             "rows": statistics.mean(r["rows"] for r in rs), "contextTokens": rs[0]["contextTokens"], "metrics": {}}
        if base:
            e["sizeVs16bit"] = e["storeBytes"] / statistics.mean(r["storeBytes"] for r in base)
        for key, get, _, _ in METRICS:
            vals = [get(r) for r in rs]
            if any(v is None for v in vals):
                continue
            m = {"mean": statistics.mean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "values": vals}
            if base and form != "bf16":
                bv = [get(r) for r in base]
                bstd = statistics.stdev(bv) if len(bv) > 1 else 0.0
                m["diff"] = m["mean"] - statistics.mean(bv)
                m["noise"] = 2 * max(bstd, m["std"])
                m["withinNoise"] = abs(m["diff"]) <= m["noise"] + 1e-12
            e["metrics"][key] = m
        res[form] = e
    out[model] = res

if "--md" in sys.argv:
    order = ["bf16", "int8", "fp8", "int8-k50", "int8-k25"]
    for model, res in out.items():
        keys = [k for k, *_ in METRICS if k in res.get("bf16", {}).get("metrics", {})]
        names = {k: n for k, _, n, _ in METRICS}
        print(f"\n**{model}** (seeds {res['bf16']['seeds']}; mean ± seed std; * = outside 2× the seed std of bf16 or the form)\n")
        forms = [f for f in order if f in res] + [f for f in res if f not in order]
        print("| metric | " + " | ".join(forms) + " |")
        print("| --- |" + " ---: |" * len(forms))
        print("| store size vs 16-bit | " + " | ".join(f"{res[f].get('sizeVs16bit', 1):.3f}" for f in forms) + " |")
        for k in keys:
            scale = 100 if ("Acc" in k or "recall" in k or "retrieval" in k or "agreement" in k) else 1
            cells = []
            for f in forms:
                m = res[f]["metrics"][k]
                flag = "" if m.get("withinNoise", True) else " *"
                cells.append(f"{m['mean']*scale:.{2 if scale == 100 else 4}f} ± {m['std']*scale:.{2 if scale == 100 else 4}f}{flag}")
            print(f"| {names[k]}{' (%)' if scale == 100 else ''} | " + " | ".join(cells) + " |")
else:
    json.dump(out, sys.stdout, indent=1)
