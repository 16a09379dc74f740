#!/usr/bin/env bash
# Recompute the published store results/cpu (scale=cpu, Fashion-MNIST 2-2): each grid's
# seeds one at a time, in the results' priority order, then the report.
#   bash scripts/publish-results.sh                 # table5, table3_budget, zoo; seeds 0-4
#   bash scripts/publish-results.sh table5 0 1      # one grid, some seeds
# Resumable: a finished record is never recomputed, so run it again after any stop.
# It computes HEAD, from a frozen copy (a git worktree): edits made while it runs for hours
# never reach its jobs, and computed.json names the commit that computed each seed.
# Each finished seed is noted in STORE/computed.json (commit, CPU), the report and README's
# headline are rendered from the seeds noted there, and it prints "published GRID seed S":
# commit results/cpu and README.md then, while the next seed computes.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h|--help) sed -n '2,11p' "$0"; exit 0 ;; esac
bash scripts/setup.sh
ROOT=$(pwd)
STORE=$ROOT/results/cpu
commit=$(git rev-parse --short HEAD)
if git status --porcelain -- bench methods | grep -q .; then
  echo "note: uncommitted changes in bench/ or methods/ are not published; computing $commit"
fi
FROZEN=$(mktemp -d "${TMPDIR:-/tmp}/funlora-publish.XXXXXX")
git worktree add --quiet --detach "$FROZEN" HEAD
trap 'git worktree remove --force "$FROZEN" || true' EXIT
grids=(table5 table3_budget zoo)
seeds=(0 1 2 3 4)
if [ $# -ge 1 ]; then grids=("$1"); shift; fi
if [ $# -ge 1 ]; then seeds=("$@"); fi
for grid in "${grids[@]}"; do
  for seed in "${seeds[@]}"; do
    # the frozen copy's code, in this checkout's environment (its packages come first on the path)
    (cd "$FROZEN" && PYTHONPATH="$FROZEN" "$ROOT/.venv/bin/python" -m bench.sweep grid="$grid" scale=cpu \
      store="$STORE" seeds="[$seed]")
    # which code and CPU computed it (README's headline says so)
    (cd "$FROZEN" && PYTHONPATH="$FROZEN" "$ROOT/.venv/bin/python" - "$STORE/computed.json" "$grid" "$seed" \
      "$commit") <<'PY'
import json, sys, torch
from pathlib import Path
from bench import numerics
from bench.hardware import describe
path, grid, seed, commit = Path(sys.argv[1]), *sys.argv[2:]
done = json.loads(path.read_text()) if path.exists() else {}
done.setdefault(grid, {})[seed] = {"commit": commit, "hardware": describe(torch.device("cpu")),
                                   "numerics": numerics.numerics_class(numerics.process_mode())}
path.write_text(json.dumps(done, indent=2, sort_keys=True) + "\n")
PY
    # the published seeds only (the next seed's records, written while it runs, stay out):
    # results/cpu and README.md are ready to commit while the next seed computes
    .venv/bin/python -m bench.report store="$STORE" compare=paper published=true >/dev/null
    .venv/bin/python -m bench.report.headline store="$STORE" readme=README.md
    echo "published $grid seed $seed ($(date -u +%FT%TZ)): commit results/cpu and README.md"
  done
done
