"""The sweep's estimate of its wall time: work counted from the schedules (exact numbers for
the main job's preset), jobs placed on slots as the queue places them, time left while it runs."""
from __future__ import annotations

import pytest

from bench import estimate as est
from bench.calibrate import Calibration, method_what, model_signature
from bench.config import resolve
from bench.sweep import main as sweep_main

TASKS = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]   # Fashion-MNIST 2-2, natural order


def counts() -> est.Counts:
    # scale=cpu: 1,000 training images a class, Fashion-MNIST's 1,000 test images a class, 200 sampled
    return est.Counts(train={c: 1000 for c in range(10)}, test={c: 1000 for c in range(10)}, sampled=200)


def work(method: str, shared: set) -> tuple[est.Workload, dict]:
    cfg = resolve({"scale": "cpu", "method": {"name": method}})
    w = est.Workload(cfg, counts(), TASKS, shared)
    est.cell_work(w, cfg)
    return w, cfg


def units_of(w: est.Workload, cfg: dict) -> dict[tuple, float]:
    m = model_signature(cfg)
    assert all(u.model == m for u in w.units)
    return {(u.kind, "method" if u.what == method_what(cfg) else u.what, u.batch): n for u, n in w.units.items()}


def test_an_adapter_cell_of_the_main_job_counted_by_hand():
    """FunLoRA at scale=cpu, the first adapter cell of its sweep (it meets the shared stages first).
    Adapter steps: 4 tasks x min(20 epochs x 2,000 // 64, 150) = 600. Samples: 5 groups of 400
    (one batch of 400, midpoint 6 steps = 12 NFE) = 60 forwards. Classifier: 4 epochs x
    ceil(n / 128) for n = 2,000 real, then 800, 1,200, 1,600, 2,000 synthetic = 64+28+40+52+64.
    Predictions: 1,000 test images per seen class = 30,000. Sample grids: 8 images per new class
    per task, 12 NFE each: 5 x 2 x 12 = 120."""
    w, cfg = work("funlora", set())
    assert units_of(w, cfg) == {("train", "method", 64): 600, ("forward", "method", 400): 60,
                                ("classifier", "32", 128): 248, ("predict", "32", 1): 30000,
                                ("forward", "method", 8): 120}


def test_shared_stages_are_counted_once_per_sweep():
    """A second adapter cell reuses task 1's real-data evaluation and its samples from the backbone."""
    shared: set = set()
    work("funlora", shared)
    w, cfg = work("vanilla_mul", shared)
    assert units_of(w, cfg) == {("train", "method", 64): 600, ("forward", "method", 400): 48,
                                ("classifier", "32", 128): 184, ("predict", "32", 1): 28000,
                                ("forward", "method", 8): 120}
    again, _ = work("vanilla_mul", shared)   # the same cell again (a second solver of its group): nothing trains
    assert ("train", "method", 64) not in units_of(again, cfg)


def test_the_bounds_counted_by_hand():
    """Generative multitask: 400 steps of the whole U-Net on all 10,000 images (task-1 schedule),
    every task's classifier on its samples (16+28+40+52+64). Classifier multitask: real data only,
    4 x (16+32+47+63+79) steps, no samples, no grids."""
    shared: set = set()
    w, cfg = work("multitask_generator", shared)
    assert units_of(w, cfg) == {("train", "unet", 64): 400, ("forward", "unet", 400): 60,
                                ("classifier", "32", 128): 200, ("predict", "32", 1): 30000,
                                ("forward", "unet", 8): 120}
    w, cfg = work("multitask_classifier", shared)
    assert units_of(w, cfg) == {("classifier", "32", 128): 948, ("predict", "32", 1): 30000}


