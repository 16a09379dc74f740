"""Reliability, fourth round: a grid file by any path keeps its work, Slurm without a cluster
and other bad settings are one line before any work, dry runs promise only what runs do,
and records that cannot be accuracies are not records."""
import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from bench.errors import BenchError
from bench.record import Record
from bench.sweep import main as sweep_main

from .test_report import make_record

ROOT = Path(__file__).resolve().parents[1]
TINY = ("axes:\n  data: [{dataset: digits, split: 5-5}]\n  method: [vanilla_mul]\n"
        "fixed: {scale: smoke, sample_grid: 2, progress: false}\n")


def _refused(capsys, args, message, store):
    assert sweep_main(args) == 2, args
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err, err
    assert not store.exists(), "a folder was created before the refusal"


@pytest.mark.parametrize("relative", [False, True])
def test_a_grid_file_by_any_path_writes_its_records_under_its_name(tmp_path, monkeypatch, relative):
    grid = tmp_path / "grids" / "mini.yaml"
    grid.parent.mkdir()
    grid.write_text(TINY)
    monkeypatch.chdir(tmp_path)
    arg = "grids/mini.yaml" if relative else str(grid)
    store = tmp_path / "store"
    assert sweep_main([f"grid={arg}", f"store={store}", "executor=debug"]) == 0
    recs = list((store / "records" / "mini").glob("*.json"))
    assert len(recs) == 1 and Record.load(recs[0]).grid == "mini"
    assert sorted(p.name for p in (store / "records").iterdir()) == ["mini"]
    assert grid.read_text() == TINY   # the grid file itself is never written to


def test_executor_slurm_where_no_slurm_answers_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    _refused(capsys, ["grid=smoke", "executor=slurm", "slurm=local", f"store={tmp_path / 's'}"],
             "executor=slurm: no Slurm here (sbatch is not on PATH)", tmp_path / "s")


