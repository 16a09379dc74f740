"""Damaged files, with real files: named in one line, moved aside (never deleted), recomputed."""
import json
import signal
from pathlib import Path

import pytest
import torch

from bench import config
from bench.protocol import run_cell
from bench.record import Record
from bench.report.cli import main as report_main
from bench.stages import StagePaths
from bench.sweep import main as sweep_main


def _cfg(tmp_path, method="vanilla_mul"):
    return config.resolve({"dataset": "digits", "split": "6-2", "method": {"name": method}, "scale": "smoke",
                           "progress": False, "workdir": str(tmp_path / "art")})


def test_truncated_checkpoint_and_evaluation_are_recomputed(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    first = run_cell(cfg, log=lambda *_: None)
    paths = StagePaths(cfg, tmp_path / "art")
    backbone, evaluation = paths.backbone, paths.evaluation(2)
    backbone.write_bytes(backbone.read_bytes()[:1000])  # truncated mid-write
    evaluation.write_text("")                            # zero bytes
    paths.generator(3).write_bytes(b"")
    second = run_cell(cfg, log=lambda *_: None)
    err = capsys.readouterr().err
    for path in (backbone, evaluation, paths.generator(3)):
        assert f"{path} is damaged" in err
        assert len(list(path.parent.glob(path.name + ".damaged-*"))) == 1  # kept aside, not deleted
        assert path.exists()  # recomputed
    assert second.accuracy == first.accuracy  # the same stages, recomputed from the same seeds


def test_malformed_records_are_recomputed_by_the_sweep_and_skipped_by_the_report(tmp_path, capsys):
    """Three records damaged three ways and a sample grid cut mid-write: the report (HTML and
    figures included) leaves them out with a warning each; the sweep recomputes the three cells,
    draws the cut picture again, and says on its own terminal what its local job quarantined."""
    from bench.pictures import readable_png

    store = tmp_path / "store"
    assert sweep_main(["grid=smoke", f"store={store}", "executor=debug"]) == 0
    recs = sorted((store / "records" / "smoke").glob("*.json"))
    recs[0].write_text("null")
    bad = json.loads(recs[1].read_text())
    bad["la"] = "high"
    recs[1].write_text(json.dumps(bad))
    bad = json.loads(recs[2].read_text())
    bad["per_class_accuracy"][-1]["abc"] = 50.0          # once killed the report's heat map, and all its HTML
    recs[2].write_text(json.dumps(bad))
    cut = [Path(bad["sample_grids"][-1]), Path(Record.load(recs[3]).sample_grids[-1])]
    for png in cut:
        png.write_bytes(png.read_bytes()[:100])
    capsys.readouterr()
    assert report_main([f"store={store}"]) == 0
    err = capsys.readouterr().err
    assert "the record must be a mapping" in err and "field 'la' must be a number" in err
    assert "key 'abc' is not a class seen by then" in err and f"{cut[1]} is not a readable PNG" in err
    assert (store / "report" / "index.html").exists() and (store / "report" / "smoke.html").exists()
    backbone = next((store / "artifacts" / "backbones").glob("*.pt"))
    backbone.write_bytes(backbone.read_bytes()[:1000])   # the recomputing job finds it damaged
    assert sweep_main(["grid=smoke", f"store={store}", "executor=local", "jobs=1"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("is corrupt") == 3
    assert f"warning: {backbone} is damaged" in captured.err                # said by the job, relayed here
    assert all(Record.load(p).la >= 0 for p in recs)
    assert len(list((store / "records" / "smoke" / "stale").glob("*.json"))) == 3
    assert readable_png(cut[0]) and list(cut[0].parent.glob(cut[0].name + ".damaged-*"))   # drawn again


def test_bad_locations_and_grid_files_are_one_line_before_work(tmp_path, capsys):
    from bench.run import main as run_main

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "empty.yaml").write_text("")
    cases = [
        (sweep_main, ["grid=smoke", f"store={a_file}"], "is a file, not a directory"),
        (sweep_main, [f"grid={tmp_path / 'list.yaml'}", f"store={tmp_path / 's'}"], "must be a mapping"),
        (sweep_main, [f"grid={tmp_path / 'empty.yaml'}", f"store={tmp_path / 's'}"], "must be a mapping"),
        (run_main, ["scale=smoke", "dataset=digits", f"out={a_file}/rec.json"], "is a file, not a directory"),
        (report_main, [f"store={tmp_path}", f"out={a_file}"], "is a file"),
    ]
    for main, args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, (args, err)
    assert not (tmp_path / "s").exists()


def _children_alive(pid: int) -> list[int]:
    """Every descendant of ``pid``: the local jobs and the stage processes they start."""
    from bench.local import descendants

    return descendants(pid)


def test_sigterm_stops_the_sweep_and_its_local_jobs(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    store = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-m", "bench.sweep", "grid=smoke", f"store={store}"], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(_children_alive(proc.pid)) < 2:  # a job and its stage process
        time.sleep(0.2)
    time.sleep(1.0)
    children = _children_alive(proc.pid)
    assert len(children) >= 2, "the sweep started no local job"
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "SIGTERM: stopped the sweep" in err and "run the same command again to resume" in err
    assert any(line.startswith("SIGTERM: stopped the sweep") for line in err.splitlines())  # not after the bar
    time.sleep(1.0)
    from bench.local import _alive

    for pid in children:  # no orphan keeps writing into the store
        assert not _alive(pid), f"local job process {pid} outlived the sweep"


def test_two_runs_of_one_cell_train_each_stage_once(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from bench.hardware import describe
    from bench.locks import provenance

    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "bench.run", "dataset=digits", "split=6-2", "method=vanilla_mul", "scale=smoke",
           f"workdir={tmp_path / 'art'}", "progress=false", "threads=1"]
    procs = [subprocess.Popen(cmd + [f"out={tmp_path / f'r{i}.json'}"], cwd=root, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1000:] for o in outs]
    cfg = config.resolve({**_cfg(tmp_path), "split": "6-2"})
    paths = StagePaths(cfg, tmp_path / "art")
    for stage in (paths.backbone, paths.generator(2), paths.generator(3)):
        runs = provenance(stage)
        assert len(runs) == 1 and runs[0]["steps"] > 0 and runs[0]["seconds"] >= 0, (stage, runs)
        assert runs[0]["hardware"] == describe("cpu")   # the CPU whose numbers a reused stage carries
        assert runs[0]["threads"] == 1                  # and the thread count they depend on
    assert [r["hardware"] for r in provenance(paths.evaluation(2))] == [describe("cpu")]
    r0, r1 = Record.load(tmp_path / "r0.json"), Record.load(tmp_path / "r1.json")
    assert r0.accuracy == r1.accuracy and r0.threads == r1.threads == 1


class _SignalsWhilePickled:
    """Sends SIGUSR2 to this process while torch.save is writing it (then pickles as 5)."""

    def __reduce__(self):
        signal.raise_signal(signal.SIGUSR2)
        return int, (5,)


def test_a_preemption_signal_during_a_checkpoint_save_waits_for_the_file(tmp_path):
    """submitit's SIGUSR2 handler checkpoints, requeues and exits; run inside torch.save it broke
    the zip writer and the job failed instead of requeueing (a CI flake). The signal now
    reaches the handler once the checkpoint is complete and in place."""
    from bench.trainer import atomic_save

    seen = []

    def handler(signum, frame):  # noqa: ARG001 - like submitit's: look, then exit
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        raise SystemExit(-1)

    previous = signal.signal(signal.SIGUSR2, handler)
    try:
        with pytest.raises(SystemExit):
            atomic_save({"step": 3, "payload": _SignalsWhilePickled(), "w": torch.ones(4)}, tmp_path / "ckpt.pt")
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert seen == [["ckpt.pt"]]                               # delivered once, after the rename
    state = torch.load(tmp_path / "ckpt.pt", weights_only=False)   # our own test file (int via __reduce__)
    assert state["step"] == 3 and state["payload"] == 5 and torch.equal(state["w"], torch.ones(4))
    assert signal.getsignal(signal.SIGUSR2) is previous
