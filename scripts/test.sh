#!/usr/bin/env bash
# Set up, then run the test suite (CPU, tiny presets). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
