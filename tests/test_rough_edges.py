"""Bad input caught before any work, options never replaced in silence, labels a person reads
(the last rough edges found by a newcomer), with real files and processes."""
import json

import pytest
import torch

from bench.inspect import main as inspect_main
from bench.record import Record
from bench.run import main as run_main
from bench.sweep import main as sweep_main

from .test_report import make_record


def _one_line_before_work(capsys, main, args, message, store=None):
    assert main(args) == 2, args
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err, (args, err)
    if store is not None:
        assert not (store / "logs").exists() and not (store / "artifacts").exists(), "work started"


def test_a_grid_file_split_that_does_not_divide_the_classes_is_refused_before_any_job(tmp_path, capsys):
    grid = tmp_path / "bad_split.yaml"
    grid.write_text("axes:\n  data: [{dataset: fashion_mnist, split: 3-3}]\n  method: [vanilla_mul]\n"
                    "fixed: {scale: smoke}\n")
    store = tmp_path / "store"
    _one_line_before_work(capsys, sweep_main, [f"grid={grid}", f"store={store}"],
                          "split 3-3 does not divide 10 classes", store)


def test_sweep_device_cuda_without_cuda_is_refused_before_any_job(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    store = tmp_path / "store"
    _one_line_before_work(capsys, sweep_main, ["grid=smoke", "device=cuda", f"store={store}"],
                          "device=cuda was asked for but CUDA is not available on", store)


def test_tune_la_with_every_task_is_refused_before_the_backbone_trains(tmp_path, capsys):
    tune = ["tune=lr", "tune.criterion=la", "tune.tasks=all"]
    art = tmp_path / "art"
    _one_line_before_work(capsys, run_main, ["dataset=digits", "split=6-2", "scale=smoke", f"workdir={art}",
                                             f"out={tmp_path / 'r.json'}", *tune],
                          "tune.criterion=la needs tune.tasks=first")
    assert not art.exists()
    store = tmp_path / "store"
    _one_line_before_work(capsys, sweep_main, ["grid=smoke", f"store={store}", *tune],
                          "tune.criterion=la needs tune.tasks=first", store)


@pytest.mark.parametrize("args, message", [
    (["image_size=-1"], "image_size must be an integer >= 4, got -1"),
    (["in_channels=0"], "in_channels must be an integer >= 1, got 0"),
    (["num_classes=0"], "num_classes must be an integer >= 1, got 0"),
])
def test_inspect_refuses_impossible_shapes(capsys, args, message):
    _one_line_before_work(capsys, inspect_main, args, message)


def test_sweep_refuses_negative_seeds_and_suggests_its_own_keys(tmp_path, capsys):
    store = tmp_path / "store"
    _one_line_before_work(capsys, sweep_main, ["grid=smoke", "seeds=[-1]", f"store={store}"],
                          "list of non-negative integers, got [-1]", store)
    _one_line_before_work(capsys, sweep_main, ["grid=smoke", "job=2", f"store={store}"],
                          "unknown key 'job' (did you mean jobs?)", store)
    _one_line_before_work(capsys, run_main, ["dataset=digits", "scale=smoke", "seed=-2"],
                          "seed must be a non-negative integer, got -2")


@pytest.mark.parametrize("method, option", [("oft", "method.block_size=3"), ("funlora", "method.ratio=4"),
                                            ("locon", "method.rank=2")])
def test_an_explicit_size_with_a_budget_is_an_error_not_a_silent_replacement(capsys, method, option):
    name = option.split(".")[1].split("=")[0]
    _one_line_before_work(capsys, run_main, ["dataset=digits", "scale=smoke", f"method={method}", option,
                                             "method.budget=1x"],
                          f"method.budget chooses method.{name} itself")


def test_a_record_whose_per_class_keys_are_not_classes_is_not_a_record(tmp_path):
    path = make_record(tmp_path, "table5", "cifar10", "2-2", "funlora", 0, 80.0, 85.0, 10028,
                       per_class_accuracy=[{"abc": 50.0}, {"0": 1.0}])
    with pytest.raises(Exception, match="key 'abc' is not a class seen by then"):
        Record.load(path)
    obj = json.loads(path.read_text())
    obj["per_class_accuracy"] = [{"0": 50.0}, {"0": 50.0, "9": 1.0}]    # class 9 is in no task
    path.write_text(json.dumps(obj))
    with pytest.raises(Exception, match="key '9' is not a class seen by then"):
        Record.load(path)
    obj["per_class_accuracy"] = [{"0": 50.0}]
    path.write_text(json.dumps(obj))
    with pytest.raises(Exception, match="has 1 entries for 2 tasks"):
        Record.load(path)
