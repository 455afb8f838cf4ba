"""Regenerate every golden fixture the TypeScript tests compare against.

    python3 tools/reference/make_fixtures.py --out test/fixtures
    python3 tools/reference/make_fixtures.py --out /tmp/fx --only gate       # pure torch part only

CPU, fp32, seeded. The model/KVzip part needs transformers + tokenizers (see README.md).
"""
import argparse
import os
import sys

sys.dont_write_bytecode = True  # keep __pycache__ out of the repo

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gate_golden  # noqa: E402

MODEL_NAMES = ["llama", "qwen2", "qwen3", "gemma3"]
LAYOUT_PARTS = ["layouts", "cli"]
MAX_TOTAL_BYTES = 16 * 1024 * 1024


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(path) for f in fs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="fixture root, e.g. test/fixtures")
    ap.add_argument("--only", default="", help=f"comma list of: gate,{','.join(MODEL_NAMES + LAYOUT_PARTS)} (default: all)")
    args = ap.parse_args()
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(["gate"] + MODEL_NAMES + LAYOUT_PARTS)
    if unknown:
        sys.exit(f"--only: unknown part(s) {sorted(unknown)}")
    torch.set_num_threads(min(4, os.cpu_count() or 1))
    torch.set_default_dtype(torch.float32)
    golden = os.path.join(args.out, "golden")
    os.makedirs(golden, exist_ok=True)

    if not only or "gate" in only:
        gate_golden.make(golden)
    models = [m for m in MODEL_NAMES if not only or m in only]
    if models:
        import hf_golden  # needs transformers + tokenizers
        hf_golden.make(args.out, only=models)
    layout_parts = [p for p in LAYOUT_PARTS if not only or p in only]
    if layout_parts:
        import layout_golden  # real checkpoint layouts (part D) and CLI goldens (part E); needs part A's models
        layout_golden.make(args.out, only=layout_parts if only else None)

    total = folder_bytes(args.out)
    print(f"fixtures under {args.out}: {total / 1e6:.2f} MB")
    if total > MAX_TOTAL_BYTES:
        sys.exit(f"fixtures are {total} bytes, over the {MAX_TOTAL_BYTES} byte budget")


if __name__ == "__main__":
    main()
