#!/usr/bin/env bash
# One command for a GPU node: the suite's CUDA paths checked and timed (benchmarks/gpu_node.py):
# the smoke grid through bench.sweep with jobs=4, a cell killed twice and resumed, determinism,
# Table V at scale=cpu (one seed), perf.py for every method in fp32 and bf16, gpu_check.py;
# --quick: the smoke sweep, resume, determinism and perf of three methods (about 5 minutes).
# Writes results/gpu/check.json and check.md; exits 1 if a check fails, 2 without CUDA.
#
#   bash scripts/gpu-check.sh                      # in an environment with the suite's packages
#   bash scripts/gpu-check.sh --bundle DIR         # no network: install from scripts/offline-bundle.sh's DIR
#   bash scripts/gpu-check.sh --bundle DIR --quick
# Other arguments go to benchmarks/gpu_node.py (--quick, --out, --skip perf,table5, --data-root ...).
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=""; ARGS=(); DEVICE=cuda
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    --device) DEVICE=${2:-}; ARGS+=("$1" "${2:-}"); shift; [ $# -gt 0 ] && shift ;;   # cpu: the code paths (tests)
    --bundle) [ -n "${2:-}" ] && [ "${2#-}" = "$2" ] || { echo "error: --bundle needs a folder (made by scripts/offline-bundle.sh)" >&2; exit 2; }
              BUNDLE=$2; shift 2 ;;
    --bundle=*) BUNDLE=${1#*=}; shift ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
PY=${PYTHON:-}
if [ -z "$PY" ]; then if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi; fi
if [ -n "$BUNDLE" ]; then
  [ -d "$BUNDLE/wheels" ] || { echo "error: --bundle $BUNDLE has no wheels/ (make it with scripts/offline-bundle.sh)" >&2; exit 2; }
  HERE=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  # Wheels with compiled parts (PyYAML, safetensors) only install on the Python they were made for.
  MADE_FOR=$(sed -n '1s/.*for CPython \([0-9.]*\).*/\1/p' "$BUNDLE/MANIFEST.txt" 2>/dev/null || true)
  if [ -n "$MADE_FOR" ] && [ "$MADE_FOR" != "$HERE" ]; then
    echo "error: --bundle $BUNDLE is for CPython $MADE_FOR and $PY is $HERE" \
         "(make one for it: bash scripts/offline-bundle.sh OUT --python $HERE, or set PYTHON=python$MADE_FOR)" >&2
    exit 2
  fi
  SITE="$BUNDLE/site-$HERE"
  if [ ! -f "$SITE/.installed" ]; then   # beside the node's own torch, never replacing it
    echo "== installing the bundle's wheels into $SITE (no network)"
    if ! LOG=$("$PY" -m pip install -q --no-index --no-deps --target "$SITE" "$BUNDLE"/wheels/*.whl 2>&1); then
      echo "error: installing --bundle $BUNDLE's wheels failed: $(printf '%s\n' "$LOG" | grep -m1 -i error)" >&2
      exit 2
    fi
    touch "$SITE/.installed"
  fi
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  ARGS+=(--data-root "$BUNDLE/data")
fi
DEVICE=$DEVICE "$PY" - <<'PYEOF' || exit 2
import importlib.util
import os
import sys

# exactly what the checks import (tests/test_torch_only_node.py runs them with nothing else installed)
need = ("torch", "torchvision", "numpy", "scipy", "sklearn", "PIL", "omegaconf", "yaml", "submitit", "torchdiffeq",
        "lycoris", "tqdm", "safetensors", "filelock")
missing = [m for m in need if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"error: missing Python packages: {', '.join(missing)} "
             "(scripts/offline-bundle.sh OUT --python X.Y --torch X.Y makes them installable without network)")
import torch

if os.environ["DEVICE"].startswith("cuda") and not torch.cuda.is_available():
    sys.exit(f"error: no CUDA device here (torch {torch.__version__}: torch.cuda.is_available() is False); "
             "run this on a GPU node")
PYEOF
exec "$PY" benchmarks/gpu_node.py "${ARGS[@]}"
