#!/usr/bin/env bash
# The figures of issue 14 for one model: the exact variational bound (every t) in bits/dim
# with its interval on the 1,000 held-out digits, its time, the terms against t and the
# rate-distortion curve (CSV and PNG); with --fid, FID, confidence and entropy (n = 1,000)
# of DDPM at 25, 50, 100 and 1,000 steps (the L_hybrid model's learned variances), or of the
# chains named by --sampler SAMPLER:STEPS (repeatable; e.g. ddim:50, dpm-solver++:20 for the
# default model), with --guidance-scale S passed on. Outputs go to OUT (default
# $DDPM_RS_CACHE/eval-likelihood/NAME). Everything is resumable: stopped (Ctrl-C, the end of
# a sitting), the same command continues where it was. The bound continues from
# OUT/nll-checkpoint.json; samples are drawn in shards of 100 (`sample --first-index`, joined
# by `runtime merge`: the bytes of one run), and shards and sets already drawn are kept.
# --no-nll skips the bound.
# Usage: scripts/eval-likelihood.sh --model FILE.onnx [--no-nll] [--fid] [--sampler S:K]...
#        [--guidance-scale S] [--batch-size B] [--threads N] [--out DIR]   (after `make build`)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
model=""; fid=0; nll=1; batch=32; out=""; threads=(); chains=(); gs=(); suffix=""
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift ;;
    --fid) fid=1 ;;
    --no-nll) nll=0 ;;
    --sampler) chains+=("$2"); fid=1; shift ;;
    --guidance-scale) gs=(--guidance-scale "$2"); suffix="-scale$2"; shift ;;
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
if [ $nll = 1 ]; then
  echo "## $model: exact bound on the 1,000 held-out digits (every t)"
  start=$(date +%s)
  $rt nll --model "$model" --data $held --n 1000 --batch-size "$batch" --seed 0 "${threads[@]}" \
    --checkpoint "$out/nll-checkpoint.json" --csv "$out/terms.csv" --plot "$out/terms.png" --rd "$out/rd.png" | tail -n 3
  echo "wall time of this sitting: $(( $(date +%s) - start )) s"
fi
if [ $fid = 1 ]; then
  [ ${#chains[@]} -gt 0 ] || chains=(ddpm:25 ddpm:50 ddpm:100 ddpm:1000)
  for chain in "${chains[@]}"; do
    sampler=${chain%%:*}; steps=${chain##*:}
    f="$out/$sampler$steps$suffix.npy"
    if [ ! -f "$f" ]; then
      mkdir -p "$f.shards"
      shards=()
      for i in 0 1 2 3 4 5 6 7 8 9; do
        shard="$f.shards/$i.npy"
        [ -f "$shard" ] || $rt sample --model "$model" --sampler "$sampler" --steps "$steps" --n 100 --first-index $((i * 100)) \
          --batch-size "$batch" --seed 1 "${gs[@]}" "${threads[@]}" --out "$shard" | tail -n 1
        shards+=("$shard")
      done
      $rt merge --out "$f" "${shards[@]}"
    fi
    echo "## $sampler $steps steps${gs[*]:+, ${gs[*]}}, n = 1,000"
    $rt eval --samples "$f" --real $held --n 1000
  done
fi
