"""benchmarks/eval_noise.py: evaluation replicates of stored cells, the record's own draw first."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.record import Record

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import eval_noise  # noqa: E402


def _cell(tmp_path: Path, method: str, seed: int = 3) -> Path:
    out = tmp_path / f"{method}_s{seed}.json"
    cmd = [sys.executable, "-m", "bench.run", "dataset=digits", "split=6-2", f"method={method}", "scale=smoke",
           f"seed={seed}", f"workdir={tmp_path / 'art'}", f"out={out}", "progress=false", "sample_grid=0"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval_noise")
    return _cell(tmp, "vanilla_mul"), _cell(tmp, "lora_conv_v1"), tmp


def test_replicate_zero_is_the_record_and_the_others_redraw(cells):
    path, _, _ = cells
    la = eval_noise.final_la(path, 3, progress=False)
    assert la[0] == pytest.approx(Record.load(path).la, abs=1e-6)
    assert len(set(la)) > 1, "the replicates drew the same sets and classifiers as the record"


def test_changed_stages_are_caught(cells, tmp_path):
    """Replicate 0 must reproduce the record: a record whose LA does not match its stages is refused."""
    path, _, _ = cells
    obj = json.loads(path.read_text())
    obj["la"] = obj["la"] + 5.0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(obj))
    with pytest.raises(BenchError, match="replicate 0 gives LA"):
        eval_noise.final_la(bad, 2, artifacts=Path(obj["config"]["workdir"]), progress=False)


def test_pairs_and_cli(cells):
    a, b, _ = cells
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "eval_noise.py"), str(a), str(b),
                          "--replicates", "2", "--json"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout)
    assert set(summary["methods"]) == {"vanilla_mul", "lora_conv_v1"}
    pair = summary["pairs"]["vanilla_mul - lora_conv_v1"]
    la = {m: s["la"] for m, s in summary["methods"].items()}
    assert pair["mean"] == pytest.approx(sum(x - y for x, y in zip(la["vanilla_mul"], la["lora_conv_v1"])) / 2,
                                         abs=0.011)


@pytest.mark.parametrize("extra, message", [
    (["--replicates", "1"], "--replicates must be at least 2"),
    (["MISSING"], "cannot be read"),
    (["OTHER_SEED"], "must share dataset, split and seed"),
])
def test_bad_input_is_one_error_line(cells, extra, message):
    a, _, tmp = cells
    other = json.loads(a.read_text())
    other["cell"]["seed"] = 4
    (tmp / "other_seed.json").write_text(json.dumps(other))
    names = {"MISSING": str(tmp / "missing.json"), "OTHER_SEED": str(tmp / "other_seed.json")}
    args = [str(a)] + [names.get(x, x) for x in extra]
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "eval_noise.py"), *args],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error:") and message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
