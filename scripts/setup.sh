#!/usr/bin/env bash
# Set up (or refresh) .venv with flowyml-core, every plugin in plugins/, the
# test plugin, and the test requirements. Idempotent; safe to run on a fresh
# machine (needs python3 >= 3.10 with venv, and access to the package index).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
"$VPY" -m pip install -q --disable-pip-version-check -U pip 'setuptools>=77' wheel
pkgs=(-e .)
for dir in plugins/*/ tests/plugins/*/; do
  [ -f "$dir/pyproject.toml" ] && pkgs+=(-e "$dir")
done
# compat mode: a plain .pth path entry instead of an import hook, which would
# add ~20 ms to every start of the flowyml command.
"$VPY" -m pip install -q --disable-pip-version-check --config-settings editable_mode=compat "${pkgs[@]}" -r requirements-dev.txt
# Byte-compile our sources once: with PYTHONDONTWRITEBYTECODE set, Python
# would otherwise recompile them on every start.
"$VPY" -m compileall -q flowyml_core plugins > /dev/null