def test_tuning_and_replay_are_counted():
    """tune=lr (loss criterion, first adapter task): 4 candidates x 150 steps, and 4 held-out passes
    over 2 x 100 validation images per candidate; replay trains on the new task plus 200 samples of
    each old class, drawn first."""
    cfg = resolve({"scale": "cpu", "method": {"name": "vanilla_mul"}, "tune": {"name": "lr"}})
    w = est.Workload(cfg, counts(), TASKS, set())
    est.cell_work(w, cfg)
    u = units_of(w, cfg)
    assert u[("train", "method", 64)] == 600 + 4 * 150
    assert u[("forward", "method", 256)] == pytest.approx(4 * 4 * 200 / 256)
    w, cfg = work("replay", set())
    u = units_of(w, cfg)
    assert u[("train", "unet", 64)] == 4 * 150
    # replay draws 400, 800, 1,200, 1,600 old-class images (batches of 400), evaluations 2 x 400 + 4 x 12 x ...
    replay_batches = 1 + 2 + 3 + 4
    eval_batches = sum(-(-200 * 2 * t // 400) for t in range(2, 6))   # every seen class again each task
    assert u[("forward", "unet", 400)] == 12 * (replay_batches + eval_batches)


def test_fixed_grid_solvers_only():
    cfg = resolve({"scale": "cpu", "solver": {"name": "dopri5"}})
    with pytest.raises(ValueError, match="dopri5"):
        est.Workload(cfg, counts(), TASKS, set()).nfe()


def test_makespan_places_jobs_as_the_queue_does():
    """A backbone (10 s) and a free bound (3 s) start together; the adapters (5 s) wait for the backbone."""
    after = [frozenset(), frozenset({"k"}), frozenset()]
    keys = ["k", None, None]
    total, starts = est.makespan([10, 5, 3], after, keys, slots=2)
    assert (total, starts) == (15, [0, 10, 0])
    total, starts = est.makespan([10, 5, 3], after, keys, slots=1)   # one slot: in queue order once ready
    assert (total, starts) == (18, [0, 10, 15])
    total, _ = est.makespan([5], [frozenset({"k"})], [None], slots=2, running=[(4.0, "k")])
    assert total == 9


def _estimate(seconds: list[float], after: list[frozenset], keys: list) -> est.Estimate:
    jobs = [est.Job(f"job{i}", a, k, seconds=s) for i, (s, a, k) in enumerate(zip(seconds, after, keys))]
    total, _ = est.makespan(seconds, after, keys, 1)
    return est.Estimate(total, jobs, 1, Calibration({}, 0.0, 0.0, 0.0))


def test_time_left_follows_the_jobs_that_finished(monkeypatch):
    """Jobs that took twice their estimate make the rest count twice; a job past its estimate keeps
    a tenth of it (it is not done)."""
    clock = [0.0]
    monkeypatch.setattr(est.time, "monotonic", lambda: clock[0])
    left = est.TimeLeft(_estimate([100, 50, 30], [frozenset(), frozenset({"k"}), frozenset({"k"})], ["k", None, None]))
    assert left.seconds() == 180
    left.start(0)
    clock[0] = 40
    assert left.seconds() == 140
    clock[0] = 200
    left.finish(0)
    assert left.seconds() == 160             # speed 2: 100 + 60
    left.start(1)
    clock[0] = 500                           # 300 s into a job estimated at 100 s at this speed
    assert left.seconds() == pytest.approx(10 + 60)
    assert left.postfix() == "left ~1 min 10 s"


def test_format_seconds():
    assert [est.format_seconds(s) for s in (42, 61, 1549, 3725)] == ["42 s", "1 min 01 s", "25 min 49 s",
                                                                      "1 h 02 min"]


def test_dispatch_shows_time_left_on_the_bar(monkeypatch, capsys):
    """The sweep's queue tells the estimate when each job starts and ends; the bar says what is left."""
    import bench.queue as queue
    from tests.test_sweep import _FakeExecutor

    monkeypatch.setattr(queue.time, "sleep", lambda s: None)
    left = est.TimeLeft(_estimate([100, 50], [frozenset(), frozenset({"k"})], ["k", None]))
    items = [queue.Item("backbone", {"name": "bb", "polls": 2}, key="k"),
             queue.Item("cells", {"name": "adapter", "polls": 1}, after=frozenset({"k"}))]
    queue.dispatch(_FakeExecutor(), items, "art", 1, "test", slurm=False, left=left)
    queue.LIVE_JOBS.clear()
    assert set(left.started) == set(left.finished) == {0, 1}
    assert "left ~" in capsys.readouterr().err


def test_estimate_is_refused_where_it_cannot_say(tmp_path, capsys):
    """Slurm jobs and adaptive solvers: one line each from a dry run, before any timing."""
    grid = tmp_path / "adaptive.yaml"
    grid.write_text("axes:\n  data: [{dataset: digits, split: 4-2}]\n  method: [vanilla_mul]\n"
                    "  solver: [{name: dopri5}]\n  seed: [0]\nfixed: {scale: smoke}\n")
    assert sweep_main([f"grid={grid}", f"store={tmp_path}", "dry_run=true", "estimate=true"]) == 0
    err = capsys.readouterr().err
    assert "a run would refuse: estimate=true needs fixed-grid solvers" in err
    assert sweep_main(["grid=smoke", f"store={tmp_path}", "dry_run=true", "estimate=true", "executor=slurm",
                       "slurm=local"]) == 0
    assert "a run would refuse: estimate=true times local jobs on this machine" in capsys.readouterr().err


def test_a_dry_run_says_how_long_from_steps_timed_here(tmp_path, capsys, monkeypatch):
    """The smoke grid: one backbone and two cell groups, each kind of unit timed with the code the
    cells run; nothing is computed. (No assertion compares two times: CI's cores are busy.)"""
    import bench.queue as queue

    seen = []
    monkeypatch.setattr(queue, "estimate", lambda *a: seen.append(est.estimate(*a)) or seen[-1])
    assert sweep_main(["grid=smoke", f"store={tmp_path}", "dry_run=true", "estimate=true", "jobs=2"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("estimated wall time:"))
    assert "on 2 local job slot(s) (3 jobs;" in line
    assert not (tmp_path / "records").exists()
    cal = seen[0].calibration
    assert {u.kind for u in cal.seconds} == {"train", "forward", "classifier", "predict"}
    assert all(s > 0 for s in cal.seconds.values()) and cal.job_start > 0 and cal.cell_start > 0
    assert {u.batch for u in cal.seconds if u.kind == "forward"} >= {8, 64}   # grid rows of 8, sampling batches
    assert seen[0].seconds >= max(job.seconds for job in seen[0].jobs)
