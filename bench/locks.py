"""Per-stage locks and provenance: one store is safe under two sweeps, kills and reruns.

``stage_lock(path)`` holds an ``fcntl`` lock (``filelock``) on ``path.lock`` while a stage
computes ``path``; a second process that needs the same stage waits, printing whom it
waits for, then reuses the finished output. The kernel drops the lock when its holder
dies, so a killed run never blocks a rerun, and a live orphan keeps its stage.
``record_provenance(path, ...)`` appends one entry per run that trained or resumed a
stage to ``path.provenance.json``, so a stage trained twice, and what each run cost, shows.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock, Timeout

from .files import read_json
from .record import write_json_atomic


def _holder(lock_path: Path) -> str:
    info = read_json(lock_path.with_name(lock_path.name + ".owner")) or {}
    return f"{info.get('host', '?')} pid {info.get('pid', '?')} since {info.get('since', '?')}"


@contextmanager
def stage_lock(path: Path, poll: float = 1.0) -> Iterator[None]:
    """Hold the lock of stage output ``path`` (wait, saying for whom, while another process holds it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"waiting for stage {path.name}: held by {_holder(lock_path)}", file=sys.stderr, flush=True)
        lock.acquire(poll_interval=poll)
        print(f"stage {path.name} is free: reusing what it left", file=sys.stderr, flush=True)
    try:
        write_json_atomic(lock_path.with_name(lock_path.name + ".owner"),
                          {"host": socket.gethostname(), "pid": os.getpid(),
                           "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        yield
    finally:
        lock.release()


def record_provenance(path: Path, **entry: Any) -> None:
    """Append a run's entry (host, pid, start, seconds, ...) to ``path.provenance.json``."""
    side = Path(path).with_name(Path(path).name + ".provenance.json")
    entries = read_json(side, lambda obj: isinstance(obj, list)) or []
    import torch   # here, not at the top: the lock helpers are imported where torch is not needed

    from .numerics import cpu_class, cpu_info, process_mode

    # threads and numerics: a CPU stage's numbers depend on them (oneDNN splits reductions over
    # the threads; native numerics follow the CPU type, bench/numerics.py)
    entries.append({"host": socket.gethostname(), "pid": os.getpid(), "threads": torch.get_num_threads(),
                    "numerics": process_mode() or "mixed", "cpu_class": cpu_class(cpu_info()), **entry})
    write_json_atomic(side, entries)


def provenance(path: Path) -> list[dict]:
    side = Path(path).with_name(Path(path).name + ".provenance.json")
    return json.loads(side.read_text()) if side.exists() else []
