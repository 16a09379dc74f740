"""Run a grid of cells through submitit: locally (default), on Slurm, or in-process (debug).

    python -m bench.sweep grid=table5 [key=value ...]
    python -m bench.sweep grid=table5 executor=slurm slurm=PROFILE
    python -m bench.sweep grid=table2 dry_run=true

Stages are shared and never done twice: one job per task-1 backbone key, and one job per
group of cells that share their generators (cells that differ only in the solver), so
adapters are trained once. A group starts once its backbone is done; locally the groups
that need no backbone (the bounds) run beside it. Records are written
atomically to STORE/records/GRID/LABEL.json; a rerun skips finished cells and recomputes
missing, corrupt or stale ones (kept aside under STORE/records/GRID/stale/).
"""
from __future__ import annotations

import difflib
import os
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import yaml
from tqdm.auto import tqdm

from . import grids, local, strategies
from .config import SCALES, TOP_LEVEL, parse_overrides, typed_merge
from .data import ensure_available
from .errors import BenchError, cli, ensure_writable_dir
from .jobs import StageJob, describe_failure, read_record
from .protocol import dry_build, resolve_device
from .stages import StagePaths, backbone_key, generator_key
from .trainer import done_marker

@dataclass
class SweepOptions:
    """The sweep's own keys (every other key goes to the cells, as in bench.run)."""

    grid: Optional[str] = None
    executor: str = "local"
    jobs: Any = "auto"
    slurm: Optional[str] = None
    store: str = "results/store"
    dry_run: bool = False
    seeds: Any = None
    datasets: Any = None
    timeout_min: int = 24 * 60


SWEEP_KEYS = {f.name: f.default for f in fields(SweepOptions)}
EXECUTORS = ("local", "slurm", "debug")
SLURM_DIR = Path(__file__).resolve().parents[1] / "slurm"


@dataclass
class StageTimes:
    """Wall-clock limit in minutes of each kind of job."""

    backbone: int = 24 * 60
    cells: int = 24 * 60


@dataclass
class SlurmProfile:
    """A Slurm profile ``slurm/NAME.yaml`` (typed like Hydra's submitit launcher settings)."""

    partition: Optional[str] = None
    gpus_per_node: Optional[int] = None
    cpus_per_task: int = 2
    mem_gb: Optional[int] = None
    time_min: StageTimes = field(default_factory=StageTimes)
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    array_parallelism: int = 64
    python: Optional[str] = None


