#!/usr/bin/env bash
# The guidance trade-off of issue 15 for a model trained with label dropout: for each
# guidance scale, DDIM 50, 200 samples per label (seed 2, the label's samples 0..199 drawn
# as two shards of 100), the share classified as the label asked for; FID (n = 1,000: the
# first 100 of each label, merged), mean confidence and class entropy against the 1,000
# held-out digits, and the real-vs-real floor. Resumable: samples already drawn are kept in
# OUT (default $DDPM_RS_CACHE/eval-guidance/NAME). Prints one table row per scale, writes
# them to OUT/tradeoff.csv, draws OUT/tradeoff.png (FID and the worst label's share against
# the scale) and OUT/grid.png: one row per scale, the same seeds in every row.
# Usage: scripts/eval-guidance.sh --model FILE.onnx [--scales "1 1.5 2 3 5 8"] [--out DIR]
#        (after `make build`; DDPM_RS_RUNTIME=FILE runs another runtime binary)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
model=""; scales="1 1.5 2 3 5 8"; out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift ;;
    --scales) scales=$2; shift ;;
    --out) out=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$model" ] || { echo "usage: scripts/eval-guidance.sh --model FILE.onnx" >&2; exit 2; }
cache="${DDPM_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ddpm-rs}"
out=${out:-$cache/eval-guidance/$(basename "$model" .onnx)}
mkdir -p "$out"
rt=${DDPM_RS_RUNTIME:-./bin/runtime}
held=data/mnist/test-images-idx3-ubyte.gz
train=data/mnist/train-images-idx3-ubyte.gz
floor=$($rt eval --samples $train --real $held --n 1000 | sed -n 's/^FID \([0-9.]*\).*/\1/p')
echo "model $model; floor (1,000 training vs 1,000 held-out digits): FID $floor"
echo "| scale | FID (n = 1,000) | FID / floor | mean confidence | class entropy (nats) | worst label share | per-label share (of 200) |"
echo "|---|---|---|---|---|---|---|"
csv="scale,fid,fid_floor,fid_over_floor,mean_confidence,class_entropy,worst_label_share"
for s in $scales; do
  firsts=()
  shares=()
  for k in 0 1 2 3 4 5 6 7 8 9; do
    for first in 0 100; do
      f="$out/s$s-l$k-$first.npy"
      [ -f "$f" ] || $rt sample --model "$model" --sampler ddim --steps 50 --n 100 --first-index $first --class-label $k \
        --guidance-scale "$s" --seed 2 --out "$f" >/dev/null
    done
    firsts+=("$out/s$s-l$k-0.npy")
    $rt merge --out "$out/s$s-l$k.npy" "$out/s$s-l$k-0.npy" "$out/s$s-l$k-100.npy" >/dev/null
    hist=$($rt eval --samples "$out/s$s-l$k.npy" --real $held --n 200 | grep '^predicted classes')
    hits=$(echo "$hist" | tr ' ' '\n' | grep "^$k:" | cut -d: -f2)
    shares+=("${hits:-0}")
  done
  $rt merge --out "$out/s$s-fid.npy" "${firsts[@]}" >/dev/null
  e=$($rt eval --samples "$out/s$s-fid.npy" --real $held --n 1000)
  fid=$(echo "$e" | sed -n 's/^FID \([0-9.]*\).*/\1/p')
  conf=$(echo "$e" | sed -n 's/^mean confidence \([0-9.]*\).*/\1/p')
  ent=$(echo "$e" | sed -n 's/^class entropy \([0-9.]*\).*/\1/p')
  worst=$(printf '%s\n' "${shares[@]}" | sort -n | head -n 1)
  per=$(for k in 0 1 2 3 4 5 6 7 8 9; do printf '%s:%s ' $k "${shares[$k]}"; done)
  ratio=$(python3 -c "print(f'{$fid / $floor:.2f}')")
  share=$(python3 -c "print(f'{$worst / 200:.3f}')")
  echo "| $s | $fid | $ratio | $conf | $ent | $share | $per|"
  csv="$csv"$'\n'"$s,$fid,$floor,$ratio,$conf,$ent,$share"
done
printf '%s\n' "$csv" > "$out/tradeoff.csv"
$rt plot --csv "$out/tradeoff.csv" --x scale --y fid,fid_floor --y worst_label_share \
  --title "FID (n = 1,000, DDIM 50) against the guidance scale" \
  --title "worst label's share classified as asked (of 200)" --out "$out/tradeoff.png" >/dev/null
echo "table: $out/tradeoff.csv; plot: $out/tradeoff.png"
# The grid: one row per scale, the same 10 seeds (and uniform labels) in every row.
rows=()
for s in $scales; do
  f="$out/grid-s$s.npy"
  [ -f "$f" ] || $rt sample --model "$model" --sampler ddim --steps 50 --n 10 --seed 4 --guidance-scale "$s" --out "$f" >/dev/null
  rows+=("$f")
done
$rt merge --out "$out/grid.png" --cols 10 "${rows[@]}" >/dev/null
echo "grid (rows: scales $scales): $out/grid.png"
