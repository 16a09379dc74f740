"""The paper's figures with seaborn (PNG and PDF), from the records' analyses.

Figure 3: layer importance I_l with its spread over classes, against the Conv2d index;
Figure 4: rank of M_y per layer, one series per function; Figure 5: learned gamma and
omega per layer; accuracy against NFE (Table VII); Abar_t against task, per method.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..record import Record  # noqa: E402
from .stats import summarize  # noqa: E402


def _save(fig, out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for p in paths:  # through a temporary name: a killed report never leaves half a figure
        tmp = p.with_name(f".{p.stem}.tmp{os.getpid()}{p.suffix}")
        # no creation date in a PDF: the same records give the same bytes (committed reports do not churn)
        fig.savefig(tmp, bbox_inches="tight", dpi=120, metadata={"CreationDate": None} if p.suffix == ".pdf" else None)
        os.replace(tmp, p)
    plt.close(fig)
    return paths


def _analysis(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    rows = []
    for path, method in zip(df["path"], df["method"]):
        rec = Record.load(path)
        for r in (rec.analysis or {}).get(kind, []):
            rows.append({**r, "method": method, "record": Path(path).stem})
    return pd.DataFrame(rows)


def _names(df: pd.DataFrame) -> list[str]:
    """Each row's method as the tables name it (title and the options its cell set)."""
    from .tables import display_name

    return [display_name(m, o) for m, o in zip(df["method"], df["options"])]


def t_interval(values: pd.Series) -> tuple[float, float]:
    """The 95% Student t interval of the mean over seeds (a point for one seed), for seaborn's errorbar."""
    s = summarize(values)
    half = s.ci95 if s.ci95 == s.ci95 else 0.0
    return s.mean - half, s.mean + half


def accuracy_per_task(df: pd.DataFrame, out: Path, grid: str) -> list[Path]:
    rows = [{"method": m, "dataset": f"{d} {s}", "task": t + 1, "accuracy": a}
            for m, d, s, abar in zip(_names(df), df["dataset"], df["split"], df["avg_accuracy"]) if abar
            for t, a in enumerate(abar)]
    if not rows:
        return []
    data = pd.DataFrame(rows)
    # the band is the tables' Student t 95% interval over seeds, not seaborn's bootstrap (unseeded:
    # every render drew another band)
    g = sns.relplot(data=data, x="task", y="accuracy", hue="method", col="dataset", kind="line", marker="o",
                    errorbar=t_interval, height=3.2, aspect=1.2)
    g.set_axis_labels("task t", "average accuracy Abar_t (%) with 95% t interval")
    return _save(g.figure, out, f"{grid}_accuracy_per_task")


def accuracy_vs_nfe(df: pd.DataFrame, out: Path, grid: str) -> list[Path]:
    data = df.dropna(subset=["nfe"]).copy()
    if data.empty:
        return []
    data["K"] = data["options"].map(lambda o: json.loads(o).get("K", 10))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    sns.lineplot(data=data, x="nfe", y="la", hue="K", marker="o", errorbar=t_interval, ax=ax, palette="viridis")
    ax.set(xlabel="NFE per sample (counted)", ylabel="LA (%)", xscale="log")
    return _save(fig, out, f"{grid}_accuracy_vs_nfe")


def importance(df: pd.DataFrame, out: Path, grid: str) -> list[Path]:
    data = _analysis(df[df["method"] == "vanilla_mul"], "importance")
    if data.empty:
        return []
    fig, ax = plt.subplots(figsize=(7, 3.2))
    sns.lineplot(data=data, x="layer", y="importance", errorbar="sd", marker="o", ax=ax)
    ax.set(xlabel="Conv2d index l", ylabel="I_l (mean |B-1| + |A-1|)", title="Figure 3: layer importance")
    return _save(fig, out, f"{grid}_fig3_importance")


def rank(df: pd.DataFrame, out: Path, grid: str) -> list[Path]:
    data = _analysis(df, "rank")
    if data.empty:
        return []
    fig, ax = plt.subplots(figsize=(7, 3.2))
    sns.lineplot(data=data, x="layer", y="rank", hue="function", estimator="max", errorbar=None, marker="o", ax=ax)
    ax.set(xlabel="Conv2d index l", ylabel="rank of M_y (max over classes)", title="Figure 4: rank per layer")
    return _save(fig, out, f"{grid}_fig4_rank")


