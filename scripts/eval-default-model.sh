#!/usr/bin/env bash
# Measures the default digits model as MODEL_CARD.md reports it: FID (in the feature space
# of the project's digit classifier) against the 1,000 held-out digits, mean confidence and
# class entropy, for DDIM 50 at n = 256 and 1,000, DPM-Solver++ 20 at n = 1,000, the full
# 1,000-step DDPM chain (n = 256, or --ddpm-n), and the share of samples classified as the
# label asked for; plus the real-vs-real floors at the same sample counts.
# Usage: scripts/eval-default-model.sh [--quick] [--ddpm-n N] [--per-label N] [--precision fp32|bf16] [--only-ddim]
#        (after `make build`; bf16 needs `make setup-openvino` before the build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
quick=0; ddpm_n=256; per_label=200; precision=fp32; only_ddim=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --ddpm-n) ddpm_n=$2; shift ;;
    --per-label) per_label=$2; shift ;;
    --precision) precision=$2; shift ;;
    --only-ddim) only_ddim=1 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
rt=./bin/runtime
held=data/mnist/test-images-idx3-ubyte.gz
train=data/mnist/train-images-idx3-ubyte.gz
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "## floors: training digits vs held-out digits"
for n in 256 1000; do echo "n=$n: $($rt eval --samples $train --real $held --n $n | head -n 1)"; done
run() { # name sampler steps n
  $rt sample --precision "$precision" --sampler "$2" --steps "$3" --n "$4" --seed 1 --out "$tmp/$1.npy" | tail -n 1
  $rt eval --samples "$tmp/$1.npy" --real $held --n "$4"
}
echo "# precision $precision"
if [ $only_ddim = 1 ]; then echo "## DDIM 50, n=1000"; run ddim1000 ddim 50 1000; exit 0; fi
echo "## DDIM 50, n=256"; run ddim256 ddim 50 256
echo "## DDIM 50, n=1000"; run ddim1000 ddim 50 1000
echo "## DPM-Solver++ 20, n=1000"; run dpm1000 dpm-solver++ 20 1000
if [ $quick = 0 ]; then echo "## DDPM 1000 steps, n=$ddpm_n"; run ddpm ddpm 1000 "$ddpm_n"; fi
echo "## --class-label k (DDIM 50, $per_label samples each): share classified as k"
for k in 0 1 2 3 4 5 6 7 8 9; do
  $rt sample --precision "$precision" --sampler ddim --steps 50 --n "$per_label" --class-label $k --seed 2 --out "$tmp/l$k.npy" >/dev/null
  hist=$($rt eval --samples "$tmp/l$k.npy" --real $held --n "$per_label" | grep '^predicted classes')
  hits=$(echo "$hist" | tr ' ' '\n' | grep "^$k:" | cut -d: -f2)
  echo "label $k: ${hits:-0}/$per_label ($hist)"
done
