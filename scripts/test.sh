#!/usr/bin/env bash
# Fresh machine → the whole test suite. Extra arguments go to pytest.
#
# The suite runs in FLOWYML_TEST_WORKERS pytest-xdist processes (default 2),
# one test file per worker at a time (--dist loadfile: a file's tests share
# its module-scoped servers). Most tests wait on subprocesses, containers and
# servers, so two workers on two cores take ~8.5 minutes where one took ~13.
# Each worker starts its own servers (dockerd, registry, emulators) on free
# ports. FLOWYML_TEST_WORKERS=0 runs everything in this process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
workers=${FLOWYML_TEST_WORKERS:-2}
if [ "$workers" = "0" ]; then
  exec .venv/bin/python -m pytest "$@"
fi
exec .venv/bin/python -m pytest -n "$workers" --dist loadfile "$@"