def load_profile(name: str | None) -> dict[str, Any]:
    """A Slurm profile ``slurm/NAME.yaml`` (partition, gpus, cpus, mem_gb, time per stage...), type-checked."""
    if not name:
        raise BenchError("executor=slurm needs slurm=PROFILE (a file slurm/PROFILE.yaml); profiles: "
                         + ", ".join(sorted(p.stem for p in SLURM_DIR.glob("*.yaml"))))
    path = Path(name) if str(name).endswith(".yaml") else SLURM_DIR / f"{name}.yaml"
    if not path.is_file():
        raise BenchError(f"no Slurm profile {name!r} ({path} not found); profiles: "
                         + ", ".join(sorted(p.stem for p in SLURM_DIR.glob("*.yaml"))))
    try:
        profile = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise BenchError(f"Slurm profile {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(profile, dict):
        raise BenchError(f"Slurm profile {path} must be a mapping of settings")
    known = [f.name for f in fields(SlurmProfile)]
    unknown = set(profile) - set(known)
    if unknown:
        raise BenchError(f"Slurm profile {path}: unknown setting {sorted(unknown)[0]!r}; settings: {', '.join(sorted(known))}")
    if isinstance(profile.get("time_min"), int):  # one limit for every stage
        profile["time_min"] = {"backbone": profile["time_min"], "cells": profile["time_min"]}
    return typed_merge(SlurmProfile, profile, what=f"Slurm profile {path}: ")


def make_executor(kind: str, folder: Path, profile: dict, stage: str, timeout_min: int):
    import submitit

    cluster = {"local": "local", "debug": "debug", "slurm": "slurm"}[kind]
    ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    if kind == "slurm":
        times = profile["time_min"]
        extra = {k: profile[k] for k in ("account", "qos", "constraint") if profile.get(k)}
        params = dict(timeout_min=int(times[stage]),
                      slurm_partition=profile.get("partition"), cpus_per_task=profile.get("cpus_per_task", 2),
                      slurm_array_parallelism=profile.get("array_parallelism", 64),
                      slurm_additional_parameters=extra, name=f"funlora-{stage}")
        if profile.get("gpus_per_node"):
            params["gpus_per_node"] = profile["gpus_per_node"]
        if profile.get("mem_gb"):
            params["mem_gb"] = profile["mem_gb"]
        if profile.get("python"):
            params["slurm_python"] = profile["python"]
        ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    else:
        ex.update_parameters(timeout_min=timeout_min)
    return ex


class Plan:
    """Which cells run, which stages are trained or reused, keyed as the stages are."""

    def __init__(self, grid: str, overrides: dict, store: Path):
        self.cells = grids.expand(grid, overrides)
        self.grid, self.store = grids.load(grid)["name"], store
        self.artifacts = store / "artifacts"
        self.records = store / "records" / self.grid   # a grid file by any path: records under its name
        self.status: dict[str, str] = {}
        for c in self.cells:
            self.status[c.label], _ = read_record(self.record_path(c), c.config)
        self.todo = [c for c in self.cells if self.status[c.label] != "ok"]
        self.backbones: OrderedDict[str, dict] = OrderedDict()
        self.groups: OrderedDict[str, list] = OrderedDict()
        for c in self.todo:
            if strategies.for_method(c.config["method"]["name"]).needs_backbone:
                key = backbone_key(c.config)
                if key not in self.backbones and not done_marker(StagePaths(c.config, self.artifacts).backbone).exists():
                    self.backbones[key] = c.config
            self.groups.setdefault(generator_key(c.config), []).append(c)

    def record_path(self, cell) -> Path:
        return self.records / f"{cell.label}.json"

    def print(self) -> None:
        print(f"grid {self.grid}: {len(self.cells)} cells, {len(self.cells) - len(self.todo)} done, "
              f"{len(self.todo)} to run; store {self.store}")
        trained_bb: set[str] = set()
        for c in self.cells:
            st = self.status[c.label]
            bk, gk = backbone_key(c.config), generator_key(c.config)
            strategy = strategies.for_method(c.config["method"]["name"])
            if not strategy.needs_backbone:
                bb = "no backbone"
            elif bk in self.backbones and bk not in trained_bb:
                bb, _ = f"backbone {bk} train", trained_bb.add(bk)
            else:
                bb = f"backbone {bk} reuse"
            if not strategy.has_generator:
                gen = "no generator (classifier on real data)"
            elif st == "ok":
                gen = f"generators {gk} done"
            else:
                first = self.groups[gk][0] is c
                gen = f"generators {gk} {'train' if first else 'reuse'}"
            built = dry_build(c.config)  # every cell's model and method really built (meta device)
            print(f"  [{'done' if st == 'ok' else st:>8s}] {c.label:60s} PPC {built['ppc']:>6d}; {bb}; {gen}")
        print(f"stages to train: {len(self.backbones)} backbone(s), {len(self.groups)} generator group(s)")


def pre_work_checks(plan: Plan, sweep: dict, profile: dict) -> list[str]:
    """What a run refuses before any work, as one line each (a dry run prints them): missing
    data, a device this machine (or the Slurm profile) cannot give, no Slurm answering, a layer
    range the backbone does not have."""
    out: list[str] = []

    def check(fn, *args) -> None:
        try:
            fn(*args)
        except BenchError as exc:
            out.append(str(exc))

    for name, root in sorted({(c.config["dataset"], c.config["data_root"]) for c in plan.todo}):
        check(ensure_available, name, root)
    devices = sorted({str(c.config["device"]) for c in plan.todo})
    if sweep["executor"] == "slurm":
        # the GPUs are on the job's node, never on the login node: the profile must ask for them
        if any(d.startswith("cuda") for d in devices) and not (profile.get("gpus_per_node") or 0) >= 1:
            out.append(f"device={next(d for d in devices if d.startswith('cuda'))} with executor=slurm needs a "
                       f"profile that asks for GPUs (gpus_per_node: 1 or more); slurm={sweep['slurm']} asks for none")
        if plan.todo:
            check(slurm_answers)
    else:
        for device in devices:
            check(resolve_device, device)   # device=cuda without CUDA: one line here, not a failure per job
    for c in plan.todo:
        check(dry_build, c.config)  # on the meta device: targets and layer ranges checked against the backbone
    return list(dict.fromkeys(out))


def slurm_answers() -> None:
    """A BenchError unless Slurm's tools are here and its controller answers (before any submission)."""
    import shutil
    import subprocess

    missing = [tool for tool in ("sbatch", "srun", "sacct") if shutil.which(tool) is None]
    if missing:
        raise BenchError(f"executor=slurm: no Slurm here ({missing[0]} is not on PATH); run on the cluster's "
                         "login node, or use executor=local")
    try:
        res = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"executor=slurm: Slurm's controller does not answer (sinfo: {exc})") from None
    if res.returncode != 0:
        why = (res.stderr.strip().splitlines() or ["exit status %d" % res.returncode])[-1]
        raise BenchError(f"executor=slurm: Slurm's controller does not answer (sinfo: {why})")


