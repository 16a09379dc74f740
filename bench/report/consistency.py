"""One answer per cell: records of the same cell, computed the same way, must agree to the bit.

Two records are of one cell when their configs agree on everything that decides what is
computed (the grid they sit in, paths and progress bars aside; a budgeted method as the size
it resolves to, so the zoo's FunLoRA at 1x is Table V's FunLoRA), in the same numerics class (``bench/numerics.py``: every portable CPU run is of
one class; native runs follow the CPU type). Such records must hold the same accuracy
matrix; the published store's test fails on any pair that does not (``disagreements``).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..numerics import class_of_record
from ..record import Record, with_added_keys
from ..stages import method_key

# Config keys that never change a number: where files go, what is shown, how many images a
# sample grid holds.
NOT_COMPUTED = ("progress", "data_root", "workdir", "out", "sample_grid")


def identity(rec: Record) -> str:
    """What decides a record's numbers: its config and numerics class, as one string (threads
    aside: a published store runs every cell with one thread, and old records do not say)."""
    cfg = {k: v for k, v in with_added_keys(rec.config).items() if k not in NOT_COMPUTED}
    cfg["method"] = method_key(cfg)
    cfg.pop("threads", None)   # a store computes every cell alike (jobs=auto: one thread each)
    return json.dumps({"config": cfg, "numerics": class_of_record(rec.numerics, rec.hardware, rec.device)},
                      sort_keys=True, default=str)


def disagreements(paths: list[Path]) -> list[str]:
    """One line per pair of records of one cell whose numbers differ (first record of each cell
    against every other); records that do not load are another test's business and skipped."""
    first: dict[str, tuple[Path, Record]] = {}
    out = []
    for path in sorted(paths):
        try:
            rec = Record.load(path)
        except Exception:   # noqa: BLE001 - a damaged record is named by Record.load's own checks
            continue
        key = identity(rec)
        if key not in first:
            first[key] = (path, rec)
            continue
        other_path, other = first[key]
        if other.accuracy != rec.accuracy or other.ppc != rec.ppc:
            cls = class_of_record(rec.numerics, rec.hardware, rec.device)
            out.append(f"{other_path} and {path}: one cell ({rec.cell.method}, seed {rec.cell.seed}, {cls} "
                       f"numerics) with two answers: LA {other.la:.2f} and {rec.la:.2f}")
    return out
