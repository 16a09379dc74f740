"""The continual protocol end to end at scale=smoke, on real Fashion-MNIST or digits."""
import json

import pytest
import torch

from bench import config
from bench.metrics import average_accuracies, forgetting
from bench.protocol import run_cell
from bench.record import Record
from bench.run import main as run_main

DATASET = "digits"  # ships with scikit-learn: always there, offline


def _cfg(method, tmp_path, **extra):
    return config.resolve({"dataset": DATASET, "split": "4-2", "method": {"name": method}, "scale": "smoke",
                           "seed": 0, "progress": False, "workdir": str(tmp_path / "art"), **extra})


def _check_record(rec, T=4):
    if isinstance(rec, dict):
        rec = Record.from_json(rec)
    acc = rec.accuracy
    assert len(acc) == T and all(len(r) == T for r in acc)
    for t, row in enumerate(acc):
        assert all(v is None for v in row[t + 1:])
        assert all(0.0 <= v <= 100.0 for v in row[:t + 1])
    la, aia, abar = average_accuracies(acc)
    assert rec.la == pytest.approx(la) and rec.aia == pytest.approx(aia)
    assert rec.tasks == [[0, 1, 2, 3], [4, 5], [6, 7], [8, 9]]
    assert len(rec.seconds.generator) == len(rec.seconds.sampling) == len(rec.seconds.classifier) == T
    assert rec.config["dataset"] == DATASET


@pytest.mark.parametrize("method", ["vanilla_mul", "conditioning_only", "multitask_classifier", "multitask_generator"])
def test_protocol_runs_every_issue2_method(method, tmp_path):
    rec = run_cell(_cfg(method, tmp_path), log=lambda *_: None)
    _check_record(rec)
    synthetic_tasks = range(0 if method == "multitask_generator" else 1, 4)
    for t in range(4):
        calls = rec.nfe[t].calls
        if method == "multitask_classifier" or t not in synthetic_tasks:
            assert calls == 0
        else:
            assert calls >= 1 and rec.nfe[t].per_call_mean == 2  # euler, 2 steps at smoke scale
    if method == "vanilla_mul":
        assert rec.ppc > 0 and rec.trainable_per_task[1] == 2 * (rec.ppc + rec.embedding_params_per_class)
    else:
        assert rec.ppc == 0


@pytest.mark.parametrize("strategy", ["replay", "finetune"])
def test_protocol_runs_the_strategies(strategy, tmp_path):
    rec = run_cell(_cfg(strategy, tmp_path), log=lambda *_: None)
    _check_record(rec)
    assert rec.ppc == 0 and rec.trainable_per_task[1] == rec.trainable_per_task[0] > 0


def test_rerun_reuses_every_stage(tmp_path):
    first = run_cell(_cfg("vanilla_mul", tmp_path), log=lambda *_: None)
    second = run_cell(_cfg("vanilla_mul", tmp_path), log=lambda *_: None)
    assert second.accuracy == first.accuracy
    # Every stage was reused: the checkpoints and per-task evaluations were not written again.
    art = tmp_path / "art"
    def outputs():  # stage outputs and their provenance; lock files are rewritten by every run
        return {p: p.stat().st_mtime_ns for p in art.rglob("*") if p.is_file() and ".lock" not in p.name}

    stamps = outputs()
    third = run_cell(_cfg("vanilla_mul", tmp_path), log=lambda *_: None)
    assert third.accuracy == first.accuracy
    assert outputs() == stamps


def test_cli_writes_a_record(tmp_path, capsys):
    out = tmp_path / "rec.json"
    rc = run_main([f"dataset={DATASET}", "split=4-2", "method=vanilla_mul", "scale=smoke", "seed=1",
                   f"out={out}", f"workdir={tmp_path / 'art'}", "progress=false"])
    assert rc == 0
    rec = Record.load(out)
    _check_record(rec)
    text = capsys.readouterr().out
    assert "LA = " in text and "task 4/4" in text


def test_forgetting_metric():
    acc = [[90.0, None], [60.0, 80.0]]
    assert forgetting(acc) == 30.0
    assert average_accuracies(acc) == (70.0, 80.0, [90.0, 70.0])


