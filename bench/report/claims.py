"""Check the paper's qualitative claims (claims.yaml) against a store's records.

Each claim compares method rows of one grid paired by seed (per dataset x split x solver
setting and per scale) and gets a verdict from the paired 95% CI: ``holds``,
``not significant`` or ``contradicted``, with the difference and CI behind it (``not
checked`` where the grid has records but none of one side). A claim with ``grows_with: COLUMN``
(e.g. ``adapter_steps``) is about the gap a - b itself: per seed, the gap at the largest value
of the column minus the gap at the smallest, tested the same way.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ..errors import BenchError
from ..grids import method_label
from .stats import paired

CLAIMS = Path(__file__).with_name("claims.yaml")
KINDS = ("greater", "less", "not_worse", "equivalent")


@dataclass
class Verdict:
    claim: str
    text: str
    source: str
    grid: str
    scale: str
    setting: str
    a: str
    b: str
    metric: str
    verdict: str
    diff: float | None
    diff_ci95: float | None
    n: int
    why: str


def load_claims(path: Path = CLAIMS) -> list[dict[str, Any]]:
    claims = (yaml.safe_load(path.read_text()) or {}).get("claims", [])
    for c in claims:
        if c.get("kind") not in KINDS:
            raise BenchError(f"{path}: claim {c.get('id')!r} has kind {c.get('kind')!r}; kinds: {', '.join(KINDS)}")
    return claims


def _rows(df: pd.DataFrame, method: dict) -> pd.DataFrame:
    opts = {k: v for k, v in method.items() if k != "name"}
    mask = df["method"] == method["name"]
    if opts:
        mask &= df["options"].map(lambda o: all(json.loads(o).get(k) == v for k, v in opts.items()))
    else:  # the method with its defaults: no option other than the grid's layers
        mask &= df["options"].map(lambda o: not {k for k in json.loads(o) if k != "layers"})
    return df[mask]


def decide(kind: str, diff: float, hw: float, margin: float) -> tuple[str, str]:
    """Verdict of one paired difference (a - b) with CI half-width ``hw``."""
    lo, hi = diff - hw, diff + hw
    if not math.isfinite(hw):
        return "not significant", "one seed: no interval"
    if kind == "greater":
        return ("holds", "CI above 0") if lo > 0 else ("contradicted", "CI below 0") if hi < 0 else \
            ("not significant", "CI contains 0")
    if kind == "less":
        return ("holds", "CI below 0") if hi < 0 else ("contradicted", "CI above 0") if lo > 0 else \
            ("not significant", "CI contains 0")
    if kind == "not_worse":
        return ("holds", f"CI above -{margin:g}") if lo > -margin else \
            ("contradicted", f"CI below -{margin:g}") if hi < -margin else ("not significant", f"CI contains -{margin:g}")
    # equivalent
    if -margin < lo and hi < margin:
        return "holds", f"CI inside ±{margin:g}"
    if lo > margin or hi < -margin:
        return "contradicted", f"CI outside ±{margin:g}"
    return "not significant", f"CI crosses ±{margin:g}"


def _gap_growth(c: dict, sub: pd.DataFrame, b: dict, setting: str, scale) -> Verdict | None:
    """``grows_with``: per seed, (a - b) at the column's largest value minus (a - b) at its smallest."""
    col = c["grows_with"]
    values = sorted(v for v in sub[col].dropna().unique())
    a_name, b_name = method_label(c["a"]), method_label(b)
    if len(values) < 2:
        return Verdict(c["id"], c["claim"], c["source"], c["grid"], str(scale), setting, a_name, b_name, c["metric"],
                       "not checked", None, None, 0, f"records at one {col} only")
    gaps = []
    for v in (values[-1], values[0]):
        at = sub[sub[col] == v]
        ra, rb = _rows(at, c["a"]), _rows(at, b)
        a_by, b_by = dict(zip(ra["seed"], ra[c["metric"]])), dict(zip(rb["seed"], rb[c["metric"]]))
        gaps.append({s: a_by[s] - b_by[s] for s in a_by.keys() & b_by.keys()})
    p = paired(gaps[0], gaps[1])
    if p is None:
        return None
    verdict, why = decide(c["kind"], p.diff, p.diff_ci95, float(c.get("margin", 0.0)))
    return Verdict(c["id"], c["claim"], c["source"], c["grid"], str(scale),
                   f"{setting} {col} {values[0]:g} -> {values[-1]:g}", f"({a_name} - {b_name}) at {values[-1]:g}",
                   f"at {values[0]:g}", c["metric"], verdict, p.diff,
                   p.diff_ci95 if math.isfinite(p.diff_ci95) else None, p.n, why)