def test_executor_slurm_whose_controller_does_not_answer_is_one_line(tmp_path, capsys, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("sbatch", "srun", "sacct"):
        (fake / tool).write_text("#!/bin/sh\nexit 0\n")
    (fake / "sinfo").write_text("#!/bin/sh\necho 'slurm_load_partitions: Unable to contact slurm controller' >&2\n"
                                "exit 1\n")
    for p in fake.iterdir():
        p.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:/usr/bin:/bin")
    _refused(capsys, ["grid=smoke", "executor=slurm", "slurm=local", f"store={tmp_path / 's'}"],
             "Slurm's controller does not answer (sinfo: slurm_load_partitions: Unable to contact", tmp_path / "s")


def test_a_slurm_profile_without_executor_slurm_is_refused(tmp_path, capsys):
    _refused(capsys, ["grid=smoke", "slurm=nope", f"store={tmp_path / 's'}"],
             "slurm=nope is set but executor=local", tmp_path / "s")


def test_a_seed_listed_twice_is_refused(tmp_path, capsys):
    _refused(capsys, ["grid=smoke", "seeds=[0,0]", f"store={tmp_path / 's'}"], "seeds lists seed 0 more than once",
             tmp_path / "s")


def test_a_dry_run_says_what_the_run_would_refuse(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    store = tmp_path / "s"
    assert sweep_main(["grid=smoke", "device=cuda:0", f"store={store}", "dry_run=true"]) == 0
    out, err = capsys.readouterr()
    assert "4 to run" in out
    assert "a run would refuse: device=cuda:0 was asked for but CUDA is not available" in err
    assert sweep_main(["grid=smoke", "device=cuda:0", f"store={store}"]) == 2   # and the run does refuse


@pytest.mark.parametrize("field, value", [("la", -5.0), ("la", math.nan), ("aia", 101.0), ("accuracy", math.inf)])
def test_a_record_whose_accuracies_are_not_accuracies_is_not_a_record(tmp_path, field, value):
    path = make_record(tmp_path, "table3", "cifar10", "2-2", "mul_add", 0, 50.0, 55.0, 10)
    obj = json.loads(path.read_text())
    if field == "accuracy":
        obj["accuracy"][1][0] = value
    else:
        obj[field] = value
    path.write_text(json.dumps(obj))
    with pytest.raises(BenchError, match=r"not an accuracy in 0-100 %"):
        Record.load(path)


def test_the_report_names_and_leaves_out_a_nan_record(tmp_path, capsys):
    from bench.report.cli import main as report_main

    make_record(tmp_path, "table3", "cifar10", "2-2", "mul_add", 0, 50.0, 55.0, 10)
    bad = make_record(tmp_path, "table3", "cifar10", "2-2", "vanilla_mul", 0, 60.0, 65.0, 10)
    bad.write_text(bad.read_text().replace('"la": 60.0', '"la": NaN'))
    assert report_main([f"store={tmp_path}", "format=md", "figures=false"]) == 0
    err = capsys.readouterr().err
    assert f"warning: record {bad}" in err and "not an accuracy" in err
    table = (tmp_path / "report" / "table3.md").read_text()
    assert "60.00" not in table and "50.00" in table


def test_the_sweep_sets_aside_and_recomputes_a_record_with_an_impossible_la(tmp_path, capsys):
    grid = tmp_path / "mini.yaml"
    grid.write_text(TINY)
    store = tmp_path / "store"
    assert sweep_main([f"grid={grid}", f"store={store}", "executor=debug"]) == 0
    path = next((store / "records" / "mini").glob("*.json"))
    good = Record.load(path)
    path.write_text(path.read_text().replace(f'"la": {json.dumps(good.la)}', '"la": -5.0'))
    capsys.readouterr()
    assert sweep_main([f"grid={grid}", f"store={store}", "executor=debug"]) == 0
    assert "not an accuracy" in capsys.readouterr().out
    assert Record.load(path).la == good.la and len(list((path.parent / "stale").glob("*.json"))) == 1


def test_a_missing_sample_grid_is_redrawn_and_reported_until_it_is(tmp_path, capsys):
    from bench.report.cli import main as report_main

    grid = tmp_path / "mini.yaml"
    grid.write_text(TINY)
    store = tmp_path / "store"
    assert sweep_main([f"grid={grid}", f"store={store}", "executor=debug"]) == 0
    rec = Record.load(next((store / "records" / "mini").glob("*.json")))
    png = Path(rec.sample_grids[-1])
    drawn = png.read_bytes()
    png.unlink()
    capsys.readouterr()
    assert report_main([f"store={store}", "format=md", "figures=false"]) == 0
    assert f"its sample grid {png} is missing" in capsys.readouterr().err
    assert sweep_main([f"grid={grid}", f"store={store}", "executor=debug"]) == 0
    assert "1 of 1 cells to run" in capsys.readouterr().out
    assert png.read_bytes() == drawn     # the same pixels: fixed noise, the stored generators


def test_a_published_record_without_its_stage_outputs_is_complete(tmp_path):
    from bench.jobs import read_record

    path = make_record(tmp_path, "table3", "cifar10", "2-2", "mul_add", 0, 50.0, 55.0, 10,
                       sample_grids=["/nonexistent/artifacts/evaluations/x/samples_task1_n8.png", None])
    assert read_record(path)[0] == "ok"


def test_a_grid_of_another_store_half_recomputed_is_not_this_stores_to_redraw(tmp_path):
    """A published record names the absolute path its grid had where it was computed; in a clone on the
    same machine that store's stages may be half recomputed right now (its evaluation folder there, the
    grid not yet). The clone's record is complete; the same record in the store it names is not."""
    from bench.jobs import read_record

    elsewhere = tmp_path / "original" / "artifacts" / "evaluations" / "x"
    elsewhere.mkdir(parents=True)
    grid = str(elsewhere / "samples_task1_n8.png")
    clone = make_record(tmp_path / "clone", "table5", "cifar10", "2-2", "funlora", 0, 50.0, 55.0, 10,
                        sample_grids=[grid, None])
    assert read_record(clone)[0] == "ok"
    original = make_record(tmp_path / "original", "table5", "cifar10", "2-2", "funlora", 0, 50.0, 55.0, 10,
                           sample_grids=[grid, None])
    assert read_record(original)[0] == "missing its sample grid samples_task1_n8.png (redrawn from the stored stages)"


def test_quickstart_says_an_unknown_grid_before_setup(tmp_path):
    res = subprocess.run(["bash", "scripts/quickstart.sh", "grid=nope"], cwd=ROOT, capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith("error: unknown grid 'nope'; grids: ") and "table5" in res.stderr


def test_setup_prints_one_line_per_step_and_the_log_when_a_step_fails(tmp_path):
    """A copy of the checkout whose pip install fails (pyproject names a package that does not exist)."""
    work = tmp_path / "repo"
    (work / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", work / "scripts")
    (work / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "0"\n'
                                         'dependencies = ["this-package-does-not-exist-funlora==0"]\n')
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PIP_NO_INDEX": "1"}
    res = subprocess.run(["bash", "scripts/setup.sh"], cwd=work, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 1
    assert all(line.startswith("== ") for line in res.stdout.splitlines()), res.stdout
    assert res.stderr.strip().startswith("error: setup step 'installing funlora-bench") and \
        str(work / ".setup.log") in res.stderr and "\n" not in res.stderr.strip()
    assert "error" in (work / ".setup.log").read_text().lower()   # pip's own words are in the log
