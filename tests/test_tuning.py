"""tune=lr: candidates scored on a validation split of the training data, never the test set."""
import pytest
import torch

from bench import config
from bench.protocol import Cell, run_cell
from bench.run import main as run_main
from bench.tuning import tune_lr, validation_split


def _cfg(tmp_path, **tune):
    return config.resolve({"dataset": "digits", "split": "6-2", "method": {"name": "vanilla_mul"}, "scale": "smoke",
                           "progress": False, "workdir": str(tmp_path), "tune": {"name": "lr", **tune}})


def test_validation_split_is_stratified_and_inside_the_training_data():
    y = torch.tensor([0] * 10 + [1] * 6 + [2] * 4)
    m = validation_split(y, [0, 1], per_class=4, seed=1)
    assert m.shape == y.shape and int(m[y == 0].sum()) == 4 and int(m[y == 1].sum()) == 3  # at most half of 6
    assert int(m[y == 2].sum()) == 0
    assert torch.equal(m, validation_split(y, [0, 1], per_class=4, seed=1))


@pytest.mark.parametrize("criterion", ["loss", "la"])
def test_tuning_never_reads_the_test_set(tmp_path, criterion):
    cell = Cell(_cfg(tmp_path, criterion=criterion, lr=[1e-3, 3e-2]), log=lambda *_: None)
    cell.train_backbone()
    cell.data.test_x = cell.data.test_y = None  # any read of the test set would fail
    result = tune_lr(cell)
    assert result["criterion"] == criterion and result["candidates"] == [1e-3, 3e-2]
    assert result["chosen"] in result["candidates"] and len(result["scores"]) == 2
    best = (min if criterion == "loss" else max)(result["scores"])
    assert result["scores"][result["candidates"].index(result["chosen"])] == best


def test_tuned_cell_records_its_choice_and_reuses_it(tmp_path):
    rec = run_cell(_cfg(tmp_path, lr=[1e-3, 1e-2]), log=lambda *_: None)
    lr = rec.tuning["lr"]
    assert set(lr) >= {"candidates", "scores", "chosen", "criterion"} and lr["tasks"] == [2]
    again = run_cell(_cfg(tmp_path, lr=[1e-3, 1e-2]), log=lambda *_: None)
    assert again.tuning == rec.tuning and again.accuracy == rec.accuracy
    untuned = run_cell(config.resolve({**_cfg(tmp_path), "tune": {"name": None}}), log=lambda *_: None)
    assert untuned.tuning is None


@pytest.mark.parametrize("args,message", [
    (["tune=foo"], "tune takes only 'lr'"),
    (["tune=lr", "tune.criterion=fid"], "tune.criterion must be loss or la"),
    (["tune=lr", "tune.lr=[]"], "tune.lr must be a non-empty list"),
    (["tune=lr", "tune.lr=[abc]"], "tune.lr"),
])
def test_bad_tune_settings(args, message, capsys):
    assert run_main(args + ["scale=smoke", "dataset=digits"]) == 2
    assert message in capsys.readouterr().err
