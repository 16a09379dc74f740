#!/usr/bin/env bash
# Set up, then run the main job on the embedded default: Table V (every method and
# bound) at scale=cpu on Fashion-MNIST 2-2, local executor, then render its tables.
# Extra key=value arguments go to bench.sweep (e.g. grid=table3, seeds=[0,1]; estimate=false).
# Says first how long the sweep will take here (timed steps x schedule; bench/estimate.py),
# shows the time left on the bar, and ends with the wall time it took and the load before it.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h|--help) sed -n '2,6p' "$0"; exit 0 ;; esac
for arg in "$@"; do   # a grid that does not exist is said before the minutes of setup
  case "$arg" in
    grid=*.yaml|grid=*.yml) [ -f "${arg#grid=}" ] || { echo "error: grid file ${arg#grid=} not found" >&2; exit 2; } ;;
    grid=*) [ -f "bench/grids/${arg#grid=}.yaml" ] || { echo "error: unknown grid '${arg#grid=}'; grids:" \
              "$(cd bench/grids && ls -- *.yaml | sed 's/\.yaml$//' | paste -sd' ')" >&2; exit 2; } ;;
  esac
done
bash scripts/setup.sh
load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?")
start=$(date +%s)
.venv/bin/python -m bench.sweep grid=table5 scale=cpu store=results/store estimate=true "$@"
swept=$(date +%s)
.venv/bin/python -m bench.report store=results/store
wall=$(( $(date +%s) - start )); sweep=$(( swept - start ))
echo "main job: $((wall / 60)) min $((wall % 60)) s wall (setup excluded; the sweep $((sweep / 60)) min" \
     "$((sweep % 60)) s, the report $((wall - sweep)) s) on $(nproc) cores; load average before it: $load"
