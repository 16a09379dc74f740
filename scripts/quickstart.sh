#!/usr/bin/env bash
# Set up, then run the main job on the embedded default: Table V (every method and
# bound) at scale=cpu on Fashion-MNIST 2-2, local executor, then render its tables.
# Extra key=value arguments go to bench.sweep (e.g. grid=table3, seeds=[0,1]).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m bench.sweep grid=table5 scale=cpu store=results/store "$@"
exec .venv/bin/python -m bench.report store=results/store
