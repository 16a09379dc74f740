"""Run a grid of cells through submitit: locally (default), on Slurm, or in-process (debug).

    python -m bench.sweep grid=table5 [key=value ...]
    python -m bench.sweep grid=table5 executor=slurm slurm=PROFILE
    python -m bench.sweep grid=table2 dry_run=true
    python -m bench.sweep grid=table5 estimate=true   # says how long first (local executor)

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

from . import grids, local, numerics, strategies
from .config import SCALES, TOP_LEVEL, parse_overrides, typed_merge
from .data import ensure_available, parse_split
from .data import spec as dataset_spec
from .errors import BenchError, cli, ensure_writable_dir
from .jobs import describe_failure, read_record
from .protocol import dry_build, resolve_device
# the local queue; Item, dispatch and LIVE_JOBS are also reached as bench.sweep.* (tests, tools)
from .queue import LIVE_JOBS, Item, TimeLeft, dispatch, job_warnings, queue, say_estimate, stop_jobs  # noqa: F401
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
    estimate: bool = False     # time a few steps here first and say how long the sweep will take


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
        # the job computes in the sweep's numerics, also where sbatch exports no environment
        params["slurm_setup"] = [f"export {numerics.ENV_VAR}={numerics.process_mode() or numerics.DEFAULT}"]
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
        # generator groups whose every task is in the store already (a cell of another grid trained them)
        self.stored = {gk for gk, cells in self.groups.items() if self._generators_stored(cells[0].config)}

    def _generators_stored(self, cfg: dict) -> bool:
        tasks = len(parse_split(cfg["split"], dataset_spec(cfg["dataset"]).num_classes))
        folder = StagePaths(cfg, self.artifacts).generators
        return tasks > 1 and all(done_marker(folder / f"task{t}.pt").exists() for t in range(2, tasks + 1))

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
            elif gk in self.stored:
                gen = f"generators {gk} stored"
            else:
                first = self.groups[gk][0] is c
                gen = f"generators {gk} {'train' if first else 'reuse'}"
            built = dry_build(c.config)  # every cell's model and method really built (meta device)
            print(f"  [{'done' if st == 'ok' else st:>8s}] {c.label:60s} PPC {built['ppc']:>6d}; {bb}; {gen}")
        stored = f" ({len(self.stored)} more stored already)" if self.stored else ""
        print(f"stages to train: {len(self.backbones)} backbone(s), {len(self.groups) - len(self.stored)} "
              f"generator group(s){stored}")


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
    modes = sorted({c.config["numerics"] for c in plan.todo} - {numerics.process_mode()})
    if modes:   # a grid file that sets another mode than the sweep's
        out.append(f"numerics={modes[0]} in grid {plan.grid}: a sweep computes in one numerics mode, "
                   f"this one in {numerics.process_mode()}; run it with numerics={modes[0]}")
    for c in plan.todo:
        check(dry_build, c.config)  # on the meta device: targets and layer ranges checked against the backbone
    if sweep["estimate"] and sweep["executor"] != "local":
        out.append(f"estimate=true times local jobs on this machine; it cannot say how long "
                   f"executor={sweep['executor']} jobs take: set estimate=false")
    adaptive = sorted({c.config["solver"]["name"] for c in plan.todo} - {"euler", "midpoint", "rk4"})
    if sweep["estimate"] and adaptive:
        out.append(f"estimate=true needs fixed-grid solvers (euler, midpoint, rk4): {adaptive[0]}'s number of "
                   "evaluations is known only once it has sampled; set estimate=false")
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


def _on_signal(signum, frame):  # noqa: ARG001 - signal handler signature
    raise Stopped(signum)


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
    # the jobs inherit this process's mode (local children, Slurm's exported environment)
    numerics.require(numerics.check_mode(args.get("numerics", numerics.DEFAULT)), restart=True)
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
        if sweep["estimate"] and plan.todo and not refusals:
            say_estimate(*queue(plan, sweep, overrides)[:2], sweep)
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
    backbones, cells, gpus = queue(plan, sweep, overrides)
    left = None
    if sweep["estimate"]:
        left = TimeLeft(say_estimate(backbones, cells, sweep))
    logs = store / "logs" / plan.grid / "%j"
    slurm = sweep["executor"] == "slurm"
    failures = []
    phases = [backbones + cells] if sweep["executor"] == "local" else [backbones, cells]
    for phase in filter(None, phases):
        kinds = {item.kind for item in phase}
        stage = "backbone" if kinds == {"backbone"} else "cells"   # Slurm time limit of the jobs
        desc = "backbones" if kinds == {"backbone"} else "cells" if kinds == {"cells"} else "backbones + cells"
        ex = make_executor(sweep["executor"], logs, profile, stage, sweep["timeout_min"])
        for i, job, _, exc in dispatch(ex, phase, str(plan.artifacts), sweep["jobs"], desc, slurm, gpus,
                                       left if sweep["executor"] == "local" else None):
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
