"""What a sweep submits: stage jobs that submitit can pickle, run anywhere and requeue.

``StageJob`` is a ``submitit.helpers.Checkpointable``: on preemption or time limit
(SIGUSR2 on Slurm) it saves the running generator stage's state when it is between two
steps and requeues itself with the same arguments; the rerun resumes every stage from
its last checkpoint (finished stages and per-task evaluations are reused as they are).
"""
from __future__ import annotations

import json
import os
import signal
import traceback
from pathlib import Path
from typing import Any

import submitit

from . import trainer
from .protocol import Cell, run_cell, write_json_atomic


def train_backbone(cfg: dict, artifacts: str) -> dict:
    """Train (or reuse) the task-1 backbone of ``cfg``; returns the training summary."""
    cell = Cell(cfg, artifacts, log=lambda *_: None)
    cell.unet.to(cell.device)
    d = cell.data
    import torch

    m = torch.isin(d.train_y, torch.tensor(d.tasks[0]))
    info = cell.train_generator(1, d.tasks[0], d.train_x[m], d.train_y[m], full=True)
    return {"backbone": str(cell.paths.backbone), **info}


def run_cells(cells: list[dict], artifacts: str) -> list[dict]:
    """Run cells that share their generators (they differ only in the solver), writing each record."""
    out = []
    for item in cells:
        record = run_cell(item["config"], artifacts, log=lambda *_: None)
        record["grid"], record["label"] = item["grid"], item["label"]
        write_json_atomic(Path(item["record"]), record)
        out.append({"label": item["label"], "la": record["la"], "aia": record["aia"]})
    return out


class StageJob(submitit.helpers.Checkpointable):
    """A stage of a sweep: ``kind`` is ``backbone`` or ``cells``."""

    def __call__(self, kind: str, payload: Any, artifacts: str) -> Any:
        threads = os.environ.get("FUNLORA_THREADS") or os.environ.get("SLURM_CPUS_PER_TASK")
        if threads:  # never more threads than the job's cores: OpenMP spinning makes that 10x slower
            import torch

            torch.set_num_threads(max(1, int(threads)))
        if kind == "backbone":
            return train_backbone(payload, artifacts)
        if kind == "cells":
            return run_cells(payload, artifacts)
        if kind == "fail":  # used by the tests: a cell that fails
            raise RuntimeError(str(payload))
        raise ValueError(f"unknown stage kind {kind!r}")

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        trainer.save_active_checkpoint()
        # submitit requeues next with `scontrol requeue`; Slurm answers the requeue by sending
        # SIGTERM to the job's processes, which can kill that scontrol child before it returns
        # (the job then fails instead of requeueing). An ignored SIGTERM survives exec, so the
        # child is immune; this process exits right after the requeue anyway.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return super().checkpoint(*args, **kwargs)


def describe_failure(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "".join(traceback.format_exception_only(type(exc), exc)).strip()


def read_record(path: Path, expected_config: dict | None = None) -> tuple[str, dict | None]:
    """('ok' | 'missing' | 'corrupt: why' | 'stale', record) for the record at ``path``."""
    if not path.exists():
        return "missing", None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return f"corrupt: {type(exc).__name__}", None
    for key in ("la", "aia", "accuracy", "config", "ppc", "nfe", "seconds"):
        if key not in record:
            return f"corrupt: no field {key!r}", None
    if expected_config is not None and record["config"] != expected_config:
        return "stale", record
    return "ok", record
