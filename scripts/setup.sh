#!/usr/bin/env bash
# Idempotent setup on a fresh Debian machine with Python 3.11: the Fashion-MNIST Debian
# package (where apt is available), a virtual environment in .venv, the suite installed
# in it. Sourced by quickstart.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    echo "== installing the Fashion-MNIST Debian package"
    $SUDO apt-get update -qq >/dev/null || true
    $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null || echo "(apt failed: bench.run will try a torchvision download)"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import bench, methods, torch, torchdiffeq, submitit, pytest" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  echo "== installing funlora-bench and its dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q -e ".[test]"
  touch .venv/.installed
fi
