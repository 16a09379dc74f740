"""The numbers behind every table, as tidy rows: per method and setting, mean / std / CI over
seeds and, against a reference method, the paired difference with its CI and Holm-corrected
p-value. ``format=json`` writes these rows; the paired table renders the same numbers.
"""
from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from ..grids import method_label
from .stats import Paired, holm, paired, summarize
from .tables import Table

METRICS = ("la", "aia", "forgetting", "ppc")
COMPARED = ("la", "aia", "forgetting")
CONTEXT = ("dataset", "split", "solver", "steps", "layers")


def default_reference(df: pd.DataFrame, reference: str | None) -> str | None:
    """``reference`` if given, else ``funlora`` where the grid has it."""
    if reference:
        return reference
    return "funlora" if (df["method"] == "funlora").any() else None


def context_of(df: pd.DataFrame) -> tuple[str, ...]:
    """The columns a mean is taken within: CONTEXT, plus the adapter step budget where the
    grid varies it (table3_budget: 150 and 600 steps are two settings, never pooled)."""
    steps = "adapter_steps" in df and df["adapter_steps"].nunique(dropna=False) > 1
    return CONTEXT + (("adapter_steps",) if steps else ())


def _without_layers(options: str) -> dict:
    return {k: v for k, v in json.loads(options).items() if k != "layers"}


def tidy(grid: str, df: pd.DataFrame, reference: str | None = None) -> list[dict[str, Any]]:
    """One dict per (method + options, setting, metric): mean, std, ci95, n (+ the paired test)."""
    reference = default_reference(df, reference)
    context = context_of(df)
    df = df.assign(_ctx=df.apply(lambda row: tuple(str(row[c]) for c in context), axis=1))
    rows: list[dict[str, Any]] = []
    pairs: list[tuple[dict, Paired]] = []
    for (ctx, method, options), sub in df.groupby(["_ctx", "method", "options"], sort=False):
        ref_sub = None
        if reference is not None:
            cands = df[(df["_ctx"] == ctx) & (df["method"] == reference)]
            if len(cands):
                best = min(cands["options"].unique(), key=lambda o: (len(_without_layers(o)), o))
                ref_sub = cands[cands["options"] == best]
                is_ref = method == reference and options == best
        for metric in METRICS:
            s = summarize(sub[metric].tolist())
            if s is None:
                continue
            row = {"grid": grid, "method": method, "label": method_label({"name": method, **json.loads(options)}),
                   "options": json.loads(options), **dict(zip(context, ctx)), "metric": metric,
                   "mean": s.mean, "std": s.std, "ci95": s.ci95, "n": s.n}
            if ref_sub is not None and metric in COMPARED:
                row["reference"] = reference
                if not is_ref:
                    p = paired(dict(zip(sub["seed"], sub[metric])), dict(zip(ref_sub["seed"], ref_sub[metric])))
                    if p is not None:
                        pairs.append((row, p))
            rows.append(row)
    for metric in COMPARED:  # Holm across the table, per metric
        group = [(r, p) for r, p in pairs if r["metric"] == metric]
        for (r, p), adj in zip(group, holm([p.p_value for _, p in group])):
            p.p_holm = adj
            r.update(diff=p.diff, diff_ci95=p.diff_ci95, n_pairs=p.n, p_value=adj, p_value_raw=p.p_value,
                     p_wilcoxon=p.p_wilcoxon, significant=p.significant)
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()} for r in rows]


def paired_table(grid: str, rows: list[dict[str, Any]], metric: str = "la") -> list[Table]:
    """Rows x settings: the paired difference to the reference, its CI and the Holm p-value."""
    compared = [r for r in rows if r["metric"] == metric and "diff" in r]
    if not compared:
        return []
    reference = compared[0]["reference"]
    context = CONTEXT + (("adapter_steps",) if any("adapter_steps" in r for r in compared) else ())
    contexts = list(dict.fromkeys(tuple(str(r[c]) for c in context) for r in compared))
    varying = [i for i, c in enumerate(context) if len({ctx[i] for ctx in contexts}) > 1] or [0, 1]
    header = ["Method"] + [" ".join(ctx[i] for i in varying) for ctx in contexts]
    labels = list(dict.fromkeys(r["label"] for r in compared))
    body = []
    for label in labels:
        line: list[Any] = [label]
        for ctx in contexts:
            r = next((r for r in compared if r["label"] == label and tuple(str(r[c]) for c in context) == ctx), None)
            line.append(None if r is None else _diff_text(r))
        body.append(line)
    name = {"la": "LA", "aia": "AIA", "forgetting": "Forgetting"}[metric]
    t = Table(f"{grid}_paired_{metric}", f"Paired differences to {reference} ({name}, paired by seed)", header, body)
    t.footnotes.append(f"{name}(method) - {name}({reference}) averaged over seeds ± 95% CI half-width; "
                       "p: paired t-test, Holm-corrected across this table; * p < 0.05.")
    return [t]


def _diff_text(r: dict) -> str:
    ci = f" ± {r['diff_ci95']:.2f}" if r.get("diff_ci95") is not None else ""
    p = "n/a (n = 1)" if r.get("p_value") is None else f"{r['p_value']:.3g}"
    return f"{r['diff']:+.2f}{ci} (p {p}){'*' if r.get('significant') else ''}"
