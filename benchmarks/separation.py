"""How well a Table's seeds tell its methods apart, against a baseline of per-seed numbers.

    python benchmarks/separation.py STORE [--grid table5] [--baseline benchmarks/baselines/table5_cpu_r1.json]
    python benchmarks/separation.py --baseline-only            # the baseline's own figures

A cheaper preset is only acceptable if its table still separates the methods as well as
the one it replaces. Four figures, all over methods paired by seed (the cells of one seed
share their backbone and data):

- ``pairs_p05``: method pairs whose paired t-test gives p < 0.05 (of k(k-1)/2);
- ``pairs_holm``: the same after Holm's correction over every pair;
- ``f_all``: the F statistic of a two-way ANOVA of LA on method and seed (between-method
  variance over the residual), every method and bound;
- ``f_adapters``: the same among the adapter methods alone (the bounds and
  ``conditioning_only`` excluded), the hardest part of the table to separate.

It prints the figures of the store and of the baseline and, per figure, whether the store
is at least as able to tell methods apart (exit 1 when a figure is worse, 2 on bad input).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.errors import BenchError  # noqa: E402
from bench.report.stats import holm, paired  # noqa: E402

NOT_ADAPTERS = ("multitask_classifier", "multitask_generator", "conditioning_only")
FIGURES = ("pairs_p05", "pairs_holm", "f_all", "f_adapters")
BASELINE = Path(__file__).resolve().parent / "baselines" / "table5_cpu_r1.json"


def _f_two_way(table: np.ndarray) -> float:
    """F of the method effect in a method x seed ANOVA without replication (rows: methods)."""
    k, n = table.shape
    grand = table.mean()
    ss_method = n * ((table.mean(1) - grand) ** 2).sum()
    ss_seed = k * ((table.mean(0) - grand) ** 2).sum()
    ss_error = ((table - grand) ** 2).sum() - ss_method - ss_seed
    if ss_error <= 0:
        return float("inf")
    return float((ss_method / (k - 1)) / (ss_error / ((k - 1) * (n - 1))))


def separation(la: dict[str, dict[int, float]]) -> dict:
    """The four figures for ``la`` (method -> seed -> LA), over the seeds every method has."""
    seeds = sorted(set.intersection(*(set(v) for v in la.values()))) if la else []
    if len(la) < 2 or len(seeds) < 2:
        raise BenchError(f"need at least 2 methods with at least 2 common seeds, got {len(la)} methods "
                         f"and seeds {seeds}")
    names = sorted(la)
    table = np.array([[la[m][s] for s in seeds] for m in names], dtype=float)
    common = {m: {s: la[m][s] for s in seeds} for m in names}
    pvalues = [paired(common[a], common[b]).p_value for a, b in itertools.combinations(names, 2)]
    adapters = [i for i, m in enumerate(names) if m not in NOT_ADAPTERS]
    return {
        "methods": len(names), "seeds": seeds, "pairs": len(pvalues),
        "pairs_p05": int(sum(p < 0.05 for p in pvalues)),
        "pairs_holm": int(sum(p < 0.05 for p in holm(pvalues))),
        "f_all": round(_f_two_way(table), 2),
        "f_adapters": round(_f_two_way(table[adapters]), 2) if len(adapters) >= 2 else None,
        "means": {m: round(float(table[i].mean()), 2) for i, m in enumerate(names)},
    }


def load_store(store: Path, grid: str) -> dict[str, dict[int, float]]:
    """LA per method and seed of ``grid``'s valid records in ``store`` (stale ones are left out)."""
    from bench.report import records

    loaded = records.load(store, grid)
    frame = loaded.frame
    if frame.empty:
        raise BenchError(f"no valid records of grid {grid!r} in {store}")
    out: dict[str, dict[int, float]] = {}
    for row in frame.itertuples():
        out.setdefault(row.method, {})[int(row.seed)] = float(row.la)
    return out


def load_baseline(path: Path) -> tuple[dict, dict[str, dict[int, float]]]:
    try:
        data = json.loads(path.read_text())
        la = {m: {int(s): float(v) for s, v in seeds.items()} for m, seeds in data["la"].items()}
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise BenchError(f"cannot read baseline {path}: {exc}") from None
    return data, la


def compare(now: dict, before: dict) -> dict[str, bool]:
    """Per figure: is ``now`` at least as able to tell methods apart as ``before``?"""
    return {k: (now[k] is not None and before[k] is not None and now[k] >= before[k]) for k in FIGURES}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", nargs="?", type=Path)
    ap.add_argument("--grid", default="table5")
    ap.add_argument("--baseline", type=Path, default=BASELINE)
    ap.add_argument("--baseline-only", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        info, before_la = load_baseline(args.baseline)
        before = separation(before_la)
        if args.baseline_only:
            print(json.dumps(before, indent=1) if args.json else _lines("baseline", before, info.get("what", "")))
            return 0
        if args.store is None:
            raise BenchError("give a store (or --baseline-only)")
        now = separation(load_store(args.store, args.grid))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verdict = compare(now, before)
    if args.json:
        print(json.dumps({"store": now, "baseline": before, "at_least_as_separating": verdict}, indent=1))
    else:
        print(_lines(str(args.store), now))
        print(_lines("baseline", before, info.get("what", "")))
        for k in FIGURES:
            print(f"{k}: {now[k]} vs {before[k]}: {'at least as separating' if verdict[k] else 'LESS separating'}")
    return 0 if all(verdict.values()) else 1


def _lines(name: str, s: dict, what: str = "") -> str:
    head = f"{name}{' (' + what + ')' if what else ''}: {s['methods']} methods, seeds {s['seeds']}"
    return (f"{head}\n  pairs p<0.05 {s['pairs_p05']}/{s['pairs']}, after Holm {s['pairs_holm']}; "
            f"F(method) {s['f_all']}, among adapters {s['f_adapters']}\n  means {s['means']}")


if __name__ == "__main__":
    sys.exit(main())
