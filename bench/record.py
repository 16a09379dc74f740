"""The cell record: one dataclass, versioned, written as JSON and loaded with validation.

Protocol, sweep, report and tests all go through ``Record``; no other module lists its
fields. ``Record.load(path)`` checks every field's type and raises one ``BenchError``
naming the file and the field, so a damaged or hand-edited record never reaches a table.
"""
from __future__ import annotations

import json
import math
import os
import types
import typing
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional, Union

from .errors import BenchError

SCHEMA = 1


@dataclass
class CellInfo:
    """Which cell this is: the grid's axes."""

    dataset: str
    split: str
    method: str
    method_options: dict[str, Any]
    scale: str
    seed: int
    solver: dict[str, Any]


@dataclass
class NFE:
    """One task's sampling cost, counted: calls, total evaluations, per call mean / min / max."""

    solver: str
    calls: int
    total: int
    per_call_mean: Optional[float] = None
    per_call_min: Optional[int] = None
    per_call_max: Optional[int] = None


@dataclass
class Seconds:
    """Compute seconds per task and stage (reused stages report their recorded time)."""

    generator: list[float]
    sampling: list[float]
    classifier: list[float]
    total: float


# Config keys added after records of SCHEMA 1 were first written, with the value that
# reproduces what those records computed: an older record without them is not stale.
ADDED_CONFIG_KEYS = {"precision": "fp32", "compile": False, "sample_grid": 8, "classifier.width": 64,
                     "numerics": "native"}


