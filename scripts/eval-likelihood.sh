#!/usr/bin/env bash
# The figures of issue 14 for one model: the exact variational bound (every t) in bits/dim
# with its interval on the 1,000 held-out digits, its wall time, the terms against t and the
# rate-distortion curve (CSV and PNG); with --fid, FID, confidence and entropy (n = 1,000)
# of DDPM at 25, 50, 100 and 1,000 steps (the L_hybrid model's learned variances). Outputs
# go to OUT (default $DDPM_RS_CACHE/eval-likelihood/NAME); samples already drawn are kept, and
# the bound continues from OUT/nll-checkpoint.json when it was stopped.
# Usage: scripts/eval-likelihood.sh --model FILE.onnx [--fid] [--batch-size B] [--threads N] [--out DIR]
#        (after `make build`)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
model=""; fid=0; batch=32; out=""; threads=()
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift ;;
    --fid) fid=1 ;;
    --batch-size) batch=$2; shift ;;
    --out) out=$2; shift ;;
    --threads) threads=(--threads "$2"); shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$model" ] || { echo "usage: scripts/eval-likelihood.sh --model FILE.onnx [--fid]" >&2; exit 2; }
cache="${DDPM_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ddpm-rs}"
out=${out:-$cache/eval-likelihood/$(basename "$model" .onnx)}
mkdir -p "$out"
rt=${DDPM_RS_RUNTIME:-./bin/runtime}
held=data/mnist/test-images-idx3-ubyte.gz
echo "## $model: exact bound on the 1,000 held-out digits (every t)"
# --checkpoint: stopped (Ctrl-C, the end of a sitting), the same command continues where
# it was; its time line gives the seconds of all sittings together.
start=$(date +%s)
$rt nll --model "$model" --data $held --n 1000 --batch-size "$batch" --seed 0 "${threads[@]}" \
  --checkpoint "$out/nll-checkpoint.json" --csv "$out/terms.csv" --plot "$out/terms.png" --rd "$out/rd.png" | tail -n 3
echo "wall time of this sitting: $(( $(date +%s) - start )) s"
if [ $fid = 1 ]; then
  for steps in 25 50 100 1000; do
    f="$out/ddpm$steps.npy"
    [ -f "$f" ] || $rt sample --model "$model" --sampler ddpm --steps $steps --n 1000 --batch-size "$batch" --seed 1 "${threads[@]}" --out "$f" | tail -n 1
    echo "## DDPM $steps steps, n = 1,000"
    $rt eval --samples "$f" --real $held --n 1000
  done
fi
