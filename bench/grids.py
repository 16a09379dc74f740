"""The paper's grids (data files in ``bench/grids/*.yaml``) expanded into cells.

A grid declares ``axes`` (``data`` entries {dataset, split}, ``method`` names or
{name, option...}, ``layers``, ``solver``, ``settings`` (mappings of dotted cell keys, e.g.
{generator.adapter.max_steps: 600}; {} keeps the preset), ``seed``) and ``fixed`` settings. Cells are the
Cartesian product. ``seeds=3`` (seeds 0, 1, 2), ``seeds=[..]`` and ``datasets=[..]`` narrow or widen the seed and data
axes; ``scale=cpu`` or ``scale=smoke`` swap the data axis for the grid's ``cpu_data``
(Fashion-MNIST with the paper's 10-class split) where the paper's data cannot serve.
"""
from __future__ import annotations

import copy
import difflib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import config as config_mod
from .data import DATASETS
from .errors import BenchError

GRID_DIR = Path(__file__).parent / "grids"
AXES = ("data", "layers", "method", "solver", "settings", "seed")


def available() -> list[str]:
    return sorted(p.stem for p in GRID_DIR.glob("*.yaml"))


def load(name: str) -> dict[str, Any]:
    """Grid ``name`` from bench/grids, or a user's grid file when ``name`` ends in .yaml."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else GRID_DIR / f"{name}.yaml"
    if name.endswith((".yaml", ".yml")) and not path.exists():
        raise BenchError(f"grid file {path} not found")
    if not path.exists():
        close = difflib.get_close_matches(name, available(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise BenchError(f"unknown grid {name!r}{hint}; grids: {', '.join(available())}")
    try:
        grid = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise BenchError(f"grid file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(grid, dict) or not isinstance(grid.get("axes"), dict):
        raise BenchError(f"grid {path} must be a mapping with an 'axes' mapping (see bench/grids/table5.yaml)")
    unknown = set(grid["axes"]) - set(AXES)
    if unknown:
        raise BenchError(f"grid {name}: unknown axis {sorted(unknown)[0]!r}; axes: {', '.join(AXES)}")
    grid["name"] = path.stem
    return grid


@dataclass
class Cell:
    """One cell: its label (readable, unique in the grid) and its resolved config."""

    grid: str
    label: str
    config: dict[str, Any]
    axes: dict[str, Any] = field(default_factory=dict)


def _method_entry(entry: Any) -> dict[str, Any]:
    return {"name": entry} if isinstance(entry, str) else dict(entry)


def method_label(method: dict[str, Any]) -> str:
    opts = ",".join(f"{k}={v}" for k, v in sorted(method.items()) if k != "name")
    return method["name"] + (f"[{opts}]" if opts else "")


def settings_label(settings: dict[str, Any]) -> str:
    """``_generator.adapter.max_steps=600`` for a settings entry ('' for {}: the preset)."""
    return "".join(f"_{k}={v}" for k, v in sorted(settings.items()))


def _nest(dotted: dict[str, Any]) -> dict[str, Any]:
    """{"a.b": 1} -> {"a": {"b": 1}} (a settings entry as cell keys)."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        *groups, leaf = key.split(".")
        node = out
        for g in groups:
            node = node.setdefault(g, {})
        node[leaf] = value
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def solver_label(solver: dict[str, Any]) -> str:
    if solver.get("name", "dopri5") == "dopri5":
        return f"dopri5-{solver.get('atol', 1e-4):g}"
    return f"{solver['name']}{solver.get('steps', '')}"


def _narrow(grid: str, key: str, entries: list[dict], wanted: dict) -> list[dict]:
    """The entries of an axis that agree with ``wanted`` on the keys they set (none: an error)."""
    kept = [e for e in entries if all(e.get(k, v) == v for k, v in wanted.items())]
    if not kept:
        asked = ", ".join(f"{key}.{k}={v!r}" for k, v in wanted.items())
        shown = "; ".join(", ".join(f"{k}={v}" for k, v in e.items()) for e in entries)
        raise BenchError(f"{asked} is not on grid {grid}'s {key} axis ({shown}); narrow it to one of "
                         f"those, or write a grid file (grid=my.yaml) for other values")
    return [{**e, **wanted} for e in kept]


def _narrow_methods(grid: str, entries: list[dict], wanted: dict) -> list[dict]:
    """method=NAME (or method=[A,B]) narrows the method axis to those methods' rows; method.X=V
    keeps rows that set X to V and sets X=V on rows that leave it to the default (the method
    then checks it)."""
    if "name" in wanted:
        names = wanted["name"] if isinstance(wanted["name"], (list, tuple)) else [wanted["name"]]
        absent = [n for n in names if not any(e["name"] == n for e in entries)]
        if absent:
            raise BenchError(f"method={absent[0]!r} is not in grid {grid} (its methods: "
                             f"{', '.join(dict.fromkeys(e['name'] for e in entries))}); write a grid file "
                             f"(grid=my.yaml) to run other methods")
        entries = [e for e in entries if e["name"] in names]
    options = {k: v for k, v in wanted.items() if k != "name"}
    kept = [e for e in entries if all(e.get(k, v) == v for k, v in options.items())]
    if not kept:
        raise BenchError(f"no row of grid {grid} has {', '.join(f'method.{k}={v!r}' for k, v in options.items())}")
    return [{**e, **options} for e in kept]


