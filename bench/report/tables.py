"""The paper's table layouts (METHOD.md section 6) built from the tidy records.

Each builder returns ``Table``s whose cells are ``Stat`` (mean, std, n over seeds) or
text; the expected rows and columns come from the grid file, so a cell without a record
shows as a dash and is counted in a footnote.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from .. import grids, strategies
from .stats import summarize

def name_of(method: str) -> str:
    """The row name of ``method`` (its class's or strategy's ``title``)."""
    return strategies.title(method)


def display_name(method: str, options: str | dict | None = None) -> str:
    """``strategies.display_name`` of a record row (options as the row's JSON text)."""
    return strategies.display_name(method, _opts(options) if not isinstance(options, dict) else options)


@dataclass
class Stat:
    """A table cell over seeds: mean, std, n and the 95% CI half-width (shown as mean ± half-width)."""

    mean: float
    std: float
    n: int
    digits: int = 2
    ppc: bool = False
    ci95: float = math.nan
    mark: str = ""

    def text(self) -> str:
        if self.ppc:   # a plain count, as the paper writes it (seeds share a method's PPC)
            return f"{round(self.mean):,}"
        s = f"{self.mean:.{self.digits}f}"
        return s + (f" ± {self.ci95:.{self.digits}f}" if self.n > 1 and math.isfinite(self.ci95) else "") + self.mark


@dataclass
class Table:
    name: str
    title: str
    header: list[str]
    rows: list[list[Any]]
    best: dict[int, str] = field(default_factory=dict)   # column -> "max" | "min"
    footnotes: list[str] = field(default_factory=list)
    groups: list[tuple[str, int]] = field(default_factory=list)  # column groups (label, span) after column 0

    def missing(self) -> int:
        return sum(1 for r in self.rows for v in r[1:] if v is None)


def stat(values: pd.Series, digits: int = 2, ppc: bool = False) -> Stat | None:
    s = summarize(values.dropna().tolist())
    if s is None:
        return None
    return Stat(s.mean, s.std, s.n, digits, ppc, s.ci95)


def _opts(row_options: str) -> dict:
    return json.loads(row_options) if isinstance(row_options, str) else {}


def data_columns(grid: dict, df: pd.DataFrame) -> list[tuple[str, str]]:
    scale = df["scale"].iloc[0] if len(df) else "paper"
    data = grid["axes"]["data"] if scale == "paper" else grid.get("cpu_data", grid["axes"]["data"])
    cols = [(d["dataset"], str(d["split"])) for d in data]
    for ds, sp in df[["dataset", "split"]].drop_duplicates().itertuples(index=False):
        if (ds, sp) not in cols:
            cols.append((ds, sp))
    return cols


def method_rows(grid: dict) -> list[dict]:
    return [{"name": m} if isinstance(m, str) else dict(m) for m in grid["axes"]["method"]]


def select(df: pd.DataFrame, method: dict, dataset: str | None = None, split: str | None = None,
           extra: Callable[[pd.DataFrame], pd.Series] | None = None) -> pd.DataFrame:
    mask = df["method"] == method["name"]
    opts = {k: v for k, v in method.items() if k != "name"}
    if opts:
        mask &= df["options"].map(lambda o: all(_opts(o).get(k) == v for k, v in opts.items()))
    if dataset is not None:
        mask &= (df["dataset"] == dataset) & (df["split"] == split)
    if extra is not None:
        mask &= extra(df)
    return df[mask]


def _note(table: Table) -> Table:
    n = table.missing()
    if n:
        table.footnotes.append(f"{n} cell(s) without a record are shown as a dash.")
    ns = sorted({v.n for r in table.rows for v in r[1:] if isinstance(v, Stat) and not v.ppc})
    if ns and ns[-1] > 1:
        count = f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]} to {ns[-1]}"
        table.footnotes.append(f"mean ± half-width of the 95% confidence interval (Student t) over seeds, {count}.")
    return table


def metric_table(name: str, title: str, grid: dict, df: pd.DataFrame, rows: list[tuple[str, dict]],
                 metrics=("la", "aia", "ppc"), extra=None) -> list[Table]:
    """Rows x (dataset groups of LA / AIA / PPC)."""
    cols = data_columns(grid, df)
    labels = {"la": "LA", "aia": "AIA", "ppc": "PPC", "forgetting": "Forgetting"}
    header = ["Method"] + [labels[m] for _ in cols for m in metrics]
    body = []
    for label, method in rows:
        line: list[Any] = [label]
        for ds, sp in cols:
            sub = select(df, method, ds, sp, extra)
            line += [stat(sub[m], ppc=(m == "ppc")) for m in metrics]
        body.append(line)
    best = {1 + i * len(metrics) + j: "max" for i in range(len(cols)) for j, m in enumerate(metrics) if m in ("la", "aia")}
    groups = [(f"{ds} {sp}", len(metrics)) for ds, sp in cols]
    return [_note(Table(name, title, header, body, best, groups=groups))]


