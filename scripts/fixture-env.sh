#!/usr/bin/env bash
# Print the python of a throwaway environment with diffusers on top of the project's
# environment (torch, numpy, onnx, onnxruntime), for scripts that make test fixtures.
# Usage: $(scripts/fixture-env.sh) python/make_fixtures.py
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
base=$("$root/scripts/setup-env.sh")
cache=$(dirname "$base")
key=$(cat "$root/python/requirements.txt" "$root/python/fixture-requirements.txt" | sha256sum | cut -c1-12)
venv="$cache/fixture-venv-$key"
exec 9>"$cache/.lock-fixture-$key"
flock 9
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  base_site=$("$base/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$base_site" > "$site/ddpm-rs-base.pth"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/python/fixture-requirements.txt" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin/python"
