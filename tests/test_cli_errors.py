"""Bad input: one clear line on stderr, exit status 2, no traceback, before any work."""
import subprocess
import sys

import pytest

from bench import data
from bench.run import main as run_main


@pytest.mark.parametrize("args,message", [
    (["dataset=mnist"], "unknown dataset 'mnist'"),
    (["split=3-3"], "split 3-3 does not divide 10 classes"),
    (["split=two"], "cannot read split"),
    (["method=funlroa"], "unknown method 'funlroa' (did you mean 'funlora'?)"),
    (["method=funlora", "method.k=2"], "has no option 'k'"),
    (["scale=huge"], "unknown scale 'huge'"),
    (["sead=1"], "unknown key 'sead' (did you mean seed?)"),
    (["solver.nmae=rk4"], "unknown key 'solver.nmae' (did you mean solver.name?)"),
    (["solver.name=heun"], "unknown solver 'heun'"),
    (["method=replay", "method.K=3"], "is a strategy"),
    (["seed"], "use key=value"),
    (["generator.task1.epochs=abc"], "generator.task1.epochs: Value 'abc' of type 'str' could not be converted to Integer"),
    (["threads=abc"], "threads: Value 'abc'"),
    (["solver.atol=abc"], "solver.atol: Value 'abc' of type 'str' could not be converted to Float"),
    (["sampling.per_class=x"], "sampling.per_class: Value 'x'"),
    (["seed=abc"], "seed: Value 'abc'"),
    (["method=funlora", "method.K=abc"], "method.K='abc' has the wrong type"),
    (["method=funlora", "method.K=0"], "method.K must be a positive integer"),
    (["classifier.batch_size=0"], "classifier.batch_size must be positive"),
    (["dataset=digits", "scale=smoke", "method=funlora", "method.layers=54-40"], "layer range 54-40 is empty"),
    (["dataset=digits", "scale=smoke", "method=funlora", "method.layers=0-999"], "outside the backbone"),
])
def test_bad_input_is_one_line(args, message, capsys):
    assert run_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_missing_data_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    import torchvision.datasets

    def no_download(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(data, "DEBIAN_FMNIST", tmp_path / "none")
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", no_download)
    assert run_main(["dataset=fashion_mnist", "scale=smoke", f"data_root={tmp_path}", f"out={tmp_path}/r.json"]) == 2
    err = capsys.readouterr().err
    assert "apt-get install dataset-fashion-mnist" in err and err.count("\n") == 1
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", no_download)
    assert run_main(["dataset=cifar10", "split=2-2", "scale=smoke", f"data_root={tmp_path}"]) == 2
    assert "cifar10 is not in" in capsys.readouterr().err


def test_imagenet100_missing_folder(tmp_path, capsys):
    assert run_main(["dataset=imagenet100", "split=20-20", "scale=smoke", f"data_root={tmp_path}"]) == 2
    assert "ImageNet100 not found" in capsys.readouterr().err


def test_subprocess_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "bench.run", "dataset=nope"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: unknown dataset 'nope'; datasets: fashion_mnist, digits, cifar10, "
                                   "cifar100, imagenet100, synthetic, synthetic100, synthetic64")
    assert "Traceback" not in proc.stderr


def test_scientific_notation_is_a_number():
    from bench import config

    cfg = config.resolve(["generator.adapter.lr=2e-4", "solver.atol=1e-5"])
    assert cfg["generator"]["adapter"]["lr"] == 0.0002 and cfg["solver"]["atol"] == 1e-5
