"""benchmarks/separation.py: the figures that say whether a preset still tells methods apart."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import separation  # noqa: E402


def test_baseline_figures_are_the_recorded_ones():
    """The 3-seed Table V at scale=cpu the new preset is checked against (computed by hand
    from the per-seed LA: 22 of 36 pairs under 0.05, 5 after Holm, F 314.6 / 11.31)."""
    _, la = separation.load_baseline(separation.BASELINE)
    s = separation.separation(la)
    assert (s["pairs"], s["pairs_p05"], s["pairs_holm"]) == (36, 22, 5)
    assert s["f_all"] == pytest.approx(314.6, abs=0.05)
    assert s["f_adapters"] == pytest.approx(11.31, abs=0.01)


def test_noise_makes_a_table_less_separating():
    """A formula that cannot tell signal from noise would pass a noisier table: it must not."""
    _, la = separation.load_baseline(separation.BASELINE)
    before = separation.separation(la)
    noisy = {m: {s: v + (3.0 if (s + len(m)) % 2 else -3.0) for s, v in seeds.items()} for m, seeds in la.items()}
    after = separation.separation(noisy)
    verdict = separation.compare(after, before)
    assert not verdict["f_adapters"] and not verdict["f_all"]
    assert separation.compare(before, before) == {k: True for k in separation.FIGURES}


def test_one_seed_is_one_error_line(tmp_path):
    base = tmp_path / "b.json"
    base.write_text(json.dumps({"la": {"a": {"0": 1.0}, "b": {"0": 2.0}}}))
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "separation.py"), "--baseline-only",
                          "--baseline", str(base)], capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: need at least 2 methods with at least 2 common seeds")
    assert len(res.stderr.strip().splitlines()) == 1
