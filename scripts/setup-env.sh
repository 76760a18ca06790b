#!/usr/bin/env bash
# Creates (once per machine) one of the project's environments and prints its path. Each
# lives in the per-user cache folder shared by every clone,
#   ${DDPM_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ddpm-rs},
# keyed by the hash of its pinned requirements file, so a second clone reuses it. Only PyPI
# is used.
#
#   scripts/setup-env.sh            the tests' and the trainer's environment (a venv with the
#                                   CPU-only set of python/requirements.txt, ~1.3 GB); prints
#                                   the venv's path
#   scripts/setup-env.sh --ort      only ONNX Runtime for sampling (the onnxruntime wheel
#                                   unpacked without its dependencies, ~65 MB); prints the
#                                   path of its libonnxruntime.so
#   scripts/setup-env.sh --openvino the OpenVINO build of ONNX Runtime (for --precision bf16);
#                                   prints the path of its libonnxruntime.so
#   scripts/setup-env.sh --gpu      the full environment for a machine with a GPU (torch with
#                                   its CUDA libraries, onnxruntime-gpu); prints the venv's path
#   scripts/setup-env.sh --triton   the Triton test environment (tritonserver 2.51.0 from
#                                   nvidia-pytriton, tritonclient, onnxruntime; ~0.5 GB);
#                                   prints the venv's path
#   scripts/setup-env.sh --libtorch the libtorch folder (LIBTORCH) of the environment above
#                                   (of --gpu when DDPM_RS_GPU=1)
set -euo pipefail
mode="${1:-venv}"
case "$mode" in
  venv|--ort|--openvino|--gpu|--triton|--libtorch) ;;
  *) echo "usage: scripts/setup-env.sh [--ort | --openvino | --gpu | --triton | --libtorch]" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
cache="${DDPM_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ddpm-rs}"
mkdir -p "$cache"
pip_quiet=(--quiet --disable-pip-version-check --no-input --root-user-action=ignore)

# A folder of unpacked wheels (no venv): $1 name prefix, $2 requirements file.
unpacked() {
  local key dir
  key=$(sha256sum "$2" | cut -c1-12)
  dir="$cache/$1-$key"
  exec 9>"$cache/.lock-$1-$key"
  flock 9
  if [ ! -f "$dir/.complete" ]; then
    echo "setup: installing $(grep -v '^#' "$2" | xargs) into $dir (first run on this machine)" >&2
    rm -rf "$dir" "$dir.tmp"
    python3 -m pip install "${pip_quiet[@]}" --no-deps --no-compile --target "$dir.tmp" -r "$2" >&2
    # Only libonnxruntime.so is used: drop the Python extension module (30 MB).
    rm -f "$dir.tmp"/onnxruntime/capi/onnxruntime_pybind11_state*.so
    touch "$dir.tmp/.complete"
    mv "$dir.tmp" "$dir"
  fi
  exec 9>&-
  ls "$dir"/onnxruntime/capi/libonnxruntime.so.* | head -n 1
}

# A virtual environment: $1 name prefix, $2 requirements file, $3 "no-deps" or "deps".
venv() {
  local key dir deps=()
  key=$(sha256sum "$2" | cut -c1-12)
  dir="$cache/$1-$key"
  [ "$3" = no-deps ] && deps=(--no-deps)
  exec 9>"$cache/.lock-$1-$key"
  flock 9
  if [ ! -f "$dir/.complete" ]; then
    echo "setup: creating the Python environment $dir (first run on this machine)" >&2
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install "${pip_quiet[@]}" "${deps[@]}" -r "$2" >&2
    touch "$dir/.complete"
  fi
  exec 9>&-
  echo "$dir"
}

case "$mode" in
  --ort) unpacked ort "$root/python/requirements-ort.txt" ;;
  # 1.24.1 bundles OpenVINO 2025.4 and serves ONNX Runtime API 24, the version the runtime asks for.
  --openvino) unpacked ort-openvino "$root/python/requirements-openvino.txt" ;;
  --gpu) venv venv-gpu "$root/python/requirements-gpu.txt" deps ;;
  --triton)
    v=$(venv venv-triton "$root/python/requirements-triton.txt" deps)
    # The Python backend runs the stub built for the Python it embeds: the local one's,
    # copied beside the backend (its RPATH finds the wheel's libraries from there).
    t=$(ls -d "$v"/lib/python3*/site-packages/pytriton/tritonserver | head -n 1)
    py=$("$v/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    if [ ! -x "$t/backends/python/triton_python_backend_stub" ]; then
      cp "$t/python_backend_stubs/$py/triton_python_backend_stub" "$t/backends/python/triton_python_backend_stub.tmp"
      mv "$t/backends/python/triton_python_backend_stub.tmp" "$t/backends/python/triton_python_backend_stub"
    fi
    echo "$v" ;;
  --libtorch)
    if [ "${DDPM_RS_GPU:-0}" = 1 ]; then v=$(venv venv-gpu "$root/python/requirements-gpu.txt" deps)
    else v=$(venv venv "$root/python/requirements.txt" no-deps); fi
    ls -d "$v"/lib/python3*/site-packages/torch | head -n 1 ;;
  venv) venv venv "$root/python/requirements.txt" no-deps ;;
esac