def check(df: pd.DataFrame, claims: list[dict[str, Any]] | None = None) -> list[Verdict]:
    """Verdicts of every claim whose grid has records in ``df`` (one per pair, setting and scale)."""
    out: list[Verdict] = []
    for c in claims if claims is not None else load_claims():
        part = df[df["grid"] == c["grid"]]
        if part.empty:
            continue
        bs = c["b"] if isinstance(c["b"], list) else [c["b"]]
        budgets = ("adapter_steps" in part and part["adapter_steps"].nunique(dropna=False) > 1
                   and c.get("grows_with") != "adapter_steps")
        keys = ["scale", "dataset", "split", "solver", "steps", "layers"] + (["adapter_steps"] if budgets else [])
        for group, sub in part.groupby(keys, sort=True, dropna=False):
            scale, ds, sp, solver, steps, layers = group[:6]
            setting = f"{ds} {sp}" + ("" if pd.isna(steps) or solver == "dopri5" else f" {solver}{int(steps)}") + \
                      ("" if layers in ("auto", None) else f" layers {layers}") + \
                      (f" {int(group[6])} adapter steps" if budgets else "")
            ra = _rows(sub, c["a"])
            for b in bs:
                if c.get("grows_with"):
                    v = _gap_growth(c, sub, b, setting, scale)
                    out += [v] if v is not None else []
                    continue
                rb = _rows(sub, b)
                if ra.empty or rb.empty:
                    missing = method_label(c["a"]) if ra.empty else method_label(b)
                    out.append(Verdict(c["id"], c["claim"], c["source"], c["grid"], str(scale), setting,
                                       method_label(c["a"]), method_label(b), c["metric"], "not checked", None, None,
                                       0, f"no record of {missing}"))
                    continue
                p = paired(dict(zip(ra["seed"], ra[c["metric"]])), dict(zip(rb["seed"], rb[c["metric"]])))
                if p is None:
                    continue
                verdict, why = decide(c["kind"], p.diff, p.diff_ci95, float(c.get("margin", 0.0)))
                if c.get("ppc"):
                    pa, pb = ra["ppc"].iloc[0], rb["ppc"].iloc[0]
                    lower_ok = pa < pb if c["ppc"] == "a_lower" else pb < pa
                    if not lower_ok:
                        verdict, why = "contradicted", f"PPC {pa} vs {pb}"
                    else:
                        why += f"; PPC {pa} vs {pb}"
                out.append(Verdict(c["id"], c["claim"], c["source"], c["grid"], str(scale), setting,
                                   method_label(c["a"]), method_label(b), c["metric"], verdict, p.diff,
                                   p.diff_ci95 if math.isfinite(p.diff_ci95) else None, p.n, why))
    return out


def markdown(verdicts: list[Verdict]) -> str:
    if not verdicts:
        return "### The paper's claims\n\nNo claim's grid has records in this store.\n"
    lines = ["### The paper's claims", "", "| claim | scale | setting | comparison | verdict | difference (95% CI) | n | why |",
             "|:--|:--|:--|:--|:--|:--|--:|:--|"]
    for v in verdicts:
        ci = "" if v.diff_ci95 is None else f" ± {v.diff_ci95:.2f}"
        diff = "-" if v.diff is None else f"{v.diff:+.2f}{ci}"
        lines.append(f"| {v.text} ({v.source}) | {v.scale} | {v.setting} | {v.metric}: {v.a} vs {v.b} | "
                     f"**{v.verdict}** | {diff} | {v.n} | {v.why} |")
    return "\n".join(lines) + "\n"


def table(verdicts: list[Verdict], grid: str):
    """The verdicts on one grid as a table of its page (Table III at two budgets says there whether
    mul beats add at each budget and whether the gap grows); None where the grid has none."""
    from .tables import Table

    mine = [v for v in verdicts if v.grid == grid]
    if not mine:
        return None
    rows = [[v.text, v.setting, f"{v.metric}: {v.a} vs {v.b}", v.verdict,
             "-" if v.diff is None else f"{v.diff:+.2f}" + ("" if v.diff_ci95 is None else f" ± {v.diff_ci95:.2f}"),
             str(v.n), v.why] for v in mine]
    return Table(f"{grid}_claims", "The paper's claims on these records",
                 ["Claim", "Setting", "Comparison", "Verdict", "a - b (95% CI)", "n", "Why"], rows,
                 footnotes=["Paired by seed; holds / contradicted where the 95% t interval of the difference "
                            "clears the claim's bound, not significant where it does not (claims.md: all grids)."])


def to_json(verdicts: list[Verdict]) -> list[dict]:
    return [asdict(v) for v in verdicts]
