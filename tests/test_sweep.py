"""bench.sweep: grids, shared stages, resume, bad input (local and debug executors)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.record import Record

from bench import grids
from bench.stages import backbone_key
from bench.sweep import main as sweep_main

ROOT = Path(__file__).resolve().parents[1]


def test_every_paper_grid_expands_at_paper_scale():
    sizes = {name: len(grids.expand(name)) for name in grids.available()}
    assert sizes["table5"] == 27 and sizes["table1"] == 11 and sizes["table2"] == 14
    assert sizes["fid"] == 6 and sizes["table3"] == 6 and sizes["table4"] == 5 and sizes["table7"] == 49 and sizes["replay"] == 3
    assert sizes["zoo"] == 45 and sizes["zoo_budget"] == 36
    cells = grids.expand("table5")
    assert {c.config["scale"] for c in cells} == {"paper"}
    assert {(c.config["dataset"], c.config["split"]) for c in cells} == {
        ("cifar10", "2-2"), ("cifar100", "20-20"), ("imagenet100", "20-20")}


def test_cpu_scale_uses_fashion_mnist_and_one_backbone_per_data_seed():
    cells = grids.expand("table5", {"scale": "cpu", "seeds": [0, 1]})
    assert len(cells) == 18
    assert {c.config["dataset"] for c in cells} == {"fashion_mnist"}
    needing = [c for c in cells if c.config["method"]["name"] not in ("multitask_classifier", "multitask_generator")]
    assert len({backbone_key(c.config) for c in needing}) == 2  # one per seed


def test_overrides_narrow_and_validate():
    assert len(grids.expand("table3", {"datasets": ["cifar10"]})) == 3
    from bench.errors import BenchError
    with pytest.raises(BenchError, match="unknown grid 'table9'"):
        grids.expand("table9")


@pytest.mark.parametrize("args,message", [
    (["grid=tabel5"], "unknown grid 'tabel5' (did you mean 'table5'?)"),
    (["grid=smoke", "sead=1"], "unknown key 'sead' (did you mean seed?)"),
    (["grid=smoke", "executor=slurm", "slurm=nope"], "no Slurm profile 'nope'"),
    (["grid=smoke", "executor=k8s"], "unknown executor 'k8s'"),
    (["grid=smoke", "jobs=0"], "jobs must be a positive integer"),
    (["grid=smoke", "datasets=[mnist]"], "unknown dataset 'mnist'"),
    (["grid=smoke", "method=funlroa"], "method='funlroa' is not in grid smoke (its methods: vanilla_mul, funlora)"),
    (["grid=smoke", "seed=abc"], "seed= is an axis of grid smoke: use seeds="),
    (["grid=smoke", "seeds=0"], "seeds must be a count"),
    (["grid=smoke", "method.K=0"], "has no option 'K'"),
    (["grid=smoke", "method=funlora", "method.K=0"], "method.K must be a positive integer"),
    (["grid=smoke", "solver.steps=0"], "solver.steps=0 is not on grid smoke's solver axis"),
    (["grid=smoke", "jobs=abc"], "jobs must be a positive integer or auto"),
    (["grid=smoke", "method=funlora", "method.layers=54-40"], "layer range 54-40 is empty"),
    ([], "give a grid"),
])
def test_bad_input_is_one_line_before_anything_runs(args, message, capsys, tmp_path):
    assert sweep_main(args + [f"store={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "records").exists()


def test_axis_keys_narrow_the_grid():
    cells = grids.expand("smoke", {"method": {"name": "funlora"}})
    assert {c.config["method"]["name"] for c in cells} == {"funlora"} and len(cells) == 2
    cells = grids.expand("smoke", {"solver": {"name": "euler"}, "seeds": 3})
    assert {c.config["solver"]["name"] for c in cells} == {"euler"} and {c.config["seed"] for c in cells} == {0, 1, 2}
    assert len(grids.expand("smoke", {"method": {"name": "funlora", "K": 3}})) == 2


def test_dry_run_lists_cells_and_stage_keys(capsys, tmp_path):
    assert sweep_main(["grid=smoke", f"store={tmp_path}", "dry_run=true"]) == 0
    out = capsys.readouterr().out
    assert "4 cells, 0 done, 4 to run" in out
    assert out.count("train;") == 1  # one backbone trained, reused by the 3 others
    assert "stages to train: 1 backbone(s), 2 generator group(s)" in out


def _records(store):
    return sorted((store / "records" / "smoke").glob("*.json"))


def test_local_sweep_runs_shares_and_resumes(tmp_path, capsys):
    store = tmp_path / "store"
    assert sweep_main(["grid=smoke", f"store={store}", "jobs=2"]) == 0
    recs = _records(store)
    assert len(recs) == 4
    assert len(list((store / "artifacts" / "backbones").glob("*.pt"))) == 1
    assert len(list((store / "artifacts" / "generators").iterdir())) == 2
    for path in recs:
        rec = Record.load(path)
        assert rec.grid == "smoke" and rec.label == path.stem and len(rec.accuracy) == 4
    # Rerunning a finished sweep runs nothing.
    capsys.readouterr()
    assert sweep_main(["grid=smoke", f"store={store}"]) == 0
    assert "nothing to run" in capsys.readouterr().out
    # A corrupt record is reported, kept aside, and recomputed.
    recs[0].write_text('{"la": 1')
    assert sweep_main(["grid=smoke", f"store={store}", "executor=debug"]) == 0
    assert "is corrupt" in capsys.readouterr().out
    assert Record.load(recs[0]).la >= 0
    assert len(list((store / "records" / "smoke" / "stale").glob("*.json"))) == 1


def test_sweep_killed_with_sigkill_then_rerun_finishes(tmp_path):
    store = tmp_path / "store"
    # one method (its two solver cells): what is killed and resumed is the sweep's, not a method's
    cmd = [sys.executable, "-m", "bench.sweep", "grid=smoke", "method=vanilla_mul", f"store={store}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list((store / "artifacts").rglob("*.pt")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local jobs
    proc.wait()
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    recs = _records(store)
    assert len(recs) == 2 and all(Record.load(p).la >= 0 for p in recs)
    assert not list((store / "records").rglob("*.tmp*"))


def test_failing_cell_gives_nonzero_exit_and_log_path(tmp_path, capsys):
    grid = tmp_path / "broken.yaml"
    grid.write_text("axes:\n  data: [{dataset: digits, split: 5-5}]\n  method: ['tests.plugins:FailsAtTask2']\n"
                    "fixed: {scale: smoke}\n")
    assert sweep_main([f"grid={grid}", f"store={tmp_path / 'store'}"]) == 1
    err = capsys.readouterr().err
    assert "1 failed" in err and "log: " in err
    assert "RuntimeError: this adapter fails on purpose at add_classes" in err  # the cause, not only a path
    log = err.split("log: ")[1].split()[0]
    assert Path(log).exists()


def test_missing_data_is_one_line_before_submission(tmp_path, capsys):
    assert sweep_main(["grid=table5", "datasets=[imagenet100]", f"data_root={tmp_path}",
                       f"store={tmp_path / 'store'}"]) == 2
    err = capsys.readouterr().err
    assert "ImageNet100 not found" in err and err.count("\n") == 1
    assert not (tmp_path / "store" / "logs").exists()


class _FakeJob:
    """Done after ``polls`` calls of done(); records what FUNLORA_THREADS was at submission."""

    def __init__(self, log, name, polls):
        self.name, self.polls, self.threads = name, polls, os.environ.get("FUNLORA_THREADS")
        log.append(("submit", name))
        self.log = log

    def done(self):
        self.polls -= 1
        if self.polls <= 0 and ("done", self.name) not in self.log:
            self.log.append(("done", self.name))
        return self.polls <= 0

    def result(self):
        return self.name


class _FakeExecutor:
    def __init__(self):
        self.log, self.jobs = [], {}

    def submit(self, fn, kind, payload, artifacts):  # noqa: ARG002 - StageJob's signature
        job = _FakeJob(self.log, payload["name"], payload["polls"])
        self.jobs[payload["name"]] = job
        return job


def test_local_queue_runs_free_cells_beside_the_backbone_and_waits_for_it(monkeypatch):
    """Groups that need no backbone start at once beside it; the others only once it is done."""
    import bench.queue as sweep

    monkeypatch.setattr(sweep.time, "sleep", lambda s: None)
    monkeypatch.setattr(sweep.local, "usable_cpus", lambda: 4)
    threads = sweep.local.threads_for("local", 2)
    items = [sweep.Item("backbone", {"name": "bb", "polls": 3}, key="k", threads=threads),
             sweep.Item("cells", {"name": "adapter", "polls": 1}, after=frozenset({"k"}), threads=threads),
             sweep.Item("cells", {"name": "bound", "polls": 1}, threads=threads)]
    ex = _FakeExecutor()
    out = sweep.dispatch(ex, items, "art", 2, "test", slurm=False)
    assert [r[2] for r in out] == ["bb", "adapter", "bound"]            # results in item order
    log = ex.log
    assert log.index(("submit", "bound")) < log.index(("done", "bb"))   # beside the backbone
    assert log.index(("done", "bb")) < log.index(("submit", "adapter"))  # after it
    assert {j.threads for j in ex.jobs.values()} == {"2"}               # 4 cores, 2 jobs at once
    sweep.LIVE_JOBS.clear()


def test_every_local_job_gets_the_same_threads_however_few_are_queued(tmp_path, monkeypatch):
    """A CPU stage's numbers depend on its thread count, so a lone backbone gets no more threads
    than a crowded sweep's: with 2 cores and jobs=auto, one seed of table3_budget (a single
    backbone, nothing beside it) runs single-threaded like two seeds do (it got 2 threads)."""
    from bench import local
    from bench.queue import queue
    from bench.sweep import Plan

    monkeypatch.setattr(local, "usable_cpus", lambda: 2)
    for seeds in ([0], [0, 1]):
        overrides = {"scale": "cpu", "seeds": seeds}
        sweep = {"executor": "local", "jobs": "auto"}
        backbones, cells, _ = queue(Plan("table3_budget", overrides, tmp_path / "store"), sweep, overrides)
        assert sweep["jobs"] == 2 and len(backbones) == len(seeds)
        assert {item.threads for item in backbones + cells} == {1}, seeds
    assert local.threads_for("local", 1, cores=4) == 4 and local.threads_for("slurm", 1) is None


def test_the_local_queue_starts_the_heaviest_groups_first(tmp_path, monkeypatch):
    """table3_budget, one seed, two cores: in grid order the last group was a 600-step one, run
    alone for an hour at the end; heaviest first, the three 600-step groups start first and the
    150-step ones fill the cores after them (and the estimate's placement of that order ends sooner)."""
    from bench import local
    from bench.estimate import makespan, relative_work
    from bench.queue import queue
    from bench.sweep import Plan

    monkeypatch.setattr(local, "usable_cpus", lambda: 2)
    overrides = {"scale": "cpu", "seeds": [0]}
    sweep = {"executor": "local", "jobs": "auto"}
    _, cells, _ = queue(Plan("table3_budget", overrides, tmp_path / "store"), sweep, overrides)
    steps = [item.payload[0]["config"]["generator"]["adapter"]["max_steps"] for item in cells]
    assert steps == [600, 600, 600, 150, 150, 150], steps
    work = [relative_work([c["config"] for c in item.payload]) for item in cells]
    assert work == sorted(work, reverse=True) and work[0] > 2 * work[-1]
    slurm = {"executor": "slurm", "jobs": "auto"}   # Slurm runs the jobs as it likes: grid order
    _, in_grid_order, _ = queue(Plan("table3_budget", overrides, tmp_path / "store"), slurm, overrides)
    assert [item.payload[0]["config"]["generator"]["adapter"]["max_steps"] for item in in_grid_order][:2] == [150, 600]
    grid_work = [relative_work([c["config"] for c in item.payload]) for item in in_grid_order]
    free = ([frozenset()] * 6, [None] * 6)
    assert makespan(work, *free, slots=2)[0] < makespan(grid_work, *free, slots=2)[0]
    from bench import config   # an adaptive solver's NFE is unknown before it samples: told as one
    cfg = {"dataset": "digits", "split": "6-2", "scale": "smoke"}
    dopri = config.resolve({**cfg, "solver": {"name": "dopri5"}})
    one_step = config.resolve({**cfg, "solver": {"name": "euler", "steps": 1}})
    assert relative_work([dopri]) == relative_work([one_step]) > 0
    import bench.queue as queue_mod   # a method whose work cannot be told: grid order, the sweep goes on

    monkeypatch.setattr(queue_mod, "relative_work", lambda cells: 1 / 0)
    _, fallback, _ = queue(Plan("table3_budget", overrides, tmp_path / "store"), dict(sweep), overrides)
    assert [item.payload[0]["label"] for item in fallback] == [item.payload[0]["label"] for item in in_grid_order]


def test_cells_phase_after_a_backbone_phase_does_not_wait(monkeypatch):
    """Slurm and debug dispatch backbones and cells apart: backbones of an earlier phase count as done."""
    import bench.queue as sweep

    monkeypatch.setattr(sweep.time, "sleep", lambda s: None)
    items = [sweep.Item("cells", {"name": "adapter", "polls": 1}, after=frozenset({"k"}))]
    out = sweep.dispatch(_FakeExecutor(), items, "art", 1, "test", slurm=False)
    assert [r[2] for r in out] == ["adapter"]
    sweep.LIVE_JOBS.clear()
