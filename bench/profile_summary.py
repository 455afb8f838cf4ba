"""Summarise an ONNX Runtime profile (enableProfiling JSON, e.g. FASTKVZIP_ORT_PROFILE=prefix):
time per op type and execution provider, and the slowest nodes, over every model run but the
first (the warm-up) when there are several. Loop nodes include their bodies and are listed apart.

    python3 bench/profile_summary.py prof_*.json
"""
import collections, json, sys

for f in sys.argv[1:]:
    ev = json.load(open(f))
    runs = sorted((e for e in ev if e.get("name") == "model_run"), key=lambda e: e["ts"])
    counted = runs[1:] if len(runs) > 1 else runs
    t0 = counted[0]["ts"] if counted else 0
    run_ms = sum(r["dur"] for r in counted) / 1e3
    by_op, by_node, by_ep = collections.Counter(), collections.Counter(), collections.Counter()
    for e in ev:
        if e.get("cat") == "Node" and e["ts"] >= t0 and e["name"].endswith("_kernel_time"):
            op = e["args"].get("op_name", "?")
            ep = e["args"].get("provider", "?").replace("ExecutionProvider", "")
            if op != "Loop":
                by_ep[ep] += e["dur"]
            by_op[(op, ep)] += e["dur"]
            by_node[(op, ep, e["name"][:-len("_kernel_time")][-60:])] += e["dur"]
    loops = sum(d for (op, _), d in by_op.items() if op == "Loop")
    for k in [k for k in by_op if k[0] == "Loop"]:
        by_op.pop(k)
    total = sum(by_op.values())
    print(f"{f}: {len(counted)} run(s) counted, {run_ms:.1f} ms, node time {total / 1e3:.1f} ms (+ Loop wrappers {loops / 1e3:.1f} ms)")
    print("  by provider: " + ", ".join(f"{ep} {d / 1e3:.1f} ms" for ep, d in by_ep.most_common()))
    for (op, ep), d in by_op.most_common(22):
        print(f"  {op:30s} {ep:6s} {d / 1e3:10.1f} ms {100 * d / max(total, 1):5.1f} %")
    print("  slowest nodes:")
    for (op, ep, name), d in [x for x in by_node.most_common(60) if x[0][0] != "Loop"][:15]:
        print(f"    {d / 1e3:9.1f} ms  {op:26s} {ep:5s} {name}")
