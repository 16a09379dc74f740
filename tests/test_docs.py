"""Every command README.md and docs/ show runs, in a cheap form, and every link resolves.

A command is a line of a fenced ``bash`` block. Cheap forms: sweeps as dry runs into a
temporary store, cells at scale=smoke, reports on a store of a few records, scripts and
benchmarks with ``--help``; ``bench.inspect`` as it is; ``bench.reproduce`` as a dry run;
``bench.fingerprint`` with the U-Net's pieces alone.
"""
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote

import pytest

from bench.hardware import usable_cpus

from .test_report import make_record

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "results" / "README.md"]
FENCE = re.compile(r"```bash\n(.*?)```", re.S)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def commands() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        for block in FENCE.findall(page.read_text()):
            for line in block.replace("\\\n", " ").splitlines():   # a line ending in a backslash goes on
                line = line.split("  #")[0].strip()
                if line:
                    out.append((page.relative_to(ROOT).as_posix(), line))
    return out


def cheap(line: str, tmp: Path) -> list[str] | None:
    """The cheap form of ``line`` as an argument list (None: not a command this suite owns)."""
    words = shlex.split(line)
    if words[:1] == ["bash"] and words[1].startswith("scripts/"):
        if words[1] == "scripts/setup.sh":
            return words
        return ["bash", words[1], "--help"]
    if words[:1] != ["python"]:
        return None
    words[0] = sys.executable
    if words[1].startswith("benchmarks/"):
        return [*words[:2], "--help"]
    module = words[2] if words[1] == "-m" else ""
    if "--help" in words:
        return words
    if module == "bench.sweep":   # estimate=true times steps for a minute: tests/test_estimate.py runs it
        return [*[w for w in words if w != "estimate=true"], "dry_run=true", f"store={tmp / 'store'}"]
    if module == "bench.run":
        keep = [w for w in words if not w.startswith(("scale=", "out="))]
        return [*keep, "scale=smoke", "sample_grid=0", "progress=false", f"out={tmp / 'r.json'}",
                f"workdir={tmp / 'work'}"]
    if module == "bench.report":
        store = tmp / "reports"
        if not store.exists():
            for seed in (0, 1):
                make_record(store, "table5", "cifar10", "2-2", "funlora", seed, 70.0 + seed, 75.0, 10028)
                make_record(store, "table5", "cifar10", "2-2", "vanilla_mul", seed, 68.0 + seed, 74.0, 9728)
        keep = [w for w in words if not w.startswith(("store=", "out="))]
        return [*keep, f"store={store}", f"out={tmp / 'report'}", "figures=false"]
    if module == "bench.report.headline":   # writes README.md: its check runs in tests/test_publication.py
        return [*words[:3], "--help"]
    if module == "bench.inspect":
        return words
    if module == "bench.reproduce":   # the rerun itself takes a cell's time: tests/test_numerics.py runs one
        return [*words, "dry_run=true"]
    if module == "bench.fingerprint":   # the U-Net's steps alone (the adapters: tests/test_numerics.py)
        if any(w.startswith("compare=") for w in words):
            return [*words[:3], "--help"]
        keep = [w for w in words if not w.startswith(("methods=", "solvers=", "classifier=", "quick=", "out="))]
        return [*keep, "methods=[]", "solvers=[]", "classifier=false"]
    return None


def _dedup(cases: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """One case per script or benchmark (their cheap form is --help), every other line once."""
    seen, out = set(), []
    for page, line in cases:
        words = line.split()
        key = words[1] if len(words) > 1 and words[1].startswith(("scripts/", "benchmarks/")) else line
        if key not in seen:
            seen.add(key)
            out.append((page, line))
    return out


CASES = _dedup(commands())


def test_the_pages_show_commands():
    assert len(CASES) >= 20 and any(line.startswith("bash scripts/quickstart.sh") for _, line in CASES)


def _run_cheap(line: str, tmp: Path) -> tuple[list[str] | None, subprocess.CompletedProcess | None]:
    args = cheap(line, tmp)
    if args is None:
        return None, None
    return args, subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600,
                                env={"PATH": "/usr/bin:/bin", "HOME": str(tmp), "OMP_NUM_THREADS": "1",
                                     "CUDA_VISIBLE_DEVICES": ""})


@pytest.fixture(scope="module")
def shown_commands(request, tmp_path_factory) -> dict:
    """The selected commands, started side by side (one thread each, one per core: most of a
    command's time is Python's) after setup.sh; each test waits for its own."""
    selected = [item.callspec.params["line"] for item in request.session.items
                if item.originalname == "test_every_command_shown_runs" and hasattr(item, "callspec")]
    selected = list(dict.fromkeys(selected))
    # setup.sh may reinstall the package: alone, before the commands that import it
    setup = [line for line in selected if line.split()[:2] == ["bash", "scripts/setup.sh"]]
    with ThreadPoolExecutor(max_workers=1) as alone:
        started = {line: alone.submit(_run_cheap, line, tmp_path_factory.mktemp("cmd")) for line in setup}
    pool = ThreadPoolExecutor(max_workers=usable_cpus())
    request.addfinalizer(pool.shutdown)
    return {**started, **{line: pool.submit(_run_cheap, line, tmp_path_factory.mktemp("cmd"))
                          for line in selected if line not in started}}


@pytest.mark.parametrize("page, line", CASES, ids=[f"{p}: {c[:60]}" for p, c in CASES])
def test_every_command_shown_runs(page, line, shown_commands):
    args, res = shown_commands[line].result()
    assert args is not None, f"{page}: {line!r} is not a command of this suite (python -m bench.*, benchmarks/, scripts/)"
    assert res.returncode == 0, f"{page}: {' '.join(args)}\n{res.stdout[-1500:]}\n{res.stderr[-1500:]}"
    assert "Traceback" not in res.stderr, res.stderr[-2000:]


def test_every_link_between_pages_resolves():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            path = (page.parent / unquote(target.split("#")[0])).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_the_readme_is_a_short_guide():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 200
    for heading in ("## Install", "## Quickstart", "## Results", "## Reproducing the paper", "## Methods",
                    "## GPUs and Slurm", "## Configuration", "## Adding a method", "## Development and tests",
                    "## Layout", "## Citation", "## License"):
        assert heading in text, heading
    assert (ROOT / "LICENSE").exists() and (ROOT / "CITATION.cff").exists()
