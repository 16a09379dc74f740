"""Reliability, fifth round (part): an axis entry listed twice is refused, the publish script
refuses surprises before any setup, and records computing in the staging store load."""
import subprocess
from pathlib import Path

import pytest

from bench.record import Record
from bench.sweep import main as sweep_main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("axis, body", [
    ("settings", "  settings: [{generator.adapter.max_steps: 4}, {generator.adapter.max_steps: 4}]\n"),
    ("method", "  method: [vanilla_mul, vanilla_add, vanilla_mul]\n"),
    ("solver", "  solver: [{name: euler, steps: 2}, {name: euler, steps: 2}]\n"),
    ("data", "  data: [{dataset: digits, split: 5-5}, {dataset: digits, split: 5-5}]\n"),
])
def test_an_entry_listed_twice_on_any_axis_is_refused(tmp_path, capsys, axis, body):
    axes = {"data": "  data: [{dataset: digits, split: 5-5}]\n", "method": "  method: [vanilla_mul]\n", axis: body}
    grid = tmp_path / "g.yaml"
    grid.write_text("axes:\n" + "".join(axes.values()) + "fixed: {scale: smoke, progress: false}\n")
    store = tmp_path / "store"
    assert sweep_main([f"grid={grid}", f"store={store}", "dry_run=true"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and f"{axis} axis lists" in err and "\n" not in err, err
    assert not store.exists()


def test_a_dataset_listed_twice_is_refused(tmp_path, capsys):
    assert sweep_main(["grid=table5", "scale=cpu", "datasets=[fashion_mnist,fashion_mnist]",
                       f"store={tmp_path / 's'}", "dry_run=true"]) == 2
    err = capsys.readouterr().err.strip()
    assert "datasets= lists" in err and "\n" not in err, err


@pytest.mark.parametrize("args, message", [
    (["table9", "0"], "unknown grid 'table9'"),
    (["table1", "0"], "grid 'table1' is not a published grid"),
    (["table5", "99"], "seed '99' is not one of the published seeds"),
    (["--new-grid", "table1", "7"], "seed '7' is not one of the published seeds"),
])
def test_the_publish_script_refuses_surprises_before_setup(tmp_path, args, message):
    """One error line and exit 2 at once: no setup, no worktree, no training."""
    res = subprocess.run(["bash", "scripts/publish-results.sh", *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHON": "/bin/false", "HOME": str(tmp_path)})
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and message in res.stderr, res.stderr
    assert res.stdout == ""


def test_committed_records_of_the_staging_store_load():
    """A seed being recomputed sits in results/staging until every cell of it is done; its
    committed records must load (the next machine resumes from them)."""
    res = subprocess.run(["git", "ls-files", "-z", "results/staging/records"], cwd=ROOT, capture_output=True,
                         text=True)
    paths = [ROOT / p for p in res.stdout.split("\0") if p.endswith(".json")] if res.returncode == 0 else \
        sorted((ROOT / "results" / "staging" / "records").glob("*/*.json"))
    for path in paths:
        rec = Record.load(path)
        assert path.stem.endswith(f"_s{rec.cell.seed}") and rec.numerics, path