def table1(grid, df):
    rows = [(m.get("layers", "auto"), m) for m in method_rows(grid)]
    return metric_table("table1", "Table I: layer selection (rank-1 product)", grid, df, rows)


def table2(grid, df):
    tables = []
    for layers in grid["axes"].get("layers", ["auto"]):
        rows = [(name_of(m["name"]), {**m, "layers": layers}) for m in method_rows(grid)]
        tables += metric_table("table2", f"Table II: functions, layers {layers}", grid, df, rows)
    return tables


def table3(grid, df):
    cols = data_columns(grid, df)
    names = {"vanilla_add": "Add", "mul_add": "Mul-Add", "vanilla_mul": "Mul"}
    body = [[names.get(m["name"], m["name"])] + [stat(select(df, m, ds, sp)["la"]) for ds, sp in cols]
            for m in method_rows(grid)]
    header = ["Operation"] + [f"{ds} {sp}" for ds, sp in cols]
    return [_note(Table("table3", "Table III: operation (LA)", header, body, {i + 1: "max" for i in range(len(cols))}))]


def table3_budget(grid, df):
    """Table III once per adapter budget (the grid's settings axis: adapter steps)."""
    tables = []
    for steps in sorted({int(v) for v in df["adapter_steps"].dropna()}):
        sub = df[df["adapter_steps"] == steps]
        for t in table3(grid, sub):
            t.name, t.title = "table3_budget", f"Table III at {steps} adapter steps (LA, adapter lr tuned)"
            tables.append(t)
    return tables


def table4(grid, df):
    rows = [(str(m.get("ratio", 1)), m) for m in method_rows(grid)]
    return metric_table("table4", "Table IV: reduced parameters (ratio)", grid, df, rows)


def table5(grid, df):
    rows = [(name_of(m["name"]), m) for m in method_rows(grid)]
    return metric_table("table5", "Table V: methods and bounds", grid, df, rows)


def table7(grid, df):
    scale = df["scale"].iloc[0] if len(df) else "paper"
    solvers = grid.get("cpu_solver") if scale != "paper" and "cpu_solver" in grid else grid["axes"]["solver"]
    tables = []
    for ds, sp in data_columns(grid, df):
        body, time_row = [], ["Sampling time (s)"]
        for m in method_rows(grid):
            line: list[Any] = [str(m.get("K", 10))]
            for s in solvers:
                sub = select(df, m, ds, sp, lambda d, s=s: (d["solver"] == s["name"]) & (d["steps"] == s["steps"]))
                line.append(stat(sub["la"]))
            body.append(line)
        nfe_header = []
        for s in solvers:
            sub = df[(df["solver"] == s["name"]) & (df["steps"] == s["steps"]) & (df["dataset"] == ds)]
            nfe = sub["nfe"].dropna()
            nfe_header.append(f"{s['steps']} steps (NFE {int(nfe.iloc[0])})" if len(nfe) else f"{s['steps']} steps")
            time_row.append(stat(sub["sampling_seconds"], digits=1))
        body.append(time_row)
        header = ["K"] + nfe_header
        tables.append(_note(Table("table7", f"Table VII: RK4, LA per K and solver budget ({ds} {sp})", header, body,
                                  {i + 1: "max" for i in range(len(solvers))})))
    return tables


def forgetting_table(grid, df):
    cols = data_columns(grid, df)
    tables = []
    for ds, sp in cols:
        body = []
        for m in method_rows(grid):
            sub = select(df, m, ds, sp)
            per_task = "-"
            if len(sub):
                arr = pd.DataFrame(sub["gen_seconds_per_task"].tolist()).mean()
                per_task = " / ".join(f"{v:.0f}" for v in arr)
            body.append([name_of(m["name"]), stat(sub["la"]), stat(sub["aia"]),
                         stat(sub["forgetting"]), per_task])
        header = ["Method", "LA", "AIA", "Forgetting", "Generator s per task"]
        t = Table(grid["name"], f"{grid.get('title', 'Forgetting')} ({ds} {sp})", header, body,
                  {1: "max", 2: "max", 3: "min"})
        t.footnotes.append("Forgetting: mean over tasks of the largest drop of a task's accuracy.")
        tables.append(_note(t))
    return tables


def settings(df: pd.DataFrame):
    """(label, rows) per method, options and adapter budget, in the records' order: a supplementary
    table never pools two settings of a method (table3_budget's 150 and 600 steps, zoo_budget's
    budgets) into one mean."""
    budgets = "adapter_steps" in df and df["adapter_steps"].nunique(dropna=False) > 1
    df = df.assign(_budget=df["adapter_steps"].map(lambda v: f", {int(v)} adapter steps") if budgets else "")
    if budgets:   # each method's budgets in increasing order, the methods in the records' order
        first = {m: i for i, m in enumerate(pd.unique(df["method"]))}
        df = df.assign(_first=df["method"].map(first)).sort_values(["_first", "adapter_steps"], kind="stable")
    options_vary = df.groupby("method")["options"].nunique()
    for (ds, sp, method, options, budget), sub in df.groupby(["dataset", "split", "method", "options", "_budget"],
                                                             sort=False):
        name = (grids.method_label({"name": method, **json.loads(options)}) if options_vary[method] > 1
                else name_of(method))
        yield f"{name} ({ds} {sp}{budget})", sub


