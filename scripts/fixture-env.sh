#!/usr/bin/env bash
# Print the python of an environment with full PyTorch and diffusers (and onnx, onnxruntime,
# numpy), for the scripts that make test fixtures and for the comparison with PyTorch
# (make bench). Made once per machine in the cache folder, keyed by its requirements file.
# Usage: $(scripts/fixture-env.sh) python/make_fixtures.py
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache="${DDPM_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ddpm-rs}"
mkdir -p "$cache"
req="$root/python/fixture-requirements.txt"
key=$(sha256sum "$req" | cut -c1-12)
venv="$cache/fixture-venv-$key"
exec 9>"$cache/.lock-fixture-$key"
flock 9
if [ ! -f "$venv/.complete" ]; then
  echo "setup: creating the fixture environment $venv (torch with CUDA libraries, diffusers; first run only)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin/python"
