"""Numerics modes (bench/numerics.py): the pins, the sqrt route, the fingerprint a record keeps,
the restart into native mode, one answer per cell, and the same bits under an emulated CPU."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import config, numerics
from bench.errors import BenchError
from bench.record import Record
from bench.report import consistency
from bench.stages import backbone_key, evaluation_key, first_task_key

ROOT = Path(__file__).resolve().parents[1]


def test_the_test_process_is_pinned_portable_before_torch_loaded():
    assert numerics.process_mode() == "portable"
    assert all(os.environ[k] == v for k, v in numerics.PORTABLE_ENV.items())
    assert torch.backends.cpu.get_cpu_capability() in ("AVX2", "DEFAULT", "NO AVX")   # never AVX512 when pinned
    numerics.require("portable")
    assert numerics.routed()


def test_sqrt_is_correctly_rounded_in_every_form():
    """torch's float32 CPU sqrt misrounds about 18 % of these values (which ones depends on the
    CPU); routed, every form equals the exactly rounded root (float64 root, rounded once)."""
    numerics.require("portable")
    x = torch.rand(1000, generator=torch.Generator().manual_seed(0)) + 0.1
    exact = torch.from_numpy(np.sqrt(x.numpy().astype(np.float64)).astype(np.float32))
    assert torch.equal(torch.sqrt(x), exact) and torch.equal(x.sqrt(), exact)
    assert torch.equal(x.clone().sqrt_(), exact)
    out = torch.empty(3)
    torch.sqrt(x, out=out)
    assert torch.equal(out, exact)
    assert all(torch.equal(t, exact) for t in torch._foreach_sqrt([x, x]))
    y = [x.clone()]
    torch._foreach_sqrt_(y)
    assert torch.equal(y[0], exact)
    assert torch.equal(torch.sqrt(x.view(10, 100).t()), exact.view(10, 100).t())          # a strided view
    assert torch.sqrt(torch.tensor(2.0)).dim() == 0 and torch.sqrt(torch.tensor([4, 9])).tolist() == [2.0, 3.0]
    assert torch.sqrt(torch.tensor([2.0], dtype=torch.bfloat16)).dtype == torch.bfloat16
    w = torch.nn.Parameter(x[:5].clone())
    w.sqrt().sum().backward()                                                             # autograd still works
    torch.testing.assert_close(w.grad, 0.5 / exact[:5])


def test_adam_takes_the_routed_root(monkeypatch):
    """Adam's denominator is a square root: the trainer's optimizer step goes through the route."""
    numerics.require("portable")
    calls = []
    real = numerics.exact_sqrt
    monkeypatch.setattr(numerics, "exact_sqrt", lambda x: calls.append(x.shape) or real(x))
    p = torch.nn.Parameter(torch.randn(200))
    opt = torch.optim.Adam([p], lr=0.1)
    (p ** 2).sum().backward()
    opt.step()
    assert calls == [torch.Size([200])]


def test_native_in_a_portable_process_is_one_error_line():
    with pytest.raises(BenchError, match="numerics=native: this process computes in portable mode"):
        numerics.require("native")
    with pytest.raises(BenchError, match="not a numerics mode"):
        config.resolve({"numerics": "fast", "scale": "smoke", "dataset": "digits", "split": "6-2"})


def test_portable_stage_keys_differ_and_native_keeps_the_old_ones():
    """Native is what every stage computed before the option: its keys are the keys without it."""
    cfg = config.resolve({"scale": "smoke", "dataset": "digits", "split": "6-2", "method": "funlora"})
    native = {**cfg, "numerics": "native"}
    old = {k: v for k, v in cfg.items() if k != "numerics"}
    for key in (backbone_key, first_task_key, evaluation_key):
        assert key(native) == key(old) != key(cfg)


def test_numerics_classes():
    amd = {"vendor": "AuthenticAMD", "model": "AMD EPYC", "arch": "x86_64", "flags": ["avx2", "fma"]}
    intel = {"vendor": "GenuineIntel", "model": "Intel Xeon", "arch": "x86_64", "flags": ["avx2", "fma", "avx512f"]}
    assert numerics.numerics_class("portable", "cpu", amd) == numerics.numerics_class("portable", "cpu", intel) \
        == "portable x86-64 AVX2"
    assert numerics.numerics_class("native", "cpu", amd) == "native AMD AVX2"
    assert numerics.numerics_class("native", "cpu", intel) == "native Intel AVX-512"
    arm = {"vendor": "", "model": "", "arch": "aarch64", "flags": []}
    assert numerics.numerics_class("portable", "cpu", arm).startswith("native")   # no promise off x86-64 AVX2
    assert numerics.numerics_class("portable", "cuda", amd, "NVIDIA H200") == "cuda NVIDIA H200"
    # records written before the field: the class from their CPU line
    assert numerics.class_of_record(None, "AMD EPYC (AVX2), 2 cores") == "native AMD AVX2"
    assert numerics.class_of_record(None, "Intel(R) Xeon(R) Processor @ 2.80GHz (AVX-512), 2 cores") == \
        "native Intel AVX-512"


def _smoke(tmp_path: Path, name: str, *extra: str) -> Record:
    out = tmp_path / "store" / "records" / "g" / f"{name}.json"
    res = subprocess.run([sys.executable, "-m", "bench.run", "dataset=digits", "split=6-2", "method=vanilla_mul",
                          "scale=smoke", "seed=0", "threads=1", "progress=false", f"workdir={tmp_path / name}",
                          f"out={out}", *extra], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    rec = Record.load(out)
    rec.grid, rec.label = "g", name
    rec.write(out)
    return rec


def test_a_record_names_its_numerics_and_native_restarts_the_command(tmp_path):
    portable = _smoke(tmp_path, "portable")
    fp = portable.numerics
    assert fp["mode"] == "portable" and fp["sqrt"].startswith("numpy") and fp["onednn_max_isa"] == "AVX2"
    assert fp["mkl_cbwr"] == "COMPATIBLE" and fp["threads"] == 1 and fp["torch"] == torch.__version__
    assert fp["cpu"]["arch"] and len(fp["torch_build"]) == 16
    native = _smoke(tmp_path, "native", "numerics=native")
    assert native.config["numerics"] == "native" and native.numerics["mode"] == "native"
    assert native.numerics["sqrt"] == "torch" and native.numerics["mkl_cbwr"] == "AUTO"
    assert native.numerics["class"].startswith("native ")


def test_reproduce_says_identical_or_by_how_much_it_differs(tmp_path):
    rec = _smoke(tmp_path, "cell")
    store = tmp_path / "store"
    run = lambda *a: subprocess.run([sys.executable, "-m", "bench.reproduce", f"store={store}", "grid=g",   # noqa: E731
                                     *a], cwd=ROOT, capture_output=True, text=True, timeout=600)
    res = run("method=vanilla_mul", "seed=0", f"workdir={tmp_path / 'rerun'}")
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]
    assert "identical: LA" in res.stdout and json.loads(res.stdout.splitlines()[-1])["identical"] is True
    tampered = rec.to_json()
    tampered["accuracy"][-1][0] = 1.0   # a published number that the code no longer gives
    (store / "records" / "g" / "cell.json").write_text(json.dumps(tampered))
    res = run("method=cell", "seed=0", f"workdir={tmp_path / 'rerun2'}")
    assert res.returncode == 1 and "differs: LA" in res.stdout and "numerics fingerprints differ in" in res.stdout
    for args, message in ((("method=nope", "seed=0"), "no method 'nope'"),
                          (("method=vanilla_mul", "seed=7"), "no record of vanilla_mul for seed 7"),
                          (("method=vanilla_mul", "seed=0", f"workdir={store / 'x'}"), "inside the published store")):
        res = run(*args)
        assert res.returncode == 2 and res.stderr.count("\n") == 1 and message in res.stderr, res.stderr


def test_one_cell_with_two_answers_is_found_and_other_classes_are_not_one_cell(tmp_path):
    rec = _smoke(tmp_path, "a")
    folder = tmp_path / "store" / "records" / "g"
    other = rec.to_json()
    other["label"] = "b"
    (folder / "b.json").write_text(json.dumps(other))
    assert consistency.disagreements(sorted(folder.glob("*.json"))) == []   # the same answer twice
    other["accuracy"][-1][-1] = 1.0
    (folder / "b.json").write_text(json.dumps(other))
    found = consistency.disagreements(sorted(folder.glob("*.json")))
    assert len(found) == 1 and "two answers" in found[0]
    other["numerics"] = {**other["numerics"], "class": "native Intel AVX-512"}   # computed another way
    (folder / "b.json").write_text(json.dumps(other))
    assert consistency.disagreements(sorted(folder.glob("*.json"))) == []


def test_report_names_the_numerics_of_each_seed():
    import pandas as pd

    from bench.report.cli import numerics_summary

    df = pd.DataFrame({"seed": [0, 0, 1, 2], "numerics": ["portable x86-64 AVX2"] * 2 + ["native AMD AVX2"] * 2})
    text = numerics_summary(df)
    assert text.startswith("portable x86-64 AVX2 (seed 0); native AMD AVX2 (seeds 1, 2)")
    assert numerics_summary(df[df.seed == 0]) == "portable x86-64 AVX2"


@pytest.mark.skipif(shutil.which("qemu-x86_64") is None and not os.environ.get("FUNLORA_REQUIRE_QEMU"),
                    reason="qemu-user is not installed (apt-get install qemu-user; CI installs it)")
def test_same_bits_as_an_emulated_amd_avx2_cpu(tmp_path):
    """The fingerprint's U-Net and FunLoRA training steps (convolutions, group norm, attention,
    matrix products, cosines, Adam's root, clipping, EMA) natively and as an emulated AMD
    EPYC-Rome: the same hashes in portable mode,
    while torch's own float32 root (the control) differs, so the emulated CPU really computes
    differently (scripts/numerics-check.sh runs every piece on two emulated CPUs)."""
    assert shutil.which("qemu-x86_64"), "FUNLORA_REQUIRE_QEMU is set but qemu-x86_64 is missing"
    python = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
    runs = {}
    for name, prefix in (("native", []), ("emulated", ["qemu-x86_64", "-cpu", "EPYC-Rome"])):
        out = tmp_path / f"{name}.json"
        res = subprocess.run([*prefix, python, "-m", "bench.fingerprint", "methods=[funlora]", "solvers=[]",
                              "classifier=false", f"out={out}"], cwd=ROOT,
                             capture_output=True, text=True, timeout=1800)
        assert res.returncode == 0, res.stderr[-2000:]
        runs[name] = json.loads(out.read_text())
    assert runs["native"]["pieces"] == runs["emulated"]["pieces"]
    assert runs["native"]["controls"] != runs["emulated"]["controls"]
