#!/usr/bin/env bash
# Create (once per machine) the project's Python environment and print its path.
# The environment lives in a per-user cache folder shared by every clone, keyed by the
# hash of python/requirements.txt, so a second clone reuses it. Only PyPI is used.
#
# scripts/setup-env.sh --openvino: also (once) the OpenVINO build of ONNX Runtime (the
# `onnxruntime-openvino` wheel, unpacked beside the environment, not into it: it would
# replace the default build); prints the path of its libonnxruntime.so instead.
set -euo pipefail
openvino=0
case "${1:-}" in
  --openvino) openvino=1 ;;
  "") ;;
  *) echo "usage: scripts/setup-env.sh [--openvino]" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
req="$root/python/requirements.txt"
cache="${DDPM_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ddpm-rs}"
key=$(sha256sum "$req" | cut -c1-12)
venv="$cache/venv-$key"
mkdir -p "$cache"
exec 9>"$cache/.lock-$key"
flock 9
if [ ! -f "$venv/.complete" ]; then
  echo "setup: creating the Python environment in $venv (first run on this machine)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
  touch "$venv/.complete"
fi
if [ "$openvino" = 1 ]; then
  # 1.24.1 bundles OpenVINO 2025.4 and serves ONNX Runtime API 24, the version the runtime asks for.
  ov_version=1.24.1
  ov="$cache/ort-openvino-$ov_version"
  if [ ! -f "$ov/.complete" ]; then
    echo "setup: installing onnxruntime-openvino $ov_version into $ov (first run on this machine)" >&2
    rm -rf "$ov"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --target "$ov" "onnxruntime-openvino==$ov_version" >&2
    touch "$ov/.complete"
  fi
  ls "$ov"/onnxruntime/capi/libonnxruntime.so.* | head -n 1
  exit 0
fi
echo "$venv"
