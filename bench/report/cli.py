"""Render the paper's tables and figures from the records of a store.

    python -m bench.report [store=PATH] [grid=NAME] [format=md|latex|json|html|both|all] [out=DIR]
                           [compare=paper] [reference=METHOD] [published=true]

Reads STORE/records/GRID/*.json, aggregates over seeds (mean, std, n, 95% CI), compares
every method with a reference (default funlora where the grid has it) paired by seed
(difference, CI, Holm-corrected paired t-test), and writes per grid under OUT (default
STORE/report) a markdown file, a LaTeX (booktabs) file with a standalone document that
compiles it (GRID_tables.tex), a tidy JSON file and an HTML page of the same numbers
(index.html links every grid; figures, sample grids and each cell's config included),
plus figures (PNG and PDF); it prints the markdown tables. ``compare=paper``
adds the paper's published values and checks its claims (claims.md / claims.json).
``published=true`` keeps only the seeds STORE/computed.json lists as finished (written by
scripts/publish-results.sh): a report rendered while a sweep computes the next seed leaves
that seed out. A record that is unreadable, lacks a field, or is stale (its config differs
from what the grid resolves to now) is reported and left out; every table that can be
rendered still is.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional

import yaml

from .. import grids
from ..config import parse_known, typed_merge
from ..errors import BenchError, cli, ensure_writable_dir
from ..record import write_json_atomic
from . import claims, evidence, figures, html, records, render, tables

@dataclass
class ReportOptions:
    store: str = "results/store"
    grid: Optional[str] = None
    format: str = "all"
    out: Optional[str] = None
    compare: Optional[str] = None
    figures: bool = True
    reference: Optional[str] = None
    published: bool = False


KEYS = {f.name: f.default for f in fields(ReportOptions)}
FORMATS = {"md": {"md"}, "latex": {"latex"}, "json": {"json"}, "html": {"html"}, "both": {"md", "latex"},
           "all": {"md", "latex", "json", "html"}}
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
    opt = typed_merge(ReportOptions, parse_known(argv, KEYS))
    if opt["format"] not in FORMATS:
        raise BenchError(f"format must be one of {', '.join(FORMATS)}, got {opt['format']!r}")
    formats = FORMATS[opt["format"]]
    if opt["compare"] not in (None, "paper"):
        raise BenchError(f"compare takes only 'paper', got {opt['compare']!r}")
    grid = opt["grid"]
    if grid is not None and grid not in grids.available():
        raise BenchError(f"unknown grid {grid!r}; grids: {', '.join(grids.available())}")
    out = Path(opt["out"]) if opt["out"] else Path(opt["store"]) / "report"
    if out.exists() and not out.is_dir():
        raise BenchError(f"out={out} is a file; give a directory for the report")
    only = records.published_seeds(opt["store"]) if opt["published"] else None
    loaded = records.load(opt["store"], grid, only)
    for line in loaded.problems + loaded.stale + loaded.incomplete:
        print(f"warning: {line}", file=sys.stderr)
    if loaded.frame.empty:
        raise BenchError(f"no usable record in {opt['store']}/records" + (f"/{grid}" if grid else ""))
    reference = opt["reference"]
    if reference is not None and not (loaded.frame["method"] == reference).any():
        raise BenchError(f"reference={reference!r} has no record here; methods: "
                         + ", ".join(sorted(loaded.frame["method"].unique())))
    ensure_writable_dir(out, "out")
    pages = []
    verdicts = claims.check(loaded.frame) if opt["compare"] == "paper" else []
    for name, df in loaded.frame.groupby("grid", sort=True):
        rows = evidence.tidy(name, df, reference)
        built = tables.build(name, df) + evidence.paired_table(name, rows)
        if opt["compare"] == "paper":
            built += [t for t in [claims.table(verdicts, name)] if t is not None] + paper_tables(name)
        md = "\n".join(render.markdown(t) for t in built)
        print(f"## {name} ({len(df)} records)\n\n{md}")
        if "md" in formats:
            write_text_atomic(out / f"{name}.md", f"## {name}\n\nThese records: {records_summary(df)}.\n\n{md}")
        if "latex" in formats:
            write_text_atomic(out / f"{name}.tex", "\n".join(render.latex(t) for t in built))
            write_text_atomic(out / f"{name}_tables.tex", render.latex_document([name], f"funlora-bench: {name}"))
        if "json" in formats:
            write_json_atomic(out / f"{name}.json", rows)
        pngs = []
        if opt["figures"]:
            for path in figures.all_figures(name, df, out / "figures"):
                if path.suffix == ".png":
                    print(f"figure: {path}")
                    pngs.append(path)
        if "html" in formats:
            pages.append(html_page(name, df, built, pngs))
    if opt["compare"] == "paper":
        text = claims.markdown(verdicts)
        print(text)
        write_text_atomic(out / "claims.md", text)
        write_json_atomic(out / "claims.json", claims.to_json(verdicts))
    index = None
    if "html" in formats and pages:
        extra = [("claims checked against the paper (markdown)", "claims.md")] if opt["compare"] == "paper" else []
        index = html.write_site(out, pages, extra)
    if loaded.problems or loaded.stale:
        print(f"{len(loaded.problems)} unreadable and {len(loaded.stale)} stale record(s) left out (see warnings)",
              file=sys.stderr)
    print(f"tables and figures in {out}")
    if index is not None:
        print(f"html report: {index}  (open it in a browser)")
    return 0


def html_page(name: str, df, built: list, pngs: list[Path]) -> "html.Page":
    """The HTML page of one grid: its tables, figures, sample grids and cell configs."""
    import json

    from .tables import display_name

    spec = grids.load(name) if name in grids.available() else {}
    ordered = df.sort_values(["dataset", "split", "method", "seed"])
    several_solvers = ordered[["solver", "steps"]].drop_duplicates().shape[0] > 1
    names = [f"{display_name(m, o)}, {d} {s}, seed {seed}" + (f", {sv}" + (f" {st}" if st == st and st else "")
                                                             if several_solvers else "")
             for m, o, d, s, seed, sv, st in zip(ordered["method"], ordered["options"], ordered["dataset"],
                                                 ordered["split"], ordered["seed"], ordered["solver"],
                                                 ordered["steps"])]
    samples = []
    if "sample_grids" in df:   # one seed's grids per cell (its lowest with grids): the page stays readable
        shown: set[tuple] = set()
        for n, label, g, created, *cell in zip(names, ordered["label"], ordered["sample_grids"], ordered["created"],
                                               ordered["dataset"], ordered["split"], ordered["method"],
                                               ordered["options"], ordered["solver"], ordered["steps"]):
            key = tuple(str(c) for c in cell)
            if isinstance(g, str) and key not in shown:
                shown.add(key)
                samples.append((n, label, json.loads(g), html.written_at(created)))
    configs = [(label, json.loads(c)) for label, c in zip(ordered["label"], ordered["config_json"])]
    about = f"These records: {records_summary(df)}. The grid: {spec.get('description', name)}"
    return html.Page(name, about, len(df), built, pngs, samples, configs)


def records_summary(df) -> str:
    """What the records of a grid are, read from them: datasets and splits, scales, seeds, cells."""
    data = ", ".join(f"{d} {s}" for d, s in sorted(df[["dataset", "split"]].drop_duplicates().itertuples(index=False)))
    scales = ", ".join(f"scale={s}" for s in sorted(df["scale"].unique()))
    seeds = sorted(int(s) for s in df["seed"].unique())
    shown = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"
    return (f"{data} at {scales}, {shown}, {df['method'].nunique()} methods ({len(df)} records); "
            f"numerics {numerics_summary(df)}")


def numerics_summary(df) -> str:
    """Which seeds were computed in which numerics class (bench/numerics.py): records of one
    cell agree to the bit only within a class, and native classes follow the CPU type."""
    if "numerics" not in df:
        return "unknown"
    by_class: dict[str, set[int]] = {}
    for cls, seed in df[["numerics", "seed"]].itertuples(index=False):
        by_class.setdefault(str(cls), set()).add(int(seed))
    if len(by_class) == 1:
        return next(iter(by_class))
    parts = []
    for cls, seeds in sorted(by_class.items(), key=lambda kv: min(kv[1])):
        s = sorted(seeds)
        parts.append(f"{cls} (seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))})")
    return "; ".join(parts) + " (a rerun reproduces a seed to the bit only in its class)"


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
