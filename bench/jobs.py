"""What a sweep submits: stage jobs that submitit can pickle, run anywhere and requeue.

``StageJob`` is a ``submitit.helpers.Checkpointable``: on preemption or time limit
(SIGUSR2 on Slurm) it saves the running generator stage's state when it is between two
steps and requeues itself with the same arguments; the rerun resumes every stage from
its last checkpoint (finished stages and per-task evaluations are reused as they are).
"""
from __future__ import annotations

import dataclasses
import os
import re
import signal
import traceback
from pathlib import Path
from typing import Any

import submitit

from . import trainer
from .errors import BenchError
from .protocol import Cell, run_cell
from .record import Record, missing_grid, with_added_keys


def train_backbone(cfg: dict, artifacts: str) -> dict:
    """Train (or reuse) the task-1 backbone of ``cfg``; returns the training summary."""
    cell = Cell(cfg, artifacts, log=lambda *_: None)
    cell.unet.to(cell.device)
    info = cell.train_backbone()
    return {"backbone": str(cell.paths.backbone), **dataclasses.asdict(info)}


def run_cells(cells: list[dict], artifacts: str) -> list[dict]:
    """Run cells that share their generators (they differ only in the solver), writing each record."""
    out = []
    for item in cells:
        record = run_cell(item["config"], artifacts, log=lambda *_: None)
        record.grid, record.label = item["grid"], item["label"]
        record.overrides = item.get("overrides") or {}
        record.write(item["record"])
        out.append({"label": item["label"], "la": record.la, "aia": record.aia})
    return out


class StageJob(submitit.helpers.Checkpointable):
    """A stage of a sweep: ``kind`` is ``backbone`` or ``cells``."""

    def __call__(self, kind: str, payload: Any, artifacts: str, gpus: str | None = None) -> Any:
        from .local import use_gpus

        use_gpus(gpus)   # the GPU(s) a local job was given, before anything touches CUDA
        threads = os.environ.get("FUNLORA_THREADS") or os.environ.get("SLURM_CPUS_PER_TASK")
        if threads:  # never more threads than the job's cores: OpenMP spinning makes that 10x slower
            import torch

            torch.set_num_threads(max(1, int(threads)))
        if kind == "backbone":
            return train_backbone(payload, artifacts)
        if kind == "cells":
            return run_cells(payload, artifacts)
        if kind == "environment":   # what a job sees (the tests and gpu_node.py ask)
            import torch

            return {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
                    "FUNLORA_THREADS": os.environ.get("FUNLORA_THREADS"), "threads": torch.get_num_threads(),
                    "cuda": torch.cuda.is_available(), "payload": payload}
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


_EXC_LINE = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Interrupt|Exit)|Killed)\b(: .*)?$")


def describe_failure(exc: BaseException) -> str:
    """``Type: message`` of the job's own exception (submitit wraps it with a traceback and log paths)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for line in reversed(lines):
        m = _EXC_LINE.match(line)
        if m and not line.startswith("submitit."):
            return line
    if lines:
        return f"{type(exc).__name__}: {lines[0]}"
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def read_record(path: Path, expected_config: dict | None = None) -> tuple[str, Record | None]:
    """('ok' | 'missing' | 'corrupt: why' | 'stale', record) for the record at ``path``."""
    if not path.exists():
        return "missing", None
    try:
        record = Record.load(path)
    except BenchError as exc:
        return f"corrupt: {str(exc).split(': ', 1)[-1]}", None
    if expected_config is not None and with_added_keys(record.config) != with_added_keys(expected_config):
        return "stale", record
    lost = missing_grid(record, path)
    if lost:
        return f"missing its sample grid {lost.name} (redrawn from the stored stages)", record
    return "ok", record
