# ddpm-rs: `make test` runs every test; `make build` builds the CLIs into ./bin.
# The first run creates the Python environment that provides libonnxruntime.so (and
# libtorch, for the trainer) in a per-user cache folder shared by every clone:
#   $${DDPM_RS_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/ddpm-rs}
# Cargo's build folder lives there too, so a second clone reuses the compiled crates.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CACHE := $(or $(DDPM_RS_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/ddpm-rs)
export DDPM_RS_CACHE := $(CACHE)
export CARGO_TARGET_DIR ?= $(CACHE)/target
# libonnxruntime.so of the environment, recorded into the runtime at build time; tch
# (torch-sys) builds against the environment's torch (LIBTORCH_USE_PYTORCH, its python
# first on PATH) and the binaries record torch/lib as an rpath.
ORT_DYLIB = $$(ls "$$(scripts/setup-env.sh)"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1)
ENV = DDPM_RS_ORT_DYLIB="$(ORT_DYLIB)" LIBTORCH_USE_PYTORCH=1 PATH="$$(scripts/setup-env.sh)/bin:$$PATH"
# The OpenVINO build of ONNX Runtime (for --precision bf16) is a set-up option:
# `make setup-openvino`. The tests and benches install it; build.rs finds it in the cache
# folder and records its path in the runtime.

.PHONY: help setup setup-openvino build test bench fixtures demo
help:
	@echo "make demo      set up and build (first run only), draw 64 digits: samples.png, trajectory.png"
	@echo "make test      set up (first run only), build, run every test"
	@echo "make build     build the CLIs into ./bin (runtime, exporter, trainer)"
	@echo "make bench     criterion benches and the comparison with PyTorch (see BENCHMARKS.md)"
	@echo "make setup-openvino  install the OpenVINO build of ONNX Runtime (for --precision bf16)"
	@echo "make fixtures  regenerate the test fixtures with diffusers (needs PyPI)"

setup:
	@scripts/setup-env.sh >/dev/null

setup-openvino: setup
	@scripts/setup-env.sh --openvino >/dev/null

build: setup
	$(ENV) cargo build --release --locked -p ddpm-runtime -p ddpm-exporter -p ddpm-trainer --bins
	@mkdir -p bin
	@for b in runtime exporter trainer; do cp -f "$(CARGO_TARGET_DIR)/release/$$b" bin/$$b; done
	@echo "built ./bin/runtime ./bin/exporter ./bin/trainer"

demo: build
	@./bin/runtime sample --n 64 --sampler ddim --steps 50 --seed 0 --out samples.png --trajectory trajectory.png
	@echo "samples:    $(CURDIR)/samples.png"
	@echo "trajectory: $(CURDIR)/trajectory.png"

test: setup-openvino
	$(ENV) cargo test --locked --workspace

bench: build setup-openvino
	$(ENV) cargo bench --locked -p ddpm-benches
	$(ENV) cargo build --release --locked -p ddpm-benches --bins
	"$$(scripts/fixture-env.sh)" scripts/bench_compare.py

fixtures: setup
	"$$(scripts/fixture-env.sh)" python/make_runtime_fixtures.py
	"$$(scripts/setup-env.sh)/bin/python" python/make_onnx_fixtures.py
	"$$(scripts/fixture-env.sh)" python/make_unet_fixtures.py
