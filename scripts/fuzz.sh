#!/usr/bin/env bash
# Fuzzing run of every input reader, outside `make test`: the property tests of
# runtime/tests/readers_proptest.rs (scheduler config JSON, the ONNX signature and metadata),
# eval/tests/readers_proptest.rs (.npy, IDX plain and gzip, PNG folders), models/tests/readers_proptest.rs (UNet2DModel config
# JSON, safetensors) and trainer/tests/data_proptest.rs (IDX, CIFAR-10 batches, image folders),
# each run with DDPM_RS_FUZZ_CASES random and mutated inputs per property (default 1,000,000;
# the readers that write and decode several files a case a fraction of it: IDX and PNG a
# fifth, trainer data a hundredth). These are
# proptest's random and mutation-based inputs on stable Rust, not coverage-guided fuzzing.
#   scripts/fuzz.sh [CASES]
set -euo pipefail
cd "$(dirname "$0")/.."
cases="${1:-1000000}"
eval "$(make -s print-env)"
run() {
  local crate=$1 test=$2 filter=$3 n=$4
  local t0=$SECONDS
  DDPM_RS_FUZZ_CASES=$n PROPTEST_MAX_SHRINK_ITERS=1000 cargo test --locked -q -p "$crate" --test "$test" -- "$filter" --test-threads 1 >&2
  echo "$crate $test $filter: $n cases clean in $((SECONDS - t0)) s"
}
run ddpm-eval readers_proptest npy_reader "$cases"
run ddpm-eval readers_proptest idx_and_png $((cases / 5))
run ddpm-runtime readers_proptest scheduler_config "$cases"
run ddpm-runtime readers_proptest onnx_signature "$cases"
run ddpm-models readers_proptest unet_config "$cases"
run ddpm-models readers_proptest safetensors "$cases"
run ddpm-trainer data_proptest data_readers $((cases / 100))
