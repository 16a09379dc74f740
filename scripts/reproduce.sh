#!/usr/bin/env bash
# Rerun one published cell from this clone and say whether it gives the published numbers:
#   bash scripts/reproduce.sh GRID METHOD SEED [key=value ...]
#   bash scripts/reproduce.sh table5 funlora 0
# METHOD is a method name or a record's label; extra keys go to python -m bench.reproduce
# (workdir=, out=, store=, dry_run=true). Prints "identical" or how far LA is off and which
# numerics fields differ; exit 0 when identical, 1 when not, 2 on bad input.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h|--help) sed -n '2,7p' "$0"; exit 0 ;; esac
if [ $# -lt 3 ]; then
  echo "error: give GRID METHOD SEED, e.g. bash scripts/reproduce.sh table5 funlora 0" >&2; exit 2
fi
grid=$1 method=$2 seed=$3; shift 3
store=results/cpu
for arg in "$@"; do case "$arg" in store=*) store=${arg#store=} ;; esac; done
# what can be checked without the environment is checked before the minutes of setup
[[ "$seed" =~ ^[0-9]+$ ]] || { echo "error: SEED must be a non-negative integer, got '$seed'" >&2; exit 2; }
if [ ! -d "$store/records/$grid" ]; then
  echo "error: grid '$grid' has no records in $store; published grids:" \
       "$(ls "$store/records" 2>/dev/null | paste -sd' ')" >&2; exit 2
fi
bash scripts/setup.sh
exec .venv/bin/python -m bench.reproduce grid="$grid" method="$method" seed="$seed" "$@"
