#!/usr/bin/env bash
# Recompute the published store results/cpu (scale=cpu, Fashion-MNIST 2-2): each grid's
# seeds one at a time, in the results' priority order, then the report.
#   bash scripts/publish-results.sh                 # table5, table3_budget, zoo; seeds 0-4
#   bash scripts/publish-results.sh table5 0 1      # one grid, some seeds
#   bash scripts/publish-results.sh --new-grid table2 0 1 2   # make table2 a published grid
# Resumable: a finished record is never recomputed, so run it again after any stop.
# It computes HEAD, from a frozen copy (a git worktree): edits made while it runs for hours
# never reach its jobs, and computed.json names the commit that computed each seed.
# A seed computes into results/staging (commit its records as they finish: a new machine
# resumes from them) and moves into results/cpu, replacing that seed's records, only once
# every cell of it is done; STORE/computed.json then notes the seed (commit, CPU, numerics),
# the report and README's headline are rendered, and it prints "published GRID seed S":
# commit results/ and README.md then, while the next seed computes. A seed already published
# in this numerics class is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h|--help) sed -n '2,15p' "$0"; exit 0 ;; esac
PUBLISHED_GRIDS=(table5 table3_budget zoo)
PUBLISHED_SEEDS=(0 1 2 3 4)
new_grid=false
if [ "${1:-}" = "--new-grid" ]; then new_grid=true; shift; fi
grids=("${PUBLISHED_GRIDS[@]}")
seeds=("${PUBLISHED_SEEDS[@]}")
if [ $# -ge 1 ]; then grids=("$1"); shift; fi
if [ $# -ge 1 ]; then seeds=("$@"); fi
# every argument is checked before setup, worktrees or any timing
for grid in "${grids[@]}"; do
  if [ ! -f "bench/grids/$grid.yaml" ]; then
    echo "error: unknown grid '$grid'; grids: $(cd bench/grids && ls -- *.yaml | sed 's/\.yaml$//' | paste -sd' ')" >&2
    exit 2
  fi
  if ! $new_grid && [[ ! " ${PUBLISHED_GRIDS[*]} " =~ " $grid " ]]; then
    echo "error: grid '$grid' is not a published grid (${PUBLISHED_GRIDS[*]}); add --new-grid to make it one" >&2
    exit 2
  fi
done
for seed in "${seeds[@]}"; do
  if [[ ! " ${PUBLISHED_SEEDS[*]} " =~ " $seed " ]]; then
    echo "error: seed '$seed' is not one of the published seeds (${PUBLISHED_SEEDS[*]})" >&2
    exit 2
  fi
done
bash scripts/setup.sh
ROOT=$(pwd)
STORE=$ROOT/results/cpu
STAGE=$ROOT/results/staging
commit=$(git rev-parse --short HEAD)
if git status --porcelain -- bench methods | grep -q .; then
  echo "note: uncommitted changes in bench/ or methods/ are not published; computing $commit"
fi
FROZEN=$(mktemp -d "${TMPDIR:-/tmp}/funlora-publish.XXXXXX")
git worktree add --quiet --detach "$FROZEN" HEAD
trap 'git worktree remove --force "$FROZEN" || true' EXIT
# the frozen copy's code, in this checkout's environment (its packages come first on the path)
frozen() { (cd "$FROZEN" && PYTHONPATH="$FROZEN" "$ROOT/.venv/bin/python" "$@"); }
# the staging store shares the published store's stage outputs on this machine (the zoo's 1x
# cells reuse Table V's stages; a seed's backbone is trained once)
mkdir -p "$STAGE" "$STORE/artifacts"
[ -e "$STAGE/artifacts" ] || ln -s "$STORE/artifacts" "$STAGE/artifacts"
for grid in "${grids[@]}"; do
  for seed in "${seeds[@]}"; do
    if frozen - "$STORE/computed.json" "$grid" "$seed" <<'PY'
import json, sys
from pathlib import Path
from bench import numerics
path, grid, seed = Path(sys.argv[1]), *sys.argv[2:]
done = json.loads(path.read_text()) if path.exists() else {}
here = numerics.numerics_class(numerics.process_mode())
sys.exit(0 if done.get(grid, {}).get(seed, {}).get("numerics") == here else 1)
PY
    then
      echo "$grid seed $seed is already published in this numerics class: skipped"
      continue
    fi
    frozen -m bench.sweep grid="$grid" scale=cpu store="$STAGE" seeds="[$seed]"
    # the finished seed replaces the published one, then computed.json says which code, CPU and
    # numerics computed it (README's headline says so)
    frozen - "$STAGE" "$STORE" "$grid" "$seed" "$commit" <<'PY'
import json, os, sys, torch
from pathlib import Path
from bench import numerics
from bench.hardware import describe
from bench.record import Record
stage, store, grid, seed, commit = Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:]
moved = 0
for path in sorted((stage / "records" / grid).glob("*.json")):
    if Record.load(path).cell.seed == int(seed):
        (store / "records" / grid).mkdir(parents=True, exist_ok=True)
        os.replace(path, store / "records" / grid / path.name)
        moved += 1
print(f"moved {moved} records of {grid} seed {seed} from {stage} into {store}")
computed = store / "computed.json"
done = json.loads(computed.read_text()) if computed.exists() else {}
done.setdefault(grid, {})[seed] = {"commit": commit, "hardware": describe(torch.device("cpu")),
                                   "numerics": numerics.numerics_class(numerics.process_mode())}
tmp = computed.with_name(computed.name + ".tmp")
tmp.write_text(json.dumps(done, indent=2, sort_keys=True) + "\n")
os.replace(tmp, computed)
PY
    # the published seeds only: results/ and README.md are ready to commit while the next seed computes
    .venv/bin/python -m bench.report store="$STORE" compare=paper published=true >/dev/null
    .venv/bin/python -m bench.report.headline store="$STORE" readme=README.md
    echo "published $grid seed $seed ($(date -u +%FT%TZ)): commit results/ and README.md"
  done
done
