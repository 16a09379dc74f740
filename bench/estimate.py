"""How long a local sweep will take on this machine, said before it starts (``estimate=true``).

estimate = the work each job holds, counted from the schedules (generator steps from the
generator schedules and the number of training images, classifier steps from its epochs
and batch, U-Net evaluations from the solver's NFE and the samples drawn, sample grids,
``tune=lr``'s candidates; a stage shared by cells counted once, by the first job that
needs it), times seconds per unit timed here (``bench.calibrate``), plus each job's start
and each cell's data loading; the jobs are then placed on the local slots as the sweep's
queue places them (a cell group starts once its backbone is done). Stages already cached
by an earlier run are counted as if they were not, so a resumed sweep ends sooner.
Fixed-grid solvers only: dopri5's NFE is not known before it runs.
"""
from __future__ import annotations

import heapq
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from . import data as data_mod
from . import strategies
from .calibrate import Calibration, Unit, measure, method_what, model_signature
from .flow import SolverConfig, expected_fixed_nfe
from .stages import evaluation_key, first_samples_key, first_task_key, generator_key
from .trainer import Schedule


class Workload:
    """The units of work of one job, told by the protocol's walk (``cell_work``) and by the
    strategies' ``plan_start`` / ``plan_train`` hooks; ``shared`` holds the stages already
    counted in this sweep, so a stage shared by jobs is counted once."""

    def __init__(self, cfg: dict, counts: "Counts", tasks: list[list[int]], shared: set):
        self.cfg, self.counts, self.tasks, self.shared = cfg, counts, tasks, shared
        self.units: Counter[Unit] = Counter()
        self.stage: Optional[tuple] = None    # the generator stage being told (None: not a cached one)
        self.model = model_signature(cfg)

    def once(self, key) -> bool:
        """True the first time a stage ``key`` is met in this sweep."""
        if key in self.shared:
            return False
        self.shared.add(key)
        return True

    # ---- what the strategies say they train -------------------------------------------------
    def backbone(self) -> None:
        """The task-1 backbone: its own job of the sweep (``backbone_work``), nothing here."""

    def train(self, classes: list[int], schedule: str, adapter: bool, extra_images: int = 0) -> bool:
        """Generator steps of ``schedule`` (task1 | adapter) on ``classes``' training images (and
        ``extra_images``); False when this stage was counted already (a cell of the same group)."""
        if self.stage is not None and not self.once(self.stage):
            return False
        n = sum(self.counts.train[c] for c in classes) + extra_images
        sched = Schedule.from_dict(self.cfg["generator"][schedule])
        what = method_what(self.cfg) if adapter else "unet"
        self.units[Unit("train", self.model, what, sched.batch_size)] += sched.steps(n)[1]
        return True

    def sample(self, n_images: int, adapter: bool) -> None:
        """Drawing ``n_images`` with the solver, in batches of the sampling batch size."""
        what = method_what(self.cfg) if adapter else "unet"
        bs, nfe = self.cfg["sampling"]["batch_size"], self.nfe()
        full, rest = divmod(n_images, bs)
        self.units[Unit("forward", self.model, what, bs)] += full * nfe
        if rest:
            self.units[Unit("forward", self.model, what, rest)] += nfe

    def tuning(self) -> None:
        """``tune=lr``: a fresh adapter per candidate and tuned task, then its held-out criterion."""
        tune, tasks = self.cfg["tune"], self.tasks
        if self.stage is not None and not self.once(("tune", *self.stage)):
            return
        tuned = tasks[1:2] if tune["tasks"] == "first" else tasks[1:]
        for _ in tune["lr"]:
            for i, classes in enumerate(tuned, start=2):
                val = tune["val_per_class"] * len(classes)
                fit = sum(self.counts.train[c] for c in classes) - val
                sched = Schedule.from_dict(self.cfg["generator"]["adapter"])
                self.units[Unit("train", self.model, method_what(self.cfg), sched.batch_size)] += sched.steps(fit)[1]
                if tune["criterion"] == "loss":
                    from .tuning import LOSS_REPEATS
                    self.units[Unit("forward", self.model, method_what(self.cfg), 256)] += LOSS_REPEATS * val / 256
                else:
                    seen = [c for task in tasks[:i] for c in task]
                    n = self.counts.per_class_sampled(seen)
                    self.sample(n, adapter=True)
                    self.classifier(n)

    # ---- what the protocol does around them -------------------------------------------------
    def classifier(self, n_images: int) -> None:
        clf = self.cfg["classifier"]
        steps = max(1, -(-n_images // clf["batch_size"])) * clf["epochs"]
        self.units[Unit("classifier", self.model, str(clf.get("width", 64)), clf["batch_size"])] += steps

    def predict(self, n_images: int) -> None:
        self.units[Unit("predict", self.model, str(self.cfg["classifier"].get("width", 64)), 1)] += n_images

    def grid(self, classes: list[int], adapter: bool) -> None:
        n = int(self.cfg.get("sample_grid", 8))
        if n:
            what = method_what(self.cfg) if adapter else "unet"
            self.units[Unit("forward", self.model, what, n)] += len(classes) * self.nfe()

    def nfe(self) -> int:
        nfe = expected_fixed_nfe(SolverConfig.from_dict(self.cfg["solver"]))
        if nfe is None:
            raise ValueError(f"solver {self.cfg['solver']['name']}: its NFE is only known after sampling")
        return nfe


@dataclass
class Counts:
    """Images per class the cell uses: training (after ``train_per_class``), test, sampled."""

    train: dict[int, int]
    test: dict[int, int]
    sampled: Optional[int]

    def per_class_sampled(self, classes: list[int]) -> int:
        return sum(self.sampled or self.train[c] for c in classes)


def counts_of(cfg: dict, dataset: data_mod.Dataset) -> Counts:
    def per_class(y, cap):
        return {c: min(int((y == c).sum()), cap) if cap else int((y == c).sum()) for c in range(dataset.num_classes)}

    return Counts(per_class(dataset.train_y, cfg["train_per_class"]), per_class(dataset.test_y, cfg["test_per_class"]),
                  cfg["sampling"]["per_class"])


def cell_work(w: Workload, cfg: dict) -> None:
    """Tell ``w`` what one cell does, walking the protocol as ``Cell.run`` does (bench/protocol.py)."""
    tasks = w.tasks
    cls = strategies.for_method(cfg["method"]["name"])
    strategy = cls(None)
    gk, ek = generator_key(cfg), evaluation_key(cfg)
    w.stage = (gk, 0)
    cls.plan_start(w)
    sampled: set[int] = set()
    adapter = cls.takes_method_options
    for t, classes in enumerate(tasks, start=1):
        seen = [c for task in tasks[:t] for c in task]
        w.stage = (gk, t)
        cls.plan_train(t, classes, w)
        w.stage = None
        if cls.has_generator and w.once(("grid", ek, t)):   # each cell's own, even where its evaluation is shared
            w.grid(classes if cls.old_classes_frozen else seen, adapter)
        source = strategy.classifier_data(t)
        shared_first = t == 1 and source == "real"
        if not w.once(("first-task", first_task_key(cfg)) if shared_first else ("evaluation", ek, t)):
            continue
        if source == "real":
            n = sum(w.counts.train[c] for c in seen)
        else:
            todo = [i for i in range(1, t + 1) if i not in sampled] if cls.old_classes_frozen else [0]
            for i in todo:
                group = tasks[i - 1] if i else seen
                first = i == 1 and cls.needs_backbone and cls.old_classes_frozen
                if not first or w.once(("first-samples", first_samples_key(cfg))):
                    w.sample(w.counts.per_class_sampled(group), adapter)
            sampled.update(todo)
            n = w.counts.per_class_sampled(seen)
        w.classifier(n)
        w.predict(sum(w.counts.test[c] for c in seen))


# A unit's relative cost per image (a U-Net forward = 1; a training step is a forward and a
# backward, about 3): for the queue's order only, never for a time said to the user.
WEIGHTS = {"train": 3.0, "forward": 1.0, "classifier": 0.5, "predict": 0.2}
NOMINAL_TRAIN, NOMINAL_TEST = 5000, 1000   # images per class where the config does not cap them


def relative_work(cells: list[dict]) -> float:
    """A cell group's work in U-Net-forward images, told by ``cell_work`` without data or timing:
    classes at ``train_per_class`` / ``test_per_class`` images (else a nominal count). The local
    queue starts the heaviest groups first, so that the last job does not run alone while the
    other cores idle; methods whose steps cost more than others' are not told apart here."""
    shared: set = set()
    units: Counter[Unit] = Counter()
    for cfg in cells:
        n = data_mod.spec(cfg["dataset"]).num_classes
        counts = Counts({c: cfg["train_per_class"] or NOMINAL_TRAIN for c in range(n)},
                        {c: cfg["test_per_class"] or NOMINAL_TEST for c in range(n)}, cfg["sampling"]["per_class"])
        tasks = data_mod.task_classes(cfg["split"], n, data_mod.class_order(n, cfg["class_order"], cfg["seed"]))
        before = set(shared)
        w = Workload(cfg, counts, tasks, shared)
        try:
            cell_work(w, cfg)
        except ValueError:   # an adaptive solver: its NFE is unknown before it samples; told as 1
            shared.intersection_update(before)
            w = Workload(cfg, counts, tasks, shared)
            w.nfe = lambda: 1
            cell_work(w, cfg)
        units.update(w.units)
    return sum(n * u.batch * WEIGHTS[u.kind] for u, n in units.items())


@dataclass
class Job:
    """A job of the sweep as the estimate sees it: its name, what it waits for, its seconds."""

    name: str
    after: frozenset
    key: Optional[str]
    cells: int = 1
    seconds: float = 0.0
    units: Counter = field(default_factory=Counter)


@dataclass
class Estimate:
    """Seconds of the whole sweep on ``jobs`` local slots, and of each job."""

    seconds: float
    jobs: list[Job]
    slots: int
    calibration: Calibration

    def line(self) -> str:
        c = self.calibration
        return (f"estimated wall time: {format_seconds(self.seconds)} on {self.slots} local job slot(s) "
                f"({len(self.jobs)} jobs; per-step times measured here in {c.wall:.0f} s)")


def format_seconds(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min" if s >= 3600 else f"{s // 60} min {s % 60:02d} s"


def makespan(durations: list[float], after: list[frozenset], keys: list[Optional[str]], slots: int,
             running: Optional[list[tuple[float, Optional[str]]]] = None,
             settled: frozenset = frozenset()) -> tuple[float, list[float]]:
    """When the last job ends if each free slot takes the first job whose backbones are done
    (``bench.sweep.dispatch``); ``running``: (seconds left, key) of jobs already running. Also
    each job's start."""
    now, done = 0.0, set(settled)
    busy: list[tuple[float, int, Optional[str]]] = [(left, -1, key) for left, key in (running or [])]
    heapq.heapify(busy)
    queue = list(range(len(durations)))
    starts = [math.nan] * len(durations)
    while queue or busy:
        while len(busy) < max(1, slots):
            ready = next((i for i in queue if after[i] <= done), None)
            if ready is None:
                break
            queue.remove(ready)
            starts[ready] = now
            heapq.heappush(busy, (now + durations[ready], ready, keys[ready]))
        if not busy:   # waits on a backbone that is not in this sweep: it is settled (failed or done)
            done |= set().union(*(after[i] for i in queue))
            continue
        now, _, key = heapq.heappop(busy)
        if key is not None:
            done.add(key)
    return now, starts


def estimate(backbones: list[tuple[str, dict]], groups: list[tuple[frozenset, list[dict]]], slots: int,
             threads: Optional[int]) -> Estimate:
    """The estimate of a local sweep: ``backbones`` (key, config) to train and cell ``groups``
    (backbones waited on, cell configs) in the sweep's queue order."""
    datasets: dict[tuple, data_mod.Dataset] = {}
    configs: dict[str, dict] = {}
    specs = [(f"backbone {key}", frozenset(), key, [cfg]) for key, cfg in backbones]
    specs += [(f"cells {cells[0]['method']['name']}" + (f" (+{len(cells) - 1})" if len(cells) > 1 else ""),
               after, None, cells) for after, cells in groups]

    def workload(cfg: dict, shared: set) -> Workload:
        name = (cfg["dataset"], cfg["data_root"])
        if name not in datasets:
            datasets[name] = data_mod.load(cfg["dataset"], cfg["data_root"])
        ds = datasets[name]
        configs.setdefault(model_signature(cfg), cfg)
        order = data_mod.class_order(ds.num_classes, cfg["class_order"], cfg["seed"])
        tasks = data_mod.task_classes(cfg["split"], ds.num_classes, order)
        return Workload(cfg, counts_of(cfg, ds), tasks, shared)

    def count(order: list[int]) -> list[Job]:
        """Each job's units, shared stages counted by the first job of ``order`` that meets them."""
        shared: set = set()
        jobs: dict[int, Job] = {}
        for i in order:
            name, after, key, cells = specs[i]
            units: Counter[Unit] = Counter()
            for cfg in cells:   # a group's cells run one after the other in its job, sharing its stages
                w = workload(cfg, shared)
                if key is not None:
                    w.train(w.tasks[0], "task1", adapter=False)
                else:
                    cell_work(w, cfg)
                units.update(w.units)
            jobs[i] = Job(name, after, key, len(cells), units=units)
        return [jobs[i] for i in range(len(specs))]

    def place(jobs: list[Job]) -> list[float]:
        for job in jobs:
            job.seconds = (calibration.job_start + job.cells * calibration.cell_start
                           + sum(n * calibration.seconds[u] for u, n in job.units.items()))
        return makespan([j.seconds for j in jobs], [j.after for j in jobs], [j.key for j in jobs], slots)[1]

    jobs = count(list(range(len(specs))))
    units = sorted({u for job in jobs for u in job.units}, key=lambda u: (u.model, u.kind, u.what, u.batch))
    calibration = measure(units, configs, slots, threads)
    starts = place(jobs)
    # Shared stages (task 1's evaluation on real data, its samples) go to whichever job starts first.
    jobs = count(sorted(range(len(specs)), key=lambda i: (starts[i], i)))
    place(jobs)
    total, _ = makespan([j.seconds for j in jobs], [j.after for j in jobs], [j.key for j in jobs], slots)
    return Estimate(total, jobs, slots, calibration)


class TimeLeft:
    """The sweep bar's "left" while it runs: the jobs not done re-placed on the slots, their
    estimated seconds scaled by how the finished jobs compared with their estimates."""

    def __init__(self, est: Estimate):
        self.est = est
        self.started: dict[int, float] = {}
        self.finished: dict[int, float] = {}

    def start(self, i: int) -> None:
        self.started[i] = time.monotonic()

    def finish(self, i: int) -> None:
        self.finished[i] = time.monotonic() - self.started.get(i, time.monotonic())

    def seconds(self) -> float:
        jobs = self.est.jobs
        done_est = sum(jobs[i].seconds for i in self.finished)
        speed = sum(self.finished.values()) / done_est if done_est > 0 else 1.0
        now = time.monotonic()
        # a job past its estimate is given a tenth of it again (it is not done, whatever the clock says)
        running = [(max(0.1 * jobs[i].seconds * speed, jobs[i].seconds * speed - (now - t)), jobs[i].key)
                   for i, t in self.started.items() if i not in self.finished]
        todo = [i for i in range(len(jobs)) if i not in self.started]
        settled = frozenset(jobs[i].key for i in self.finished if jobs[i].key is not None)
        left, _ = makespan([jobs[i].seconds * speed for i in todo], [jobs[i].after for i in todo],
                           [jobs[i].key for i in todo], self.est.slots, running, settled)
        return left

    def postfix(self) -> str:
        return f"left ~{format_seconds(self.seconds())}"
