#!/usr/bin/env bash
# Issue 16: gate quality of the compact feature-store forms against the bf16/fp16 store, across
# seeds, on the embedded default model and on stories260K (CPU). One store per form and seed
# (a kept-fraction store is drawn with --keep-seed = the training seed), gates trained with
# --seed, then `fastkvzip eval` (default model) on the preset's held-out addresses.
#
#   bash bench/store_quality.sh OUT_DIR [default|stories|all]
#
# Env: SEEDS (default "0 1 2"), STEPS (default 1500: a reduced budget, see BENCHMARKS.md),
#      FORMS (default "bf16 int8 fp8 int8-k50 int8-k25"), STORIES_MODEL (an HF folder made by
#      `fastkvzip convert-llama2c`; default OUT_DIR/models/stories260K from /work/shared or ../shared),
#      THREADS (default 1). Results: OUT_DIR/results/<model>-<form>-s<seed>.json; summarise with
#      python3 bench/store_quality_table.py OUT_DIR/results > bench/results/store-quality.json
set -euo pipefail
OUT=${1:?usage: bench/store_quality.sh OUT_DIR [default|stories|all]}
WHICH=${2:-all}
SEEDS=${SEEDS:-"0 1 2"}
STEPS=${STEPS:-1500}
FORMS=${FORMS:-"bf16 int8 fp8 int8-k50 int8-k25"}
THREADS=${THREADS:-1}
FKZ="node $(cd "$(dirname "$0")/.." && pwd)/bin/fastkvzip.js"
mkdir -p "$OUT/results" "$OUT/stores" "$OUT/train" "$OUT/eval"

form_flags() { # form seed -> extract flags
  case $1 in
    bf16) echo "" ;;
    int8) echo "--hidden-dtype int8" ;;
    int8-b32) echo "--hidden-dtype int8 --quant-block 32" ;;
    fp8) echo "--hidden-dtype float8e4m3" ;;
    int8-k50) echo "--hidden-dtype int8 --keep-fraction 0.5 --keep-seed $2" ;;
    int8-k25) echo "--hidden-dtype int8 --keep-fraction 0.25 --keep-seed $2" ;;
    bf16-k50) echo "--keep-fraction 0.5 --keep-seed $2" ;;
    *) echo "unknown form $1" >&2; exit 2 ;;
  esac
}
# a store per form; kept-fraction forms get one per seed
store_of() { case $1 in *-k*) echo "$OUT/stores/$2-$1-s$3" ;; *) echo "$OUT/stores/$2-$1" ;; esac; }

DEFAULT_RECIPE="--model data/default-model --template fastkvzip-tiny --data sotu --exclude-docs data/default-model/heldout.json --min-doc-tokens 1500 --max-doc-tokens 4000 --ten-k-count 30 --cat-count 5 --cat-min-tokens 4000 --max-tokens 100000 --prefill-chunk 4096 --score-chunk 500"
STORIES_MODEL=${STORIES_MODEL:-$OUT/models/stories260K}
STORIES_RECIPE="--model $STORIES_MODEL --data sotu --min-doc-tokens 1000 --max-doc-tokens 8000 --ten-k-count 12 --cat-count 0 --max-tokens 25000 --prefill-chunk 2048 --score-chunk 500"

run_model() { # name recipe eval?
  local name=$1 recipe=$2 doeval=$3
  for form in $FORMS; do
    for seed in $SEEDS; do
      local store; store=$(store_of "$form" "$name" "$seed")
      local res="$OUT/results/$name-$form-s$seed.json"
      [ -f "$res" ] && continue
      if [ ! -f "$store/manifest.json" ] || ! grep -q '"complete": true' "$store/manifest.json"; then
        # shellcheck disable=SC2046
        $FKZ extract $recipe $(form_flags "$form" "$seed") --device cpu --threads "$THREADS" --json --out "$store" > "$store.extract.json" 2> "$store.extract.log"
      fi
      local tr="$OUT/train/$name-$form-s$seed"
      $FKZ train --features "$store" --out "$tr" --steps "$STEPS" --seed "$seed" --threads "$THREADS" --json > "$tr.json" 2> "$tr.log"
      local ev=null
      if [ "$doeval" = 1 ]; then
        $FKZ eval --config default --gates "$tr" --contexts 5 --max-context-tokens 2048 --prefill-chunk 1024 \
          --ratios 1,0.5,0.3,0.2 --scorers gates --threads "$THREADS" --quiet --out "$OUT/eval/$name-$form-s$seed"
        ev="$OUT/eval/$name-$form-s$seed/eval.json"
      fi
      python3 - "$name" "$form" "$seed" "$store" "$tr.json" "$ev" "$res" <<'PY'
import json, sys
name, form, seed, store, tr, ev, res = sys.argv[1:]
m = json.load(open(f"{store}/manifest.json"))
t = json.load(open(tr))
out = {"model": name, "form": form, "seed": int(seed), "storeBytes": m["totals"]["bytes"], "rows": m["totals"]["tokens"],
       "contextTokens": sum(s.get("contextTokens", s["tokens"]) for s in m["shards"]), "hiddenDtype": m["hiddenDtype"],
       "extract": {k: m["extract"].get(k) for k in ("quantBlock", "quantSource", "keepFraction", "keepSeed")},
       "train": {"steps": t["steps"], "seconds": t["seconds"], "tokens": t["tokens"], "mean": t["mean"], "layers": t["layers"]}}
if ev != "null":
    e = json.load(open(ev))
    out["eval"] = {str(c["ratio"]): {"reconAccRel": c["recon"]["accRel"], "reconLogLikDelta": c["recon"]["logLikDelta"],
                                     "retrieval": c["retrieval"]["acc"], "agreement": c["agreement"]} for c in e["cells"] if c["scorer"] == "gates"}
json.dump(out, open(res, "w"), indent=1)
PY
      echo "done $name $form seed $seed"
    done
  done
}

if [ "$WHICH" = default ] || [ "$WHICH" = all ]; then run_model default "$DEFAULT_RECIPE" 1; fi
if [ "$WHICH" = stories ] || [ "$WHICH" = all ]; then
  if [ ! -f "$STORIES_MODEL/config.json" ]; then
    src=""
    for d in /work/shared/models/stories260K "$(dirname "$0")/../../shared/models/stories260K"; do [ -f "$d/stories260K.bin" ] && src=$d && break; done
    [ -n "$src" ] || { echo "stories260K.bin not found; set STORIES_MODEL" >&2; exit 1; }
    $FKZ convert-llama2c "$src/stories260K.bin" "$src/tok512.bin" "$STORIES_MODEL"
  fi
  run_model stories "$STORIES_RECIPE" 0
fi
