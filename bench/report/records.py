"""Read a store's records into one tidy pandas DataFrame (one row per record).

A record that cannot be read, lacks a field, or whose resolved config disagrees with
what its grid resolves to now (stale code or settings) is reported, never mixed in.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import grids
from ..data import DATASETS
from ..errors import BenchError
from ..metrics import forgetting
from ..numerics import class_of_record
from ..record import Record, missing_grid, with_added_keys


@dataclass
class Loaded:
    frame: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)   # in the tables, but a file it names is gone


def _expected_configs(grid: str, overrides: dict, seed: int, cache: dict) -> dict[str, dict]:
    """What grid ``grid`` resolves to now with the sweep's overrides of a record (label -> config)."""
    key = (grid, json.dumps(overrides, sort_keys=True, default=str), seed)
    if key not in cache:
        try:
            cache[key] = {c.label: c.config for c in grids.expand(grid, {**overrides, "seeds": [seed]})}
        except BenchError:
            cache[key] = {}
    return cache[key]


# Keys that say where and how fast a cell ran, never what it computed: a record made with
# threads=1 or device=cuda is not stale.
CIRCUMSTANTIAL = ("threads", "progress", "device", "data_root", "workdir", "out", "deterministic", "compile",
                  "sample_grid")


def _results_config(cfg: dict) -> dict:
    return {k: v for k, v in with_added_keys(cfg).items() if k not in CIRCUMSTANTIAL}


def flatten(rec: Record, path: Path) -> dict:
    """One tidy row of a record: the axes, the metrics, the times, options and quality."""
    cell, cfg = rec.cell, rec.config
    nfe_mean = [n.per_call_mean for n in rec.nfe if n.per_call_mean]
    row = {
        "grid": rec.grid or path.parent.name, "label": rec.label or path.stem, "path": str(path),
        "dataset": cell.dataset, "split": cell.split, "method": cell.method,
        "options": json.dumps(cell.method_options, sort_keys=True),
        "solver": cell.solver["name"], "steps": cell.solver.get("steps"),
        "seed": cell.seed, "scale": cell.scale,
        "la": rec.la, "aia": rec.aia, "ppc": rec.ppc,
        "forgetting": forgetting(rec.accuracy),
        "nfe": sum(nfe_mean) / len(nfe_mean) if nfe_mean else None,
        "gen_seconds": sum(rec.seconds.generator), "sampling_seconds": sum(rec.seconds.sampling),
        "classifier_seconds": sum(rec.seconds.classifier), "total_seconds": rec.seconds.total,
        "gen_seconds_per_task": rec.seconds.generator, "avg_accuracy": rec.avg_accuracy,
    }
    for opt, value in cell.method_options.items():
        row[f"opt_{opt}"] = value
    for key, value in (rec.quality or {}).items():
        row[f"q_{key}"] = value
    row["layers"] = (cfg.get("method") or {}).get("layers", "auto")
    row["adapter_steps"] = ((cfg.get("generator") or {}).get("adapter") or {}).get("max_steps")
    lr = (rec.tuning or {}).get("lr")
    row["tuned_lr"] = lr["chosen"] if lr else None
    row["tuning"] = json.dumps(lr) if lr else None
    row["budget"] = json.dumps(rec.budget) if rec.budget else None
    row["per_class"] = json.dumps(rec.per_class_accuracy[-1]) if rec.per_class_accuracy else None
    row["sample_grids"] = json.dumps(rec.sample_grids) if rec.sample_grids else None
    row["created"] = rec.created
    row["numerics"] = class_of_record(rec.numerics, rec.hardware, rec.device)
    row["config_json"] = json.dumps(rec.config, sort_keys=True, default=str)
    return row


def published_seeds(store: str | Path) -> dict[str, set[int]]:
    """The seeds STORE/computed.json lists as finished, per grid (written by scripts/publish-results.sh)."""
    path = Path(store) / "computed.json"
    if not path.is_file():
        raise BenchError(f"published=true reads {path}, which does not exist: scripts/publish-results.sh writes it")
    try:
        done = json.loads(path.read_text())
        return {g: {int(s) for s in seeds} for g, seeds in done.items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise BenchError(f"{path} is not a map of grid to seeds ({exc})") from None


def load(store: str | Path, grid: str | None = None, only: dict[str, set[int]] | None = None) -> Loaded:
    """Every record under STORE/records (of one grid if given), flattened, with problems listed.
    ``only`` (grid -> seeds) keeps those seeds' records and leaves the rest out: a seed a sweep is
    still computing stays out of a report rendered beside it."""
    root = Path(store) / "records"
    if not root.is_dir():
        raise BenchError(f"no records in {store} (expected {root}/GRID/*.json): run python -m bench.sweep first")
    paths = sorted((root / grid).glob("*.json") if grid else root.glob("*/*.json"))
    rows, out, cache = [], Loaded(pd.DataFrame()), {}
    for path in paths:
        try:
            rec = Record.load(path)
        except BenchError as exc:
            out.problems.append(str(exc))
            continue
        if rec.cell.dataset in DATASETS and DATASETS[rec.cell.dataset].throughput_only:
            out.problems.append(f"{path}: dataset {rec.cell.dataset} is random tensors for timing runs; "
                                "never in a table")
            continue
        g = rec.grid or path.parent.name
        if only is not None and rec.cell.seed not in only.get(g, set()):
            continue
        if g in grids.available():
            overrides = {k: v for k, v in (rec.overrides or {}).items() if k not in CIRCUMSTANTIAL}
            # its numerics mode says how it was computed, not what: a record of either mode is
            # current (the report names each seed's numerics class); a sweep in the other mode redoes it
            overrides["numerics"] = with_added_keys(rec.config)["numerics"]
            expected = _expected_configs(g, {"scale": rec.cell.scale, **overrides}, rec.cell.seed, cache)
            label = rec.label or path.stem
            if label in expected and _results_config(expected[label]) != _results_config(rec.config):
                out.stale.append(f"{path}: its config differs from what grid {g} resolves to now")
                continue
        lost = missing_grid(rec, path)
        if lost:   # its cell's stages are still in the store: the sweep redraws it
            out.incomplete.append(f"{path}: its sample grid {lost} is missing: rerun the sweep to redraw it")
        rows.append(flatten(rec, path))
    out.frame = pd.DataFrame(rows)
    return out