def spread(values: pd.Series, digits: int = 1) -> str | None:
    """Median [min, max] over seeds (one seed: its value)."""
    v = values.dropna()
    if not len(v):
        return None
    if len(v) == 1:
        return f"{v.iloc[0]:.{digits}f}"
    return f"{v.median():.{digits}f} [{v.min():.{digits}f}, {v.max():.{digits}f}]"


def time_table(grid, df):
    """Wall-clock seconds as median [min, max] over seeds, not mean ± CI: a time depends on the
    machine and its load (the seeds may come from different CPUs), and one stalled run (Table V's
    LoRA attention sampled one task for 4,096 s, the others in under 60) would carry a mean."""
    body = [[label] + [spread(sub[c]) for c in ("gen_seconds", "sampling_seconds", "classifier_seconds",
                                                 "total_seconds")]
            for label, sub in settings(df)]
    header = ["Method", "Generator (s)", "Sampling (s)", "Classifier (s)", "Total (s)"]
    table = Table(f"{grid['name']}_time", f"Supplementary: time ({grid['name']})", header, body)
    ns = sorted({int(sub["total_seconds"].notna().sum()) for _, sub in settings(df)})
    if ns and ns[-1] > 1:
        table.footnotes.append(f"Wall-clock seconds, median [min, max] over seeds (n = {ns[0]}"
                               + (f" to {ns[-1]}" if len(ns) > 1 else "") + "): a time depends on the CPU "
                               "and its load, and one stalled run would carry a mean.")
    return [table]


def quality_table(grid, df):
    cols = [c for c in ("q_fid", "q_kid", "q_precision", "q_recall") if c in df.columns]
    if not cols or "q_extractor" not in df:
        return []
    tables = []
    for extractor, part in df.dropna(subset=["q_extractor"]).groupby("q_extractor"):
        body = [[label] + [stat(sub[c], digits=3) for c in cols] for label, sub in settings(part)]
        header = ["Method"] + [c[2:].upper() if c[2:] in ("fid", "kid") else c[2:] for c in cols]
        best = {i + 1: ("min" if c[2:] in ("fid", "kid") else "max") for i, c in enumerate(cols)}
        tables.append(Table(f"{grid['name']}_quality", f"Image quality, features: {extractor}", header, body, best))
    return tables


def tuning_table(grid, df):
    """tune=lr: the learning rate chosen per method (over seeds) and the mean criterion per candidate.

    No column is marked best: candidates are compared within a row (its chosen lr), never
    across methods, whose losses are not on one scale."""
    part = df.dropna(subset=["tuning"]) if "tuning" in df else df.iloc[:0]
    if part.empty:
        return []
    body, candidates, criterion = [], None, None
    for label, sub in settings(part):
        entries = [json.loads(t) for t in sub["tuning"]]
        candidates, criterion = entries[0]["candidates"], entries[0]["criterion"]
        chosen = ", ".join(f"{e['chosen']:g}" for e in entries)
        means = [stat(pd.Series([e["scores"][i] for e in entries]), digits=4) for i in range(len(candidates))]
        body.append([label, chosen] + means)
    header = ["Method", "chosen lr (per seed)"] + [f"lr {c:g}" for c in candidates]
    t = Table(f"{grid['name']}_tuning", f"Tuned adapter learning rates ({criterion})", header, body)
    t.footnotes.append("Criterion on a validation split of the training data (never the test set): "
                       + ("held-out flow-matching loss, lower is better." if criterion == "loss"
                          else "validation accuracy, higher is better."))
    return [t]


BUILDERS = {"table1": table1, "table2": table2, "table3": table3, "table3_budget": table3_budget, "table4": table4,
            "table5": table5, "table7": table7, "forgetting": forgetting_table}


def build(grid_name: str, df: pd.DataFrame) -> list[Table]:
    """Every table of one grid (the paper's layout, then time and quality tables)."""
    grid = grids.load(grid_name) if grid_name in grids.available() else None
    if grid is None:
        return time_table({"name": grid_name}, df)
    layout = grid.get("layout", grid_name)
    if layout == "pareto":
        from .pareto import tables as pareto_tables

        tables = pareto_tables(grid, df)
    else:
        tables = BUILDERS.get(layout, table5)(grid, df)
    return tables + tuning_table(grid, df) + time_table(grid, df) + quality_table(grid, df)


def is_finite(v) -> bool:
    return isinstance(v, Stat) and math.isfinite(v.mean)
