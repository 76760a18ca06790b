#!/usr/bin/env bash
# Create (once per machine) the project's Python environment and print its path.
# The environment lives in a per-user cache folder shared by every clone, keyed by the
# hash of python/requirements.txt, so a second clone reuses it. Only PyPI is used.
set -euo pipefail
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
echo "$venv"
