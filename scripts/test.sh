#!/usr/bin/env bash
# Set up, then run the test suite (CPU, tiny presets). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The worked example of a method from outside the tree (its entry point is tested).
if ! .venv/bin/python -c "import funlora_plugin_example" 2>/dev/null; then
  echo "== installing examples/plugin (method plugin_example, through its entry point)"
  .venv/bin/python -m pip install -q --no-build-isolation --no-deps -e examples/plugin
fi
exec .venv/bin/python -m pytest -q "$@"
