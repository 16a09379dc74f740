"""Render the paper's tables and figures from the records of a store.

    python -m bench.report [store=PATH] [grid=NAME] [format=md|latex|both] [out=DIR] [compare=paper]

Reads STORE/records/GRID/*.json, aggregates over seeds (mean, std, n), writes a markdown
and a LaTeX (booktabs) file per grid under OUT (default STORE/report) plus figures (PNG
and PDF), and prints the markdown tables. A record that is unreadable, lacks a field,
or is stale (its config differs from what the grid resolves to now) is reported and left
out; every table that can be rendered still is.
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from .. import grids
from ..config import parse_known
from ..errors import BenchError, cli
from . import figures, records, render, tables

KEYS = {"store": "results/store", "grid": None, "format": "both", "out": None, "compare": None, "figures": True}
PAPER = Path(__file__).with_name("paper_values.yaml")


def paper_tables(grid: str) -> list[tables.Table]:
    """The paper's published values for ``grid``, with their source, as tables of text."""
    values = yaml.safe_load(PAPER.read_text())
    out = []
    if grid == "table3":
        v = values["table3"]
        body = [[tables.name_of(m)] + [str(v[ds][m]) for ds in ("cifar10", "cifar100")]
                for m in ("vanilla_add", "mul_add", "vanilla_mul")]
        out.append(tables.Table("paper_table3", "Paper: Table III (LA)", ["Operation", "cifar10 2-2", "cifar100 20-20"],
                                body, footnotes=[f"Source: {v['source']}."]))
    if grid == "table7":
        v = values["table7"]
        body = [[str(k)] + [f"{x:.2f}" for x in row] for k, row in v["la"].items()]
        body.append(["Sampling time"] + [str(x) for x in v["sampling_time"]])
        out.append(tables.Table("paper_table7", "Paper: Table VII (RK4, LA)", ["K"] + [f"{s} steps" for s in v["steps"]],
                                body, footnotes=[f"Source: {v['source']}."]))
    if grid in ("table5", "fid"):
        v = values["table6"]
        body = [[f"{r['method']} {r['ref']}"] + [str(p) for p in r["params"]] + ["yes" if r["pretrained"] else "no"]
                for r in v["rows"]]
        width = max(len(r) for r in body)
        body = [r[:-1] + ["NA"] * (width - len(r)) + r[-1:] for r in body]
        header = ["Method"] + [f"P# ({i + 1})" for i in range(width - 2)] + ["pre-trained"]
        out.append(tables.Table("paper_table6", "Paper: Table VI backbone sizes", header, body,
                                footnotes=[f"Source: {v['source']}."]))
        q = values["quality"]
        out.append(tables.Table("paper_quality", "Paper: image quality (CIFAR10)", ["Method", "FID", "precision", "recall"],
                                [["FunLoRA", *(str(q["cifar10"]["funlora"][k]) for k in ("fid", "precision", "recall"))]],
                                footnotes=[f"Source: {q['source']}."]))
    return out


@cli
def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    args = parse_known(argv, KEYS)
    opt = {**KEYS, **args}
    if opt["format"] not in ("md", "latex", "both"):
        raise BenchError(f"format must be md, latex or both, got {opt['format']!r}")
    if opt["compare"] not in (None, "paper"):
        raise BenchError(f"compare takes only 'paper', got {opt['compare']!r}")
    grid = opt["grid"]
    if grid is not None and grid not in grids.available():
        raise BenchError(f"unknown grid {grid!r}; grids: {', '.join(grids.available())}")
    loaded = records.load(opt["store"], grid)
    for line in loaded.problems + loaded.stale:
        print(f"warning: {line}", file=sys.stderr)
    if loaded.frame.empty:
        raise BenchError(f"no usable record in {opt['store']}/records" + (f"/{grid}" if grid else ""))
    out = Path(opt["out"]) if opt["out"] else Path(opt["store"]) / "report"
    out.mkdir(parents=True, exist_ok=True)
    for name, df in loaded.frame.groupby("grid", sort=True):
        built = tables.build(name, df)
        if opt["compare"] == "paper":
            built += paper_tables(name)
        md = "\n".join(render.markdown(t) for t in built)
        print(f"## {name} ({len(df)} records)\n\n{md}")
        if opt["format"] in ("md", "both"):
            (out / f"{name}.md").write_text(f"## {name}\n\n{md}")
        if opt["format"] in ("latex", "both"):
            (out / f"{name}.tex").write_text("\n".join(render.latex(t) for t in built))
        if opt["figures"]:
            for path in figures.all_figures(name, df, out / "figures"):
                if path.suffix == ".png":
                    print(f"figure: {path}")
    if loaded.problems or loaded.stale:
        print(f"{len(loaded.problems)} unreadable and {len(loaded.stale)} stale record(s) left out (see warnings)",
              file=sys.stderr)
    print(f"tables and figures in {out}")
    return 0
