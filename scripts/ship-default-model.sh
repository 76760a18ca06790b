#!/usr/bin/env bash
# Ship a digits run as the project's default model (models/pretrained/digits):
# the unet/ folder with float16 weights, its scheduler config, its guidance.json (runs
# trained with label dropout: the null label, and the recommended guidance scale), and the
# .onnx exported from exactly those weights (float16 storage, float32 compute), verified
# against libtorch.
# With --name NAME, a second built-in model instead (models/pretrained/NAME/NAME.onnx,
# `runtime sample --model-name NAME`), e.g. digits-hybrid.
# Usage: scripts/ship-default-model.sh [RUN] [--name NAME] [--guidance-scale S] [--no-clip-sample]
#        (default RUN: the cache's runs/digits; NAME: digits; S: the run's guidance.json, else none;
#        --no-clip-sample ships the run's scheduler config with clip_sample false: with it
#        true, diffusers' DDIM step clips x_0 but keeps the unclipped epsilon, and guided
#        chains fall apart, MODEL_CARD.md)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cache="${DDPM_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ddpm-rs}"
run="$cache/runs/digits"; scale=""; clip=keep; name=digits
while [ $# -gt 0 ]; do
  case "$1" in
    --guidance-scale) scale=$2; shift ;;
    --no-clip-sample) clip=false ;;
    --name) name=$2; shift ;;
    -*) echo "unknown argument $1" >&2; exit 2 ;;
    *) run=$1 ;;
  esac
  shift
done
dest=models/pretrained/$name
make build >/dev/null
./bin/exporter fp16-unet --ckpt "$run/unet" --out "$dest/unet"
mkdir -p "$dest/scheduler"
python3 - "$run/scheduler/scheduler_config.json" "$dest/scheduler/scheduler_config.json" "$clip" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
if sys.argv[3] == "false":
    c["clip_sample"] = False
open(sys.argv[2], "w").write(json.dumps(c, indent=2) + "\n")
PY
if [ -f "$run/guidance.json" ]; then
  python3 - "$run/guidance.json" "$dest/guidance.json" "$scale" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))
if sys.argv[3]:
    g["guidance_scale"] = float(sys.argv[3])
open(sys.argv[2], "w").write(json.dumps(g, indent=2) + "\n")
PY
else
  [ -z "$scale" ] || { echo "--guidance-scale $scale: $run has no guidance.json (no null label)" >&2; exit 2; }
  rm -f "$dest/guidance.json"
fi
./bin/exporter onnx --ckpt "$dest" --weights-fp16 --out "$dest/$name.onnx"
if [ -f "$run/train_state/LATEST" ]; then echo "step: $(cat "$run/train_state/LATEST")"; fi