def function_parameters(df: pd.DataFrame, out: Path, grid: str) -> list[Path]:
    data = _analysis(df[df["method"] == "funlora"], "function_parameters")
    if data.empty:
        return []
    value_vars = [c for c in ("gamma", "omega", "p") if c in data]
    long = data.melt(id_vars=["layer", "j"], value_vars=value_vars, var_name="parameter")
    g = sns.relplot(data=long, x="j", y="value", hue="layer", col="parameter", kind="line", errorbar=None,
                    facet_kws={"sharey": False}, height=3.2, palette="viridis")
    g.figure.suptitle("Figure 5: learned gamma and omega per layer", y=1.03)
    return _save(g.figure, out, f"{grid}_fig5_function_parameters")


def tuning_curves(df: pd.DataFrame, out: Path, grid: str) -> list[Path]:
    """tune=lr: the criterion against the candidate learning rate, per method (mean and spread over seeds)."""
    if "tuning" not in df:
        return []
    rows = []
    for method, t in zip(_names(df), df["tuning"]):
        if isinstance(t, str):
            entry = json.loads(t)
            rows += [{"method": method, "lr": lr, "score": s, "criterion": entry["criterion"]}
                     for lr, s in zip(entry["candidates"], entry["scores"])]
    if not rows:
        return []
    data = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    sns.lineplot(data=data, x="lr", y="score", hue="method", marker="o", errorbar="sd", ax=ax)
    label = "held-out flow-matching loss" if data["criterion"].iloc[0] == "loss" else "validation accuracy (%)"
    ax.set(xscale="log", xlabel="adapter learning rate", ylabel=label, title="tune=lr: criterion per candidate")
    return _save(fig, out, f"{grid}_tuning")


def per_class_heatmap(df: pd.DataFrame, out: Path, grid: str) -> list[Path]:
    """Accuracy of the final classifier per class (columns) and method (rows), mean over seeds."""
    from ..data import DATASETS

    if "per_class" not in df or df["per_class"].isna().all():
        return []
    paths = []
    for (ds, sp), part in df.dropna(subset=["per_class"]).groupby(["dataset", "split"], sort=False):
        rows = [{"method": m, "class": int(c), "accuracy": a}
                for m, pc in zip(_names(part), part["per_class"]) for c, a in json.loads(pc).items()]
        if not rows:
            continue
        table = pd.DataFrame(rows).pivot_table(index="method", columns="class", values="accuracy", aggfunc="mean",
                                               sort=False)
        spec = DATASETS.get(ds)
        table.columns = [spec.name_of(c) if spec else str(c) for c in table.columns]
        fig, ax = plt.subplots(figsize=(1.0 + 0.7 * table.shape[1], 0.8 + 0.4 * table.shape[0]))
        sns.heatmap(table, annot=True, fmt=".0f", cmap="viridis", vmin=0, vmax=100, ax=ax,
                    cbar_kws={"label": "accuracy (%)"})
        ax.set(xlabel="class", ylabel="", title=f"Final accuracy per class ({ds} {sp})")
        paths += _save(fig, out, f"{grid}_per_class_{ds}_{sp}".replace("/", "-"))
    return paths


def all_figures(grid: str, df: pd.DataFrame, out: Path) -> list[Path]:
    """Every figure of ``grid``; one that cannot be drawn is a warning line, never the end of the report."""
    from .. import grids

    spec = grids.load(grid) if grid in grids.available() else {}
    makers = [accuracy_per_task, tuning_curves, per_class_heatmap]
    if grid == "table7":
        makers.append(accuracy_vs_nfe)
    if spec.get("layout") == "pareto":
        from .pareto import figure

        makers.append(lambda d, o, g: figure(spec, d, o))
    makers += [importance, rank, function_parameters]
    paths = []
    for fn in makers:
        try:
            paths += fn(df, out, grid)
        except Exception as exc:  # noqa: BLE001 - a figure of bad data is left out, the rest goes on
            plt.close("all")
            print(f"warning: grid {grid}: figure {getattr(fn, '__name__', 'pareto')} left out "
                  f"({type(exc).__name__}: {str(exc)[:120]})", file=sys.stderr)
    return paths
