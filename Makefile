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
# libonnxruntime.so of the environment, recorded into the runtime at build time.
ORT_DYLIB = $$(ls "$$(scripts/setup-env.sh)"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1)

.PHONY: help setup build test bench fixtures clean-env
help:
	@echo "make test      set up (first run only), build, run every test"
	@echo "make build     build the CLIs into ./bin (runtime)"
	@echo "make bench     criterion benches (see BENCHMARKS.md)"
	@echo "make fixtures  regenerate the test fixtures with diffusers (needs PyPI)"

setup:
	@scripts/setup-env.sh >/dev/null

build: setup
	DDPM_RS_ORT_DYLIB="$(ORT_DYLIB)" cargo build --release --locked -p ddpm-runtime --bins
	@mkdir -p bin
	@cp -f "$(CARGO_TARGET_DIR)/release/runtime" bin/runtime
	@echo "built ./bin/runtime"

test: setup
	DDPM_RS_ORT_DYLIB="$(ORT_DYLIB)" cargo test --locked --workspace

bench: setup
	DDPM_RS_ORT_DYLIB="$(ORT_DYLIB)" cargo bench --locked -p ddpm-benches

fixtures: setup
	"$$(scripts/fixture-env.sh)" python/make_runtime_fixtures.py
	"$$(scripts/setup-env.sh)/bin/python" python/make_onnx_fixtures.py
