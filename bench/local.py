"""The local executor's share of the machine: how many jobs at once, which GPUs each sees,
how many CPU threads each gets.

submitit's local jobs get ``CUDA_VISIBLE_DEVICES=""`` unless GPUs are requested, so a sweep
with ``device=cuda`` failed in every job. Here each local job is given its GPU explicitly, as
an argument of the job that sets ``CUDA_VISIBLE_DEVICES`` in the job's own process before
anything touches CUDA (``use_gpus``). Not as a shell ``setup`` line: submitit then starts the
job through ``sh -c``, and where /bin/sh is bash (RHEL, Rocky, Fedora) bash execs the last
command in its own place, so submitit's job controller took the sweep's pid for its job id
and never found its logs. Jobs are spread over the machine's GPUs, the least loaded first,
and several small cells share one GPU. Cores are those this process may use
(``hardware.usable_cpus``: affinity mask, Slurm allocation), never the whole machine's.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import torch

from .hardware import usable_cpus

# Cells at once per GPU under jobs=auto. One paper-scale cell fills an H200; cells of the small
# scales leave it mostly waiting on launches (six scale=cpu cells at once on one H200 gave 3.6x
# the throughput of one at a time, measured in the GPU issue), so four share one GPU.
PER_GPU_AUTO = {"paper": 1}
PER_GPU_SMALL = 4


def visible_gpus() -> list[str]:
    """The GPUs this process may use, named as ``CUDA_VISIBLE_DEVICES`` names them (indices, or
    UUIDs on MIG and some clusters), in CUDA's order; [] without CUDA."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return [str(i) for i in range(count)]
    return [s.strip() for s in env.split(",") if s.strip()][:count]


@dataclass
class LocalPlan:
    """``jobs`` at once; ``gpus``: the values of CUDA_VISIBLE_DEVICES the jobs are spread over
    (one GPU each, or one entry naming all of them), [] where jobs run on the CPU."""

    jobs: int
    gpus: list[str] = field(default_factory=list)
    note: str = ""


def on_gpu(devices: Iterable[str], gpus: list[str]) -> bool:
    """Whether cells with these ``device`` settings run on a GPU here."""
    devices = {str(d) for d in devices}
    return any(d.startswith("cuda") for d in devices) or ("auto" in devices and bool(gpus))


def plan_local(jobs: Any, configs: list[dict], gpus: Optional[list[str]] = None,
               cores: Optional[int] = None) -> LocalPlan:
    """How the local executor runs ``configs`` (the cells to run): ``jobs`` is an integer or
    ``auto`` (CPU: one single-threaded job per core; GPU: per GPU one paper-scale cell, or
    ``PER_GPU_SMALL`` smaller ones, never more jobs than cores)."""
    gpus = visible_gpus() if gpus is None else gpus
    cores = cores or usable_cpus()
    devices = {str(c.get("device", "auto")) for c in configs}
    if not on_gpu(devices, gpus):
        n = max(1, cores) if jobs == "auto" else int(jobs)
        note = f"jobs=auto: {n} local job(s), one per CPU core" if jobs == "auto" else ""
        return LocalPlan(n, [], note)
    if not gpus:   # device=cuda without CUDA is refused before this; nothing to spread
        return LocalPlan(1 if jobs == "auto" else int(jobs))
    # device=cuda:N names a GPU by its index among all of them: every job sees them all
    shared = any(d.startswith("cuda:") for d in devices)
    slots = [",".join(gpus)] if shared else list(gpus)
    if jobs != "auto":
        return LocalPlan(int(jobs), slots)
    per_gpu = min(PER_GPU_AUTO.get(str(c.get("scale")), PER_GPU_SMALL) for c in configs)
    n = max(1, min(per_gpu * len(slots), cores))
    scales = ",".join(sorted({str(c.get("scale")) for c in configs}))
    note = (f"jobs=auto: {n} local job(s) on {len(gpus)} GPU(s) ({per_gpu} per GPU at scale={scales}, "
            f"at most one per CPU core of {cores}); jobs=N to change")
    return LocalPlan(n, slots, note)


def threads_for(executor: str, jobs: int, cores: Optional[int] = None) -> Optional[int]:
    """Each local job's CPU threads: ``cores // jobs`` (1 under ``jobs=auto`` on the CPU); None
    elsewhere (a Slurm job gets its cpus_per_task).

    Never more because fewer jobs are queued: a CPU stage's numbers depend on its thread count
    (oneDNN splits a convolution's weight-gradient sum over the threads), so a backbone trained
    alone with two threads could not be reproduced by ``bench.run ... threads=1``, nor by the
    same sweep run with two seeds instead of one. A fixed count per job keeps every stage of a
    ``jobs=auto`` sweep single-threaded, whatever else the sweep holds.
    """
    if executor != "local":
        return None
    return max(1, (cores or usable_cpus()) // max(1, jobs))


def least_loaded(slots: list[str], running: list[str]) -> str:
    """The GPU slot with the fewest running jobs (the first of them on a tie)."""
    return min(slots, key=lambda s: (running.count(s), slots.index(s)))


def use_gpus(slot: Optional[str]) -> None:
    """Make ``slot`` (a ``CUDA_VISIBLE_DEVICES`` value) this job's visible GPUs; called first
    thing in the job's process, before CUDA is initialised (after that the value is ignored)."""
    if slot is None:
        return
    if torch.cuda.is_initialized() and os.environ.get("CUDA_VISIBLE_DEVICES") != slot:
        raise RuntimeError(f"CUDA was initialised before the job could select GPU(s) {slot}")
    os.environ["CUDA_VISIBLE_DEVICES"] = slot


def descendants(pid: int) -> list[int]:
    """Every live descendant of process ``pid`` (a local job runs its stage in a child process)."""
    import subprocess

    out, todo = [], [pid]
    while todo:
        res = subprocess.run(["pgrep", "-P", str(todo.pop())], capture_output=True, text=True)
        kids = [int(x) for x in res.stdout.split()]
        out += kids
        todo += kids
    return out


def stop_processes(processes: list, grace: float = 10.0) -> int:
    """Stop local job processes (Popen) and their descendants: SIGTERM, then SIGKILL after ``grace``
    seconds; returns how many jobs were still running."""
    import signal
    import time

    procs = [p for p in processes if p is not None and p.poll() is None]
    pids = [pid for p in procs for pid in [p.pid, *descendants(p.pid)]]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + grace
    while time.time() < deadline and any(_alive(pid) for pid in pids):
        for p in procs:
            p.poll()  # reap the direct children
        time.sleep(0.2)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for p in procs:
        p.wait()
    return len(procs)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True
