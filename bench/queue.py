"""The local queue of a sweep: its jobs in order (backbones, then cell groups), dispatched
through submitit as slots free up, with the time left on the bar when an estimate exists."""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from tqdm.auto import tqdm

from . import local, strategies
from .estimate import TimeLeft, estimate, relative_work
from .jobs import StageJob
from .stages import backbone_key

LIVE_JOBS: list = []  # submitted and not finished: stopped with the driver (local executor)



def stop_jobs(grace: float = 10.0) -> int:
    """Stop every live local job and its processes: SIGTERM, then SIGKILL after ``grace`` seconds."""
    n = local.stop_processes([getattr(job, "_process", None) for job in LIVE_JOBS], grace)
    LIVE_JOBS.clear()
    return n


@dataclass
class Item:
    """One job of a sweep: a ``backbone`` (its ``key``) or a group of ``cells``, which starts
    only once the backbones it is ``after`` have finished (locally; on Slurm the cells are
    submitted after the backbone array)."""

    kind: str
    payload: Any
    key: Optional[str] = None
    after: frozenset = frozenset()
    threads: Optional[int] = None      # local: torch threads of the job (FUNLORA_THREADS)


def dispatch(executor, items: list[Item], artifacts: str, jobs: int, desc: str, slurm: bool,
             gpus: Optional[list[str]] = None, left: Optional[TimeLeft] = None):
    """Submit ``items`` as StageJobs: locally at most ``jobs`` at once, each as soon as a slot
    is free and its backbones are done (so cells without a backbone run beside the backbone),
    each on the least loaded of ``gpus`` (CUDA_VISIBLE_DEVICES values) where there are any;
    on Slurm all at once, as one array; ``left`` puts the time left on the bar. Returns (index, job, result, exception) in item order."""
    results, pending, queue = [], [], list(enumerate(items))
    on_gpu: dict[int, str] = {}   # item index -> the GPU slot its running job sees
    own = {item.key for item in items if item.key is not None}
    settled = {key for item in items for key in item.after} - own   # done in an earlier phase
    bar = tqdm(total=len(items), desc=desc, dynamic_ncols=True)
    shown = -math.inf
    try:   # closed on SIGINT / SIGTERM too, so that what follows starts on a line of its own
        if slurm:
            with executor.batch():
                for i, item in queue:
                    pending.append((i, executor.submit(StageJob(), item.kind, item.payload, artifacts)))
            queue = []
        while queue or pending:
            while len(pending) < max(1, jobs):
                ready = next((q for q in queue if q[1].after <= settled), None)
                if ready is None and not pending:   # cannot happen: every key waited on is settled above
                    raise RuntimeError("sweep queue stalled: cells wait on a backbone that is not queued")
                if ready is None:
                    break
                queue.remove(ready)
                i, item = ready
                if item.threads:
                    os.environ["FUNLORA_THREADS"] = str(item.threads)
                if gpus:
                    on_gpu[i] = local.least_loaded(gpus, [on_gpu[k] for k, _ in pending if k in on_gpu])
                gpu = (on_gpu[i],) if i in on_gpu else ()   # the job selects it in its own process
                job = executor.submit(StageJob(), item.kind, item.payload, artifacts, *gpu)
                pending.append((i, job))
                LIVE_JOBS.append(job)
                if left is not None:
                    left.start(i)
            still = []
            for i, job in pending:
                if job.done():
                    try:
                        results.append((i, job, job.result(), None))
                    except Exception as exc:  # noqa: BLE001 - a failed cell is reported, not raised
                        results.append((i, job, None, exc))
                    if items[i].key is not None:   # failed or not, its cells may go (they train it themselves)
                        settled.add(items[i].key)
                    if job in LIVE_JOBS:
                        LIVE_JOBS.remove(job)
                    if left is not None:
                        left.finish(i)
                    for line in job_warnings(job):   # a damaged file quarantined by the job, said here too
                        tqdm.write(line, file=sys.stderr)
                    bar.update(1)
                else:
                    still.append((i, job))
            pending = still
            if left is not None and time.monotonic() - shown >= 5:
                bar.set_postfix_str(left.postfix())
                shown = time.monotonic()
            if pending:
                time.sleep(0.5)
    finally:
        bar.close()
    return sorted(results, key=lambda r: r[0])


def job_warnings(job) -> list[str]:
    """The ``warning:`` lines of a finished job's log that name a damaged file (bench.files.quarantine)."""
    try:
        text = Path(job.paths.stderr).read_text(errors="replace")
    except (OSError, AttributeError):
        return []
    return [f"job {job.job_id}: {ln.strip()}" for ln in text.splitlines()
            if ln.startswith("warning:") and "is damaged" in ln]


def _work(item: Item) -> float:
    """A cell group's relative work for the queue's order; 0 (grid order) where a method's
    planning hooks cannot tell it: an order is a heuristic and never stops a sweep."""
    try:
        return relative_work([c["config"] for c in item.payload])
    except Exception:  # noqa: BLE001 - e.g. a plugin method whose plan hooks need its data
        return 0.0


def queue(plan: Plan, sweep: dict, overrides: dict) -> tuple[list[Item], list[Item], list[str]]:
    """The sweep's jobs in queue order, backbones then cell groups, with their threads; sets
    ``sweep["jobs"]`` (slots) and returns the local GPU slots."""
    gpus: list[str] = []
    if sweep["executor"] == "local":
        placed = local.plan_local(sweep["jobs"], [c.config for c in plan.todo])
        sweep["jobs"], gpus = placed.jobs, placed.gpus
        if placed.note:
            print(placed.note)
    else:
        sweep["jobs"] = 1 if sweep["jobs"] == "auto" else sweep["jobs"]
    cell_overrides = {k: v for k, v in overrides.items() if k not in ("seeds", "datasets")}
    backbones = [Item("backbone", cfg, key=key) for key, cfg in plan.backbones.items()]
    cells = [Item("cells", [{"config": c.config, "label": c.label, "grid": plan.grid,
                             "record": str(plan.record_path(c)), "overrides": cell_overrides} for c in group],
                  after=frozenset({backbone_key(c.config) for c in group
                                   if strategies.for_method(c.config["method"]["name"]).needs_backbone}
                                  & plan.backbones.keys()))
             for group in plan.groups.values()]
    # Locally one queue: a cell group starts once its backbone is done, and groups that need
    # none (the bounds) fill the other cores meanwhile. Slurm and debug: backbones, then cells.
    # Locally the heaviest generator groups go first (longest-processing-time order), so that the
    # last one does not run alone at the end; groups without a generator (a classifier on real
    # data: a fraction of a generator group's time) go last, to fill the cores at the end.
    work = {id(item): _work(item) if sweep["executor"] == "local" else 0.0 for item in cells}
    cells.sort(key=lambda item: (not strategies.for_method(item.payload[0]["config"]["method"]["name"]).has_generator,
                                 -work[id(item)]))
    for item in backbones + cells:   # the same count for every job: it is part of a CPU stage's numbers
        item.threads = local.threads_for(sweep["executor"], sweep["jobs"])
    return backbones, cells, gpus


def say_estimate(backbones: list[Item], cells: list[Item], sweep: dict):
    """Time a few steps here and print how long the local sweep will take (``estimate=true``)."""
    print("estimating how long: timing a few steps of each kind on this machine ...", flush=True)
    est = estimate([(item.key, item.payload) for item in backbones],
                   [(item.after, [c["config"] for c in item.payload]) for item in cells],
                   sweep["jobs"], cells[0].threads if cells else None)
    print(est.line(), flush=True)
    return est
