#!/usr/bin/env bash
# Fresh machine → a real pipeline on the default local stack.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/flowyml plugins
.venv/bin/flowyml stack list
.venv/bin/flowyml run examples/quickstart.py:pipeline "$@"
# Every run is recorded in .flowyml/runs/: the newest ones, then the pipeline as a diagram.
.venv/bin/flowyml runs list --limit 3
.venv/bin/flowyml show examples/quickstart.py:pipeline