class Stopped(Exception):
    """The driver got SIGINT / SIGTERM: its local jobs are stopped, the sweep resumes on a rerun."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


LIVE_JOBS: list = []  # submitted and not finished: stopped with the driver (local executor)


def _on_signal(signum, frame):  # noqa: ARG001 - signal handler signature
    raise Stopped(signum)


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
             gpus: Optional[list[str]] = None):
    """Submit ``items`` as StageJobs: locally at most ``jobs`` at once, each as soon as a slot
    is free and its backbones are done (so cells without a backbone run beside the backbone),
    each on the least loaded of ``gpus`` (CUDA_VISIBLE_DEVICES values) where there are any;
    on Slurm all at once, as one array. Returns (index, job, result, exception) in item order."""
    results, pending, queue = [], [], list(enumerate(items))
    on_gpu: dict[int, str] = {}   # item index -> the GPU slot its running job sees
    own = {item.key for item in items if item.key is not None}
    settled = {key for item in items for key in item.after} - own   # done in an earlier phase
    bar = tqdm(total=len(items), desc=desc, dynamic_ncols=True)
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
                    for line in job_warnings(job):   # a damaged file quarantined by the job, said here too
                        tqdm.write(line, file=sys.stderr)
                    bar.update(1)
                else:
                    still.append((i, job))
            pending = still
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


def keep_aside(path: Path, why: str) -> None:
    """Move a corrupt or stale record out of the way (never delete a result)."""
    dest = path.parent / "stale" / f"{path.stem}.{time.strftime('%Y%m%d-%H%M%S')}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, dest)
    print(f"record {path.name} is {why}: moved to {dest} and recomputed")


@cli
def main(argv: list[str]) -> int:
    import signal

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in handlers:
        signal.signal(s, _on_signal)
    try:
        return _main(argv)
    except Stopped as stop:
        n = stop_jobs()
        name = signal.Signals(stop.signum).name
        print(f"{name}: stopped the sweep and its {n} running local job(s); finished stages and records are "
              f"kept: run the same command again to resume", file=sys.stderr)
        return 128 + stop.signum
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)


def _main(argv: list[str]) -> int:
    if any(a in ("-h", "--help", "help") for a in argv):
        print(__doc__ + "\nGrids: " + ", ".join(grids.available()) + "\nKeys: " + ", ".join(SWEEP_KEYS)
              + ", and any key of bench.run (scale=cpu, device=cuda, solver.name=rk4, ...)")
        return 0
    args = parse_overrides(argv)
    sweep = typed_merge(SweepOptions, {k: args.pop(k) for k in list(args) if k in SWEEP_KEYS})
    cell_keys = set(TOP_LEVEL) | set(SCALES["cpu"]) | {"tune"}
    for key in args:   # a sweep key mistyped (job=2) is named as one, not only as an unknown cell key
        if key not in cell_keys:
            close = difflib.get_close_matches(key, [*SWEEP_KEYS, *sorted(cell_keys)], n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise BenchError(f"unknown key {key!r}{hint}; sweep keys: {', '.join(SWEEP_KEYS)}; "
                             "cell keys as in python -m bench.run --help")
    if not sweep["grid"]:
        raise BenchError("give a grid: python -m bench.sweep grid=NAME; grids: " + ", ".join(grids.available()))
    if sweep["executor"] not in EXECUTORS:
        raise BenchError(f"unknown executor {sweep['executor']!r}; executors: {', '.join(EXECUTORS)}")
    if sweep["jobs"] != "auto" and (isinstance(sweep["jobs"], bool) or not isinstance(sweep["jobs"], int)
                                    or sweep["jobs"] < 1):
        raise BenchError(f"jobs must be a positive integer or auto, got {sweep['jobs']!r}")
    if sweep["slurm"] is not None and sweep["executor"] != "slurm":
        raise BenchError(f"slurm={sweep['slurm']} is set but executor={sweep['executor']}: add executor=slurm "
                         "to run on the cluster, or leave slurm= out to run here")
    profile = load_profile(sweep["slurm"]) if sweep["executor"] == "slurm" else {}
    overrides = {**args, "seeds": sweep["seeds"], "datasets": sweep["datasets"]}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    store = Path(sweep["store"])
    if store.exists() and not store.is_dir():
        raise BenchError(f"store={store} is a file, not a directory")
    plan = Plan(sweep["grid"], overrides, store)
    refusals = pre_work_checks(plan, sweep, profile)
    if sweep["dry_run"]:
        plan.print()
        for line in refusals:   # a dry run promises only what the run will do
            print(f"a run would refuse: {line}", file=sys.stderr)
        return 0
    if refusals:
        raise BenchError(refusals[0])
    ensure_writable_dir(store, "store")
    if not plan.todo:
        print(f"grid {plan.grid}: all {len(plan.cells)} cells done; nothing to run ({plan.records})")
        return 0
    for c in plan.todo:
        st = plan.status[c.label]
        if st.startswith("corrupt") or st == "stale":
            keep_aside(plan.record_path(c), st)
    print(f"grid {plan.grid}: {len(plan.todo)} of {len(plan.cells)} cells to run; "
          f"{len(plan.backbones)} backbone(s) and {len(plan.groups)} generator group(s) to train")
    gpus: list[str] = []
    if sweep["executor"] == "local":
        placed = local.plan_local(sweep["jobs"], [c.config for c in plan.todo])
        sweep["jobs"], gpus = placed.jobs, placed.gpus
        if placed.note:
            print(placed.note)
    else:
        sweep["jobs"] = 1 if sweep["jobs"] == "auto" else sweep["jobs"]
    logs = store / "logs" / plan.grid / "%j"
    slurm = sweep["executor"] == "slurm"
    failures = []
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
    # Groups without a generator (a classifier on real data: a fraction of a generator group's
    # time) go last, so that they fill the cores at the end instead of delaying the long ones.
    cells.sort(key=lambda item: not strategies.for_method(item.payload[0]["config"]["method"]["name"]).has_generator)
    free = [item for item in cells if not item.after]
    for item in backbones:   # locally it shares the cores with the other backbones and the free groups
        item.threads = local.threads_for(sweep["executor"], sweep["jobs"], len(backbones) + len(free))
    for item in cells:
        item.threads = local.threads_for(sweep["executor"], sweep["jobs"], len(cells))
    phases = [backbones + cells] if sweep["executor"] == "local" else [backbones, cells]
    for phase in filter(None, phases):
        kinds = {item.kind for item in phase}
        stage = "backbone" if kinds == {"backbone"} else "cells"   # Slurm time limit of the jobs
        desc = "backbones" if kinds == {"backbone"} else "cells" if kinds == {"cells"} else "backbones + cells"
        ex = make_executor(sweep["executor"], logs, profile, stage, sweep["timeout_min"])
        for i, job, _, exc in dispatch(ex, phase, str(plan.artifacts), sweep["jobs"], desc, slurm, gpus):
            if exc is None:
                continue
            if phase[i].kind == "backbone":
                failures.append(("backbone", job, exc))
            else:
                for item in phase[i].payload:
                    if not Path(item["record"]).exists():
                        failures.append((item["label"], job, exc))
    if failures:
        print(f"{len(failures)} failed:", file=sys.stderr)
        for label, job, exc in failures:
            print(f"  {label}: {describe_failure(exc)}\n    log: {job.paths.stderr}", file=sys.stderr)
        return 1
    print(f"grid {plan.grid}: {len(plan.todo)} cells done; records in {plan.records}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
