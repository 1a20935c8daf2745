#!/usr/bin/env bash
# Build a wheel of flowyml-core and of every plugin under plugins/ into one
# directory (default: dist/), so that any of them installs with one command:
#
#   bash scripts/build-wheels.sh
#   pip install --find-links dist flowyml-vertex     # in the environment you want it in
#
# The flowyml packages are not on the package index; --find-links makes pip
# take them (and the plugins they depend on: vertex needs gcs and docker) from
# dist/, and everything else from the index as usual.
#
# Usage: bash scripts/build-wheels.sh [DIR] [extra pip wheel options, e.g. --no-build-isolation]
# Python: $PYTHON, else this checkout's .venv, else python3 (it needs pip).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-dist}
shift || true
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
packages=(.)
for dir in plugins/*/; do
  [ -f "$dir/pyproject.toml" ] && packages+=("${dir%/}")
done
# setuptools builds in each package's build/ directory and reuses what it
# finds there: a module deleted from the sources would live on in the wheel.
for pkg in "${packages[@]}"; do
  rm -rf "$pkg/build"
done
mkdir -p "$dest"
"$PY" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$dest" "$@" "${packages[@]}"
for pkg in "${packages[@]}"; do
  rm -rf "$pkg/build"
done
echo "wheels in $dest:"
ls -1 "$dest"/*.whl
echo "install one with: pip install --find-links $dest flowyml-NAME   (e.g. flowyml-local, flowyml-vertex)"