def test_image_quality_is_stored_with_its_extractor(tmp_path):
    rec = run_cell(_cfg("vanilla_mul", tmp_path, fid=True, fid_extractor="classifier"), log=lambda *_: None)
    q = rec.quality
    assert q["extractor"] == "resnet18-real-penultimate"
    assert q["fid"] > 0 and 0 <= q["precision"] <= 1 and 0 <= q["recall"] <= 1
    assert q["n_fake"] == 16 * 10  # smoke: 16 samples per class, all 10 classes after the last task


@pytest.mark.parametrize("method", ["vanilla_mul", "multitask_generator"])
def test_frozen_generators_sample_each_task_once_and_reuse_it(method, tmp_path, monkeypatch):
    """Old classes are frozen under adapters (and the multitask generator never changes): the
    synthetic images of task i's classes are drawn once and are the same in every later task's
    training set; a resumed run draws them again, identically, and writes the same record."""
    import bench.protocol as protocol

    seen, drawn = [], []
    real_train, real_synth = protocol.train_classifier, protocol.synthesize

    def spy_train(x, y, *args, **kwargs):
        seen.append((x.clone(), y.clone()))
        return real_train(x, y, *args, **kwargs)

    def spy_synth(model, classes, *args, **kwargs):
        drawn.append(list(classes))
        return real_synth(model, classes, *args, **kwargs)

    monkeypatch.setattr(protocol, "train_classifier", spy_train)
    monkeypatch.setattr(protocol, "synthesize", spy_synth)
    first = run_cell(_cfg(method, tmp_path), log=lambda *_: None)
    assert drawn == [[0, 1, 2, 3], [4, 5], [6, 7], [8, 9]]       # each task's classes once
    first_synthetic = 0 if method == "multitask_generator" else 1  # adapters: task 1 on real data
    synthetic = seen[first_synthetic:]
    for (x_prev, y_prev), (x_next, y_next) in zip(synthetic, synthetic[1:]):
        n = len(x_prev)
        assert torch.equal(x_next[:n], x_prev) and torch.equal(y_next[:n], y_prev)
    calls = [1, 1, 1, 1] if method == "multitask_generator" else [0, 2, 1, 1]
    assert [n.calls for n in first.nfe] == calls                 # each group's NFE counted once
    # Resume after task 3: its evaluation is on disk, the in-memory groups are gone.
    for p in (tmp_path / "art" / "evaluations").rglob("task4.json"):
        p.unlink()
    drawn.clear()
    again = run_cell(_cfg(method, tmp_path), log=lambda *_: None)
    # Drawn again for task 4; under adapters task 1's group is the backbone's, cached for every method.
    assert drawn == ([[0, 1, 2, 3]] if method == "multitask_generator" else []) + [[4, 5], [6, 7], [8, 9]]
    assert again.accuracy == first.accuracy and [n.calls for n in again.nfe] == calls


def test_adapter_methods_share_the_backbones_task1_samples(tmp_path, monkeypatch):
    """Task 1's classes are the frozen backbone's under every adapter method: drawn once, by
    the first cell, and exactly what drawing them through the other method would give."""
    import bench.protocol as protocol

    drawn = []
    real_synth = protocol.synthesize

    def spy_synth(model, classes, *args, **kwargs):
        out = real_synth(model, classes, *args, **kwargs)
        drawn.append((type(model).__name__, list(classes), out[0]))
        return out

    monkeypatch.setattr(protocol, "synthesize", spy_synth)
    run_cell(_cfg("vanilla_mul", tmp_path), log=lambda *_: None)
    assert [d[1] for d in drawn] == [[0, 1, 2, 3], [4, 5], [6, 7], [8, 9]]
    shared = drawn[0][2]
    drawn.clear()
    run_cell(_cfg("scale_shift", tmp_path), log=lambda *_: None)
    assert [d[1] for d in drawn] == [[4, 5], [6, 7], [8, 9]]             # task 1's group reused
    monkeypatch.setattr(protocol.Cell, "first_group", lambda self: self.synthesize(
        self.strategy.sampler(), self.data.tasks[0], "sampling-task", 1))
    drawn.clear()
    run_cell(_cfg("scale_shift", tmp_path / "alone"), log=lambda *_: None)
    assert drawn[0][1] == [0, 1, 2, 3] and torch.equal(drawn[0][2], shared)  # what scale_shift draws itself
