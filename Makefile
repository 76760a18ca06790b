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
# Two environments, each made once per machine by scripts/setup-env.sh and shared by every
# clone: the ONNX Runtime library alone (what sampling needs: `make demo`), and the tests' and
# trainer's environment (libtorch from the torch wheel without its CUDA set, onnx for
# onnx.checker). tch (torch-sys) builds against that torch's folder (LIBTORCH) and the
# binaries record torch/lib as an rpath; the runtime records the library's path at build
# time. A machine with a GPU: DDPM_RS_GPU=1 make ... (torch with CUDA, onnxruntime-gpu).
SETUP_FLAG := $(if $(filter 1,$(DDPM_RS_GPU)),--gpu,)
ORT_DYLIB = $$(scripts/setup-env.sh --ort)
ifeq ($(DDPM_RS_GPU),1)
ORT_DYLIB = $$(ls "$$(scripts/setup-env.sh --gpu)"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1)
endif
ENV_ORT = DDPM_RS_ORT_DYLIB="$(ORT_DYLIB)"
ENV = $(ENV_ORT) LIBTORCH="$$(scripts/setup-env.sh --libtorch)" PATH="$$(scripts/setup-env.sh $(SETUP_FLAG))/bin:$$PATH"
# A third environment, for serving through Triton Inference Server: tritonserver (from
# nvidia-pytriton), tritonclient (whose protocol descriptors the runtime's client and the
# exporter's config check are generated from) and onnxruntime for its Python backend.
# `make build` and `make test` build the runtime CLI with `--server` (feature triton), and
# the tests start a real server from it; `make demo` needs none of it.
FEATURES := --features ddpm-cli/triton
ENV_TRITON = DDPM_RS_TRITON_ENV="$$(scripts/setup-env.sh --triton)"
# The OpenVINO build of ONNX Runtime (for --precision bf16) is a set-up option:
# `make setup-openvino`. The tests and benches install it; build.rs finds it in the cache
# folder and records its path in the runtime.

.PHONY: help setup setup-openvino build build-runtime test lint bench fixtures demo fuzz print-env
help:
	@echo "make demo      set up and build (first run only), draw 64 digits: samples.png, trajectory.png"
	@echo "make test      set up (first run only), lint, build, run every test"
	@echo "make lint      cargo fmt --check and clippy -D warnings on every crate and target"
	@echo "make build     build the CLIs into ./bin (runtime, exporter, trainer)"
	@echo "make bench     criterion benches and the comparison with PyTorch (see BENCHMARKS.md)"
	@echo "make setup-openvino  install the OpenVINO build of ONNX Runtime (for --precision bf16)"
	@echo "make fixtures  regenerate the test fixtures with diffusers (needs PyPI)"
	@echo "make fuzz      fuzz every input reader (scripts/fuzz.sh; outside make test)"

setup:
	@scripts/setup-env.sh $(SETUP_FLAG) >/dev/null
	@scripts/setup-env.sh --ort >/dev/null
	@scripts/setup-env.sh --triton >/dev/null

setup-openvino: setup
	@scripts/setup-env.sh --openvino >/dev/null

build: setup
	$(ENV) cargo build --release --locked -p ddpm-cli -p ddpm-exporter -p ddpm-trainer --bins $(FEATURES)
	@mkdir -p bin
	@for b in runtime exporter trainer; do cp -f "$(CARGO_TARGET_DIR)/release/$$b" bin/$$b; done
	@echo "built ./bin/runtime ./bin/exporter ./bin/trainer"

# Only what sampling needs: the ONNX Runtime library and the runtime binary (no libtorch).
build-runtime:
	@scripts/setup-env.sh --ort >/dev/null
	$(ENV_ORT) cargo build --release --locked -p ddpm-cli --bin runtime
	@mkdir -p bin
	@cp -f "$(CARGO_TARGET_DIR)/release/runtime" bin/runtime

demo: build-runtime
	@./bin/runtime sample --n 64 --sampler ddim --steps 50 --seed 0 --out samples.png --trajectory trajectory.png
	@echo "samples:    $(CURDIR)/samples.png"
	@echo "trajectory: $(CURDIR)/trajectory.png"

# --no-fail-fast: one failing test binary does not hide the others.
test: setup-openvino lint
	$(ENV) $(ENV_TRITON) cargo test --locked --workspace --no-fail-fast $(FEATURES)

# The habits that keep the code as it is: formatted, and no clippy warning anywhere.
lint: setup
	cargo fmt --all --check
	$(ENV) cargo clippy --locked --workspace --all-targets $(FEATURES) -- -D warnings

bench: build setup-openvino
	$(ENV) cargo bench --locked -p ddpm-benches
	$(ENV) cargo build --release --locked -p ddpm-benches --bins
	"$$(scripts/fixture-env.sh)" scripts/bench_compare.py

fixtures: setup
	"$$(scripts/fixture-env.sh)" python/make_runtime_fixtures.py
	"$$(scripts/setup-env.sh)/bin/python" python/make_onnx_fixtures.py
	"$$(scripts/fixture-env.sh)" python/make_unet_fixtures.py

# The environment the builds use, for scripts (scripts/fuzz.sh): eval "$$(make -s print-env)".
print-env: setup
	@echo "export DDPM_RS_CACHE='$(CACHE)' CARGO_TARGET_DIR='$(CARGO_TARGET_DIR)' DDPM_RS_ORT_DYLIB=\"$(ORT_DYLIB)\" LIBTORCH=\"$$(scripts/setup-env.sh --libtorch)\" DDPM_RS_TRITON_ENV=\"$$(scripts/setup-env.sh --triton)\""

fuzz:
	scripts/fuzz.sh
