#!/usr/bin/env bash
# Ship a digits run as the project's default model (models/pretrained/digits):
# the unet/ folder with float16 weights, its scheduler config, and the .onnx exported from
# exactly those weights (float16 storage, float32 compute), verified against libtorch.
# Usage: scripts/ship-default-model.sh [RUN]   (default: the cache's runs/digits)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cache="${DDPM_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ddpm-rs}"
run="${1:-$cache/runs/digits}"
dest=models/pretrained/digits
make build >/dev/null
./bin/exporter fp16-unet --ckpt "$run/unet" --out "$dest/unet"
mkdir -p "$dest/scheduler"
cp "$run/scheduler/scheduler_config.json" "$dest/scheduler/scheduler_config.json"
./bin/exporter onnx --ckpt "$dest" --weights-fp16 --out "$dest/digits.onnx"
echo "step: $(cat "$run/train_state/LATEST")"
