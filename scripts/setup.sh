#!/usr/bin/env bash
# Idempotent setup on a fresh Debian machine with Python 3.11: the Fashion-MNIST Debian
# package (where apt is available), a virtual environment in .venv, the suite installed
# in it. Called by quickstart.sh and test.sh. One line per step; apt's and pip's own output
# goes to .setup.log, whose path is printed when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
LOG=$PWD/.setup.log
: >"$LOG"
step() {  # STEP-NAME COMMAND...: run it with its output in the log; one error line if it fails
  local name=$1; shift
  echo "== $name"
  if ! "$@" >>"$LOG" 2>&1; then
    echo "error: setup step '$name' failed; its output is in $LOG" >&2
    exit 1
  fi
}

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    $SUDO apt-get update -qq >>"$LOG" 2>&1 || true
    if ! (echo "== installing the Fashion-MNIST Debian package"; $SUDO apt-get install -y -qq dataset-fashion-mnist) >>"$LOG" 2>&1; then
      echo "== (apt could not install dataset-fashion-mnist: bench.run will try a torchvision download; see $LOG)"
    else
      echo "== installed the Fashion-MNIST Debian package"
    fi
  fi
fi

if [ ! -x .venv/bin/python ]; then
  step "creating .venv" "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import bench, methods, torch, torchdiffeq, submitit, pytest" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/python -m pip install -q --upgrade pip >>"$LOG" 2>&1 || true
  step "installing funlora-bench and its dependencies into .venv (about a minute; pip's output: $LOG)" \
    .venv/bin/python -m pip install -e ".[test]"
  touch .venv/.installed
fi
