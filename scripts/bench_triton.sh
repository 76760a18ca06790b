#!/usr/bin/env bash
# Samples/s of the digits model served by Triton Inference Server (the CPU-only tritonserver
# of the Triton environment, Python backend running onnxruntime) at --concurrency 1, 2, 4
# and 8, next to local sampling in this process, and the request overhead per model
# evaluation (ms per request through the server minus ms per local evaluation, same batch).
# Usage: scripts/bench_triton.sh [--n N] [--steps S] [--batch-size B]   (after `make build`)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
n=64; steps=20; batch=16
while [ $# -gt 0 ]; do
  case "$1" in
    --n) n=$2; shift ;;
    --steps) steps=$2; shift ;;
    --batch-size) batch=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
env_dir=$(scripts/setup-env.sh --triton)
site=$(ls -d "$env_dir"/lib/python3*/site-packages | head -n 1)
ts="$site/pytriton/tritonserver"
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
threads=$(nproc)
./bin/exporter triton --onnx models/pretrained/digits/digits.onnx --repo "$tmp/repo" --name digits --backend python --threads "$threads" >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http=$(port); grpc=$(port); metrics=$(port)
PYTHONPATH="$site" setsid "$ts/bin/tritonserver" --model-repository "$tmp/repo" --backend-directory "$ts/backends" \
  --http-port "$http" --grpc-port "$grpc" --metrics-port "$metrics" --http-address 127.0.0.1 --grpc-address 127.0.0.1 \
  --allow-metrics false >"$tmp/server.log" 2>&1 &
pid=$!
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$http/v2/health/ready" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$http/v2/health/ready" >/dev/null || { cat "$tmp/server.log" >&2; exit 1; }
common=(--sampler ddim --steps "$steps" --n "$n" --batch-size "$batch" --seed 0)
field() { sed -E "s/.*: ([0-9.]+) s, ([0-9.]+) samples\/s, ([0-9.]+) ms per model evaluation.*/\\$1/"; }
echo "Machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; tritonserver 2.51.0 (nvidia-pytriton 0.7.0), Python backend, onnxruntime $("$env_dir/bin/python" -c 'import onnxruntime; print(onnxruntime.__version__)') with $threads intra-op threads; client: ./bin/runtime."
echo "Command: \`scripts/bench_triton.sh --n $n --steps $steps --batch-size $batch\` (DDIM $steps steps, $n samples in batches of $batch; $(date -u +%Y-%m-%d\ %H:%M) UTC)."
echo
echo "| run | samples/s | ms per model evaluation | ratio to local |"
echo "|---|---|---|---|"
./bin/runtime sample --threads "$threads" "${common[@]}" --out "$tmp/warm.npy" >/dev/null
local_line=$(./bin/runtime sample --threads "$threads" "${common[@]}" --out "$tmp/local.npy")
local_sps=$(echo "$local_line" | field 2); local_ms=$(echo "$local_line" | field 3)
echo "| local (this process, fp32) | $local_sps | $local_ms | 1.00 |"
# Warm-up: the server's Python model builds one onnxruntime session per merged batch size
# on first use; every concurrency runs once before anything is measured.
for k in 1 2 4 8 8; do
  ./bin/runtime sample --server "grpc://127.0.0.1:$grpc" --model-name digits --concurrency "$k" "${common[@]}" --out "$tmp/warm.npy" >/dev/null
done
for k in 1 2 4 8; do
  line=$(./bin/runtime sample --server "grpc://127.0.0.1:$grpc" --model-name digits --concurrency "$k" "${common[@]}" --out "$tmp/remote-$k.npy")
  sps=$(echo "$line" | field 2); ms=$(echo "$line" | field 3)
  echo "| Triton, --concurrency $k | $sps | $ms | $(python3 -c "print(f'{$sps / $local_sps:.2f}')") |"
  cmp -s "$tmp/remote-1.npy" "$tmp/remote-$k.npy" || echo "(concurrency $k: bytes differ from concurrency 1)"
done
# The request overhead: batch 1, one request at a time, against local batch 1.
one=(--sampler ddim --steps "$steps" --n 8 --batch-size 1 --seed 0)
l1=$(./bin/runtime sample --threads "$threads" "${one[@]}" --out "$tmp/l1.npy" | field 3)
r1=$(./bin/runtime sample --server "grpc://127.0.0.1:$grpc" --model-name digits "${one[@]}" --out "$tmp/r1.npy" | field 3)
lb=$local_ms
rb=$(./bin/runtime sample --server "grpc://127.0.0.1:$grpc" --model-name digits "${common[@]}" --out "$tmp/rb.npy" | field 3)
echo
echo "Request overhead per model evaluation (ms per request through Triton minus ms per local evaluation): batch 1: $r1 - $l1 = $(python3 -c "print(f'{$r1 - $l1:.2f}')") ms; batch $batch: $rb - $lb = $(python3 -c "print(f'{$rb - $lb:.2f}')") ms."
