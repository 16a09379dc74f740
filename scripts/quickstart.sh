#!/usr/bin/env bash
# Set up, then run the main job on the embedded default: Fashion-MNIST 2-2, vanilla_mul,
# scale=cpu, local machine. Extra key=value arguments are passed to bench.run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m bench.run dataset=fashion_mnist split=2-2 method=vanilla_mul scale=cpu seed=0 "$@"
