#!/usr/bin/env bash
# Set up (or refresh) .venv with flowyml-core, every plugin in plugins/ and the
# test requirements. Idempotent; safe to run on a fresh machine (needs
# python3 >= 3.10 with venv, and access to the package index). The test-only
# plugins of tests/plugins/ are not installed: tests/core/conftest.py makes
# them visible to the tests that use them, so `flowyml plugins` lists only real ones.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
"$VPY" -m pip install -q --disable-pip-version-check -U pip 'setuptools>=77' wheel
pkgs=(-e .)
for dir in plugins/*/; do
  [ -f "$dir/pyproject.toml" ] && pkgs+=(-e "$dir")
done
# compat mode: a plain .pth path entry instead of an import hook, which would
# add ~20 ms to every start of the flowyml command.
"$VPY" -m pip install -q --disable-pip-version-check --config-settings editable_mode=compat "${pkgs[@]}" -r requirements-dev.txt
# A venv made before the test plugins stopped being installed still has them.
for fixture in tests/plugins/*/; do
  dist=$(basename "$fixture")
  if "$VPY" -m pip show -q "$dist" > /dev/null 2>&1; then
    "$VPY" -m pip uninstall -q -y --disable-pip-version-check "$dist"
  fi
done
# Byte-compile our sources once: with PYTHONDONTWRITEBYTECODE set, Python
# would otherwise recompile them on every start.
"$VPY" -m compileall -q flowyml_core plugins > /dev/null