def _data_axis(grid: dict, scale: str, datasets: list[str] | None) -> list[dict]:
    data = grid["axes"]["data"]
    if scale != "paper":
        data = grid.get("cpu_data", data)
    if datasets is not None:
        chosen = []
        for name in datasets:
            if name not in DATASETS:
                raise BenchError(f"unknown dataset {name!r} in datasets=; datasets: {', '.join(DATASETS)}")
            match = [d for d in data if d["dataset"] == name]
            chosen += match or [{"dataset": name, "split": DATASETS[name].default_split}]
        data = chosen
    return data


def _refuse_repeats(name: str, grid: dict, scale: str, datasets: list | None) -> None:
    """An entry listed twice on an axis of the grid file (or in datasets=) would be one cell
    run once: refused in one line, as seeds=[0,0] is."""
    axes = grid["axes"]
    lists = {"data": grid.get("cpu_data", axes.get("data")) if scale != "paper" else axes.get("data"),
             "method": [_method_entry(m) for m in axes.get("method", [])], "layers": axes.get("layers"),
             "solver": grid.get("cpu_solver") if scale != "paper" and "cpu_solver" in grid else axes.get("solver"),
             "settings": axes.get("settings"), "seed": axes.get("seed"), "datasets=": datasets}
    for axis, entries in lists.items():
        seen = set()
        for entry in entries or []:
            key = json.dumps(entry, sort_keys=True, default=str)
            if key in seen:
                where = "datasets=" if axis == "datasets=" else f"grid {name}'s {axis} axis"
                raise BenchError(f"{where} lists {key} more than once: each entry is one cell, run once")
            seen.add(key)


def expand(name: str, overrides: dict[str, Any] | None = None) -> list[Cell]:
    """Every cell of grid ``name`` with ``overrides`` (cell-level keys, seeds=, datasets=)."""
    grid = load(name)
    name = grid["name"]
    overrides = copy.deepcopy(overrides or {})
    seeds = overrides.pop("seeds", None)
    datasets = overrides.pop("datasets", None)
    for key, use in (("seed", "seeds=[0,1] (or seeds=3 for seeds 0, 1, 2)"), ("dataset", "datasets=[...]"),
                     ("split", "datasets=[...] with a grid file for other splits")):
        if key in overrides:
            raise BenchError(f"{key}= is an axis of grid {name}: use {use}")
    method_override = overrides.pop("method", None)
    fixed = {**grid.get("fixed", {}), **overrides}
    scale = fixed.get("scale", "paper")
    axes = grid["axes"]
    if isinstance(seeds, bool) or (isinstance(seeds, int) and seeds < 1):
        raise BenchError(f"seeds must be a count (seeds=3: seeds 0, 1, 2) or a list (seeds=[0,5]), got {seeds!r}")
    if isinstance(seeds, int):
        seeds = list(range(seeds))
    if seeds is not None and (not isinstance(seeds, list) or not seeds
                              or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise BenchError(f"seeds must be a count (seeds=3: seeds 0, 1, 2) or a list of non-negative integers, "
                         f"got {seeds!r}")
    if seeds is not None and len(set(seeds)) < len(seeds):
        twice = next(s for s in seeds if seeds.count(s) > 1)
        raise BenchError(f"seeds lists seed {twice} more than once: {seeds!r}")
    if isinstance(datasets, str):
        datasets = [datasets]
    solver_axis = grid.get("cpu_solver") if scale != "paper" and "cpu_solver" in grid else axes.get("solver")
    if solver_axis and "solver" in overrides:
        solver_axis = _narrow(name, "solver", solver_axis, overrides["solver"])
    methods_axis = [_method_entry(m) for m in axes.get("method", [{"name": "vanilla_mul"}])]
    layers_axis = axes.get("layers", [None])
    if method_override is not None:
        if not isinstance(method_override, dict):
            method_override = {"name": method_override}
        if "layers" in method_override and axes.get("layers"):
            layers_axis = _narrow(name, "method", [{"layers": v} for v in layers_axis],
                                  {"layers": method_override.pop("layers")})
            layers_axis = [v["layers"] for v in layers_axis]
        methods_axis = _narrow_methods(name, methods_axis, method_override)
    values = {
        "data": _data_axis(grid, scale, datasets),
        "layers": layers_axis,
        "method": methods_axis,
        "solver": solver_axis or [None],
        "settings": axes.get("settings", [{}]),
        "seed": seeds if seeds is not None else axes.get("seed", [0]),
    }
    if not all(isinstance(e, dict) for e in values["settings"]):
        raise BenchError(f"grid {name}: each entry of the settings axis is a mapping of cell keys "
                         "({generator.adapter.max_steps: 600}; {} for the preset)")
    _refuse_repeats(name, grid, scale, datasets)
    cells, labels = [], set()
    for data, layers, method, solver, settings, seed in itertools.product(*(values[a] for a in AXES)):
        m = dict(method)
        if layers is not None:
            m["layers"] = layers
        cfg_in = _merge({**copy.deepcopy(fixed), **data, "seed": seed, "method": m}, _nest(settings))
        if solver is not None:
            cfg_in["solver"] = {**fixed.get("solver", {}), **solver}
        cfg_in.pop("out", None)
        cfg = config_mod.resolve(cfg_in)
        label = (f"{data['dataset']}_{data['split']}_{method_label(m)}_{solver_label(cfg['solver'])}"
                 f"{settings_label(settings)}_s{seed}")
        if label in labels:
            continue
        labels.add(label)
        cells.append(Cell(name, label, cfg, {"data": data, "method": m, "solver": cfg["solver"], "settings": settings,
                                             "seed": seed}))
    return cells
