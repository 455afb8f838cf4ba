"""Summarise an ONNX Runtime profile (enableProfiling JSON): time per op type and the slowest
nodes, for the last model run in the file. Loop nodes include their bodies and are listed apart.

    python3 bench/profile_summary.py prof_*.json
"""
import collections, json, sys

for f in sys.argv[1:]:
    ev = json.load(open(f))
    runs = [e for e in ev if e.get("name") == "model_run"]
    t0 = runs[-1]["ts"] if runs else 0
    by_op, by_node = collections.Counter(), collections.Counter()
    for e in ev:
        if e.get("cat") == "Node" and e["ts"] >= t0 and e["name"].endswith("_kernel_time"):
            op = e["args"].get("op_name", "?")
            by_op[op] += e["dur"]
            by_node[(op, e["name"][:-len("_kernel_time")][-70:])] += e["dur"]
    loops = by_op.pop("Loop", 0)
    total = sum(by_op.values())
    print(f"{f}: run {runs[-1]['dur'] / 1e3 if runs else '?'} ms, node time {total / 1e3:.1f} ms (+ Loop wrappers {loops / 1e3:.1f} ms)")
    for op, d in by_op.most_common(15):
        print(f"  {op:34s} {d / 1e3:10.1f} ms {100 * d / max(total, 1):5.1f} %")
    print("  slowest nodes:")
    for (op, name), d in [x for x in by_node.most_common(40) if x[0][0] != "Loop"][:12]:
        print(f"    {d / 1e3:9.1f} ms  {op:28s} {name}")