def with_added_keys(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the keys added since it was written, at the values it implied
    (a dotted key is nested: ``classifier.width``)."""
    out = dict(config)
    for key, value in ADDED_CONFIG_KEYS.items():
        group, _, leaf = key.rpartition(".")
        if not group:
            out.setdefault(key, value)
        elif isinstance(out.get(group), dict) and leaf not in out[group]:
            out[group] = {**out[group], leaf: value}
    return out


def missing_grid(record: Record, path: Path | None = None) -> Path | None:
    """A sample grid the record names that is gone while its cell's stage outputs are still there
    (so a rerun redraws it from them, cheaply); None otherwise. A record published without its
    artifacts (results/cpu: only records and the report are committed) is complete as it is.

    PATH, the record's file (STORE/records/GRID/LABEL.json): a grid outside STORE was drawn in
    another store (the clone or copy a published record came from, whose stages may be half
    recomputed right now) and is not this store's to redraw."""
    store = path.resolve().parents[2] if path is not None and path.parent.parent.name == "records" else None
    for grid in record.sample_grids or []:
        if not grid or (store is not None and not Path(grid).is_relative_to(store)):
            continue
        if not Path(grid).exists() and Path(grid).parent.is_dir():
            return Path(grid)
    return None


@dataclass
class Record:
    """Everything one cell produced (README: "The record")."""

    cell: CellInfo
    tasks: list[list[int]]
    accuracy: list[list[Optional[float]]]
    avg_accuracy: list[float]
    la: float
    aia: float
    ppc: int
    embedding_params_per_class: int
    trainable_per_task: list[int]
    nfe: list[NFE]
    seconds: Seconds
    config: dict[str, Any]
    device: str
    torch: str
    created: str
    schema: int = SCHEMA
    analysis: Optional[dict[str, list[dict[str, Any]]]] = None
    quality: Optional[dict[str, Any]] = None
    tuning: Optional[dict[str, Any]] = None
    grid: Optional[str] = None
    label: Optional[str] = None
    overrides: Optional[dict[str, Any]] = None   # the sweep's key=value settings beyond the grid
    budget: Optional[dict[str, Any]] = None      # methods.budget.BudgetChoice: requested, limit, size, met
    shared_params: int = 0                       # frozen parameters shared by all classes (VeRA)
    per_class_accuracy: Optional[list[dict[str, float]]] = None  # per task: class -> accuracy (%)
    sample_grids: Optional[list[Optional[str]]] = None           # per task: PNG of n samples per seen class
    implementation: Optional[dict[str, str]] = None              # how the adapter computed (FunLoRA's kernel)
    hardware: Optional[str] = None                               # the CPU model or GPU it was computed on
    threads: Optional[int] = None                                # torch's CPU threads (CPU numbers depend on them)
    numerics: Optional[dict[str, Any]] = None                    # bench.numerics.describe(): mode, class, CPU, ISAs

    # ---- JSON -------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, path: str | Path) -> Path:
        """Write atomically (unique temporary name, fsync, rename)."""
        return write_json_atomic(path, self.to_json())

    @classmethod
    def from_json(cls, obj: Any, where: str = "record") -> "Record":
        """Build from parsed JSON, validating every field (BenchError naming ``where`` and the field)."""
        rec = _build(cls, obj, where, "")
        if rec.schema != SCHEMA:
            raise BenchError(f"{where}: schema {rec.schema} is not this suite's record schema {SCHEMA}")
        T = len(rec.tasks)
        for name, values in (("la", [rec.la]), ("aia", [rec.aia]), ("avg_accuracy", rec.avg_accuracy),
                             ("accuracy", [v for row in rec.accuracy for v in row if v is not None])):
            bad = next((v for v in values if not (math.isfinite(v) and 0 <= v <= 100)), None)
            if bad is not None:
                raise BenchError(f"{where}: field {name!r} holds {bad!r}, not an accuracy in 0-100 %")
        if len(rec.accuracy) != T or any(len(row) != T for row in rec.accuracy):
            raise BenchError(f"{where}: field 'accuracy' is not a {T} x {T} matrix")
        for t, row in enumerate(rec.accuracy):
            if any(v is None for v in row[:t + 1]):
                raise BenchError(f"{where}: field 'accuracy' has no value on or below the diagonal in row {t + 1}")
        for name in ("per_class_accuracy", "sample_grids"):
            value = getattr(rec, name)
            if value is not None and len(value) != T:
                raise BenchError(f"{where}: field '{name}' has {len(value)} entries for {T} tasks")
        for t, row in enumerate(rec.per_class_accuracy or []):
            seen = {str(c) for task in rec.tasks[:t + 1] for c in task}
            bad = next((k for k in row if k not in seen), None)
            if bad is not None:
                raise BenchError(f"{where}: field 'per_class_accuracy' task {t + 1}: key {bad!r} is not a class "
                                 "seen by then (keys are class indices)")
            if any(not (math.isfinite(v) and 0 <= v <= 100) for v in row.values()):
                raise BenchError(f"{where}: field 'per_class_accuracy' task {t + 1}: an accuracy outside 0-100 %")
        return rec

    @classmethod
    def load(cls, path: str | Path) -> "Record":
        path = Path(path)
        try:
            obj = json.loads(path.read_text())
        except OSError as exc:
            raise BenchError(f"record {path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
        except ValueError as exc:
            raise BenchError(f"record {path}: not valid JSON ({str(exc).splitlines()[0]})") from None
        return cls.from_json(obj, f"record {path}")


# ---- validation of JSON against the dataclasses' type hints ------------------------------------
def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin is list:
        return "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if isinstance(tp, type):
        return "a mapping"
    return str(tp)


def _check(value: Any, tp: Any, where: str, path: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check(value, inner[0], where, path)
    bad = BenchError(f"{where}: field {path!r} must be {_type_name(tp)}, got {json.dumps(value)[:60]}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise bad
        return value
    if origin is list:
        if not isinstance(value, list):
            raise bad
        return [_check(v, args[0], where, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise bad
        return {k: _check(v, args[1], where, f"{path}.{k}") for k, v in value.items()} if args else value
    if isinstance(tp, type) and hasattr(tp, "__dataclass_fields__"):
        return _build(tp, value, where, path)
    raise TypeError(f"unsupported field type {tp}")  # pragma: no cover - a bug in this module


def _build(cls: type, obj: Any, where: str, prefix: str) -> Any:
    if not isinstance(obj, dict):
        raise BenchError(f"{where}: {('field ' + repr(prefix)) if prefix else 'the record'} must be a mapping, "
                         f"got {json.dumps(obj)[:60]}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        path = f"{prefix}.{f.name}" if prefix else f.name
        if f.name not in obj:
            if f.default is MISSING and f.default_factory is MISSING:
                raise BenchError(f"{where}: field {path!r} is missing")
            continue
        kwargs[f.name] = _check(obj[f.name], hints[f.name], where, path)
    return cls(**kwargs)


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """JSON to ``path`` through a unique temporary file, flushed, fsynced and renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}.{id(obj):x}")
    with open(tmp, "w") as f:
        f.write(json.dumps(obj, indent=2, default=_default))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def _default(obj: Any) -> Any:
    try:
        return float(obj)
    except (TypeError, ValueError):
        return str(obj)


__all__ = ["Record", "CellInfo", "NFE", "Seconds", "SCHEMA", "write_json_atomic"]
