"""The LA-PPC trade-off of a grid (layout ``pareto``: grids ``zoo`` and ``zoo_budget``).

Every method entry of the grid (a method at a budget) is one point: PPC (the parameters
each new class costs) against LA (mean over seeds, with its 95% CI). A point is on the
Pareto front when no other point has a PPC at most as large and an LA at least as high,
one of them strictly. The table lists every point (over-budget methods marked) with how
many seeds it is on the front of that seed's LA, then the front; the figure draws LA against
PPC on a log axis with the front as a step line and FunLoRA highlighted.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .tables import Stat, Table, _note, data_columns, method_rows, name_of, select, stat

REFERENCE = "funlora"


@dataclass
class Point:
    label: str
    method: str
    ppc: int
    la: Stat
    aia: Stat | None
    size: str
    met: bool


def entry_label(entry: dict) -> str:
    """``LoCon (1x)`` for a budgeted entry, the method's title otherwise."""
    title = name_of(entry["name"])
    return f"{title} ({entry['budget']})" if "budget" in entry else title


def _size(sub: pd.DataFrame) -> tuple[str, bool]:
    if "budget" not in sub or sub["budget"].isna().all():
        return "", True
    choices = [json.loads(b) for b in sub["budget"].dropna()]
    sizes = sorted({f"{c['option']}={c['size']}" if c["option"] else "fixed" for c in choices})
    return ", ".join(sizes), all(c["met"] for c in choices)


def points(grid: dict, df: pd.DataFrame, dataset: str, split: str) -> list[Point]:
    out = []
    for entry in method_rows(grid):
        sub = select(df, entry, dataset, split)
        la = stat(sub["la"])
        if la is None:
            continue
        size, met = _size(sub)
        out.append(Point(entry_label(entry), entry["name"], int(sub["ppc"].median()), la,
                         stat(sub["aia"]), size, met))
    return out


def undominated(pairs: list[tuple[float, float]]) -> list[int]:
    """Indices of the Pareto-optimal (PPC, LA) pairs: none other has PPC <= and LA >=, one strictly."""
    return [i for i, (c, a) in enumerate(pairs)
            if not any(j != i and d <= c and b >= a and (d < c or b > a) for j, (d, b) in enumerate(pairs))]


def front(pts: list[Point]) -> list[Point]:
    """The Pareto-optimal points (lower PPC, higher LA), by increasing PPC."""
    keep = undominated([(p.ppc, p.la.mean) for p in pts])
    return sorted((pts[i] for i in keep), key=lambda p: (p.ppc, -p.la.mean))


def front_frequency(grid: dict, df: pd.DataFrame, dataset: str, split: str) -> dict[str, tuple[int, int]]:
    """Per entry label: (seeds on whose own front it lies, seeds it has a record of).

    The mean front can hang on a tenth of a point; the front of each seed's LA says how stable a
    place on it is. Each seed's front is drawn among the entries with a record of that seed.
    """
    by_seed: dict[int, list[tuple[str, float, float]]] = {}
    for entry in method_rows(grid):
        sub = select(df, entry, dataset, split).dropna(subset=["la"])
        for seed, ppc, la in zip(sub["seed"], sub["ppc"], sub["la"]):
            by_seed.setdefault(int(seed), []).append((entry_label(entry), float(ppc), float(la)))
    counts: dict[str, list[int]] = {}
    for rows in by_seed.values():
        on = set(undominated([(c, a) for _, c, a in rows]))
        for i, (label, _, _) in enumerate(rows):
            k_n = counts.setdefault(label, [0, 0])
            k_n[0] += i in on
            k_n[1] += 1
    return {label: (k, n) for label, (k, n) in counts.items()}


def tables(grid: dict, df: pd.DataFrame) -> list[Table]:
    out = []
    for ds, sp in data_columns(grid, df):
        pts = points(grid, df, ds, sp)
        on_front = {id(p) for p in front(pts)}
        often = front_frequency(grid, df, ds, sp)
        body = [[p.label, p.size or "-", Stat(p.ppc, 0, 1, ppc=True), p.la, p.aia,
                 "yes" if id(p) in on_front else "", "{} of {}".format(*often.get(p.label, (0, 0)))]
                for p in sorted(pts, key=lambda p: p.ppc)]
        for row, p in zip(body, sorted(pts, key=lambda p: p.ppc)):
            if not p.met:
                row[0] += " †"
        t = Table(grid["name"], f"{grid.get('title', 'LA against PPC')} ({ds} {sp})",
                  ["Method", "Size", "PPC", "LA", "AIA", "Pareto", "On each seed's front"], body,
                  {3: "max", 4: "max"})
        t.footnotes.append("Pareto: on the front of the mean LA over seeds; on each seed's front: in how many "
                           "seeds it is on the front of that seed's LA.")
        if any(not p.met for p in pts):
            t.footnotes.append("†: cannot fit the budget at its smallest size; run at that size (PPC shown).")
        missing = [entry_label(e) for e in method_rows(grid)
                   if select(df, e, ds, sp).empty]
        if missing:
            t.footnotes.append(f"no record yet: {', '.join(missing)}.")
        out.append(_note(t))
        fr = front(pts)
        out.append(Table(f"{grid['name']}_front", f"Pareto front, LA against PPC ({ds} {sp})",
                         ["Method", "PPC", "LA"], [[p.label, Stat(p.ppc, 0, 1, ppc=True), p.la] for p in fr]))
    return out


def figure(grid: dict, df: pd.DataFrame, out: Path) -> list[Path]:
    """LA (mean ± 95% CI) against PPC (log axis), the front as a step line, FunLoRA highlighted."""
    from .figures import _save, plt

    paths = []
    for ds, sp in data_columns(grid, df):
        pts = [p for p in points(grid, df, ds, sp) if p.ppc > 0]
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for p in pts:
            ref = p.method == REFERENCE
            err = p.la.ci95 if math.isfinite(p.la.ci95) else 0.0
            ax.errorbar(p.ppc, p.la.mean, yerr=err, fmt="*" if ref else ("o" if p.met else "x"),
                        ms=14 if ref else 6, color="crimson" if ref else "tab:blue", capsize=3, zorder=3 if ref else 2)
            ax.annotate(p.label, (p.ppc, p.la.mean), textcoords="offset points", xytext=(4, 4), fontsize=7)
        fr = front(pts)
        ax.step([p.ppc for p in fr], [p.la.mean for p in fr], where="post", color="gray", ls="--", lw=1,
                label="Pareto front")
        ax.set(xscale="log", xlabel="parameters per class (PPC, log)", ylabel="LA (%)",
               title=f"LA against PPC, {ds} {sp} (★ FunLoRA, × over budget)")
        ax.legend(loc="lower right", fontsize=8)
        paths += _save(fig, out, f"{grid['name']}_pareto_{ds}_{sp}".replace("/", "-"))
    return paths


__all__ = ["Point", "points", "undominated", "front", "front_frequency", "tables", "figure"]
