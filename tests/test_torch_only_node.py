"""A GPU node with torch and numpy alone: an offline bundle makes the suite run there.

The node is played here by an import hook (a ``sitecustomize`` first on PYTHONPATH, so that
every subprocess and local job has it too) that hides every package of this environment's
site-packages but torch, numpy and what torch itself requires. The bundle is made by
``scripts/offline-bundle.sh`` (it downloads wheels: PyPI must answer), installed by
``scripts/gpu-check.sh --bundle`` without network, and the GPU checks' smoke sweep runs
(``--device cpu --smoke``: cells, a sweep and its local jobs; the other checks import nothing more).
"""
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

HOOK = '''
import importlib.abc, importlib.machinery, sys
SITE = {site!r}
ALLOWED = set({allowed!r})

class OnlyAllowed(importlib.abc.MetaPathFinder):
    """Of SITE's packages only ALLOWED exist (a node with torch and numpy alone); the others are
    not found at all, as on such a node (find_spec answers None, imports fail)."""
    def find_spec(self, name, path=None, target=None):
        if "." in name or name not in ALLOWED:
            return None
        return importlib.machinery.PathFinder.find_spec(name, [SITE])

sys.path[:] = [p for p in sys.path if p.rstrip("/") != SITE.rstrip("/")]
sys.meta_path.insert(0, OnlyAllowed())
'''


def torch_closure() -> set[str]:
    """Top-level module names of torch, numpy and every distribution torch requires (recursively)."""
    todo, dists = ["torch", "numpy"], set()
    while todo:
        name = re.split(r"[\s<>=!~;\[(]", todo.pop(), maxsplit=1)[0].lower().replace("_", "-")
        if name in dists:
            continue
        try:
            reqs = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        dists.add(name)
        todo += [r for r in reqs if "extra ==" not in r]
    tops = {top for top, owners in metadata.packages_distributions().items()
            if any(o.lower().replace("_", "-") in dists for o in owners)}
    return tops | {"pip", "_distutils_hack", "__editable___funlora_bench_0_1_0_finder", "pkg_resources", "setuptools"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle")
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    res = subprocess.run(["bash", "scripts/offline-bundle.sh", str(out), "--python", py], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    if res.returncode != 0 and "pip could not download" in res.stderr and not os.environ.get("CI"):
        pytest.skip("no package index answers here: " + res.stderr.strip().splitlines()[-1])
    assert res.returncode == 0, res.stderr[-2000:]
    return out


def test_a_torch_only_node_runs_the_gpu_checks_from_an_offline_bundle(bundle, tmp_path):
    import torch

    site = str(Path(torch.__file__).resolve().parents[1])
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK.format(site=site, allowed=sorted(torch_closure())))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(hook), "PYTHON": sys.executable, "PIP_NO_INDEX": "1", "CUDA_VISIBLE_DEVICES": ""}
    probe = subprocess.run([sys.executable, "-c", "import submitit"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'submitit'" in probe.stderr, "the hook hides nothing"
    out = tmp_path / "check"
    res = subprocess.run(["bash", "scripts/gpu-check.sh", "--bundle", str(bundle), "--device", "cpu", "--smoke",
                          "--skip", "resume,determinism,table5,perf,gpu_check", "--out", str(out), "--scratch", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-3000:])
    check = json.loads((out / "check.json").read_text())
    assert check["pass"] and set(check["checks"]) == {"smoke_sweep"}   # cells, sweep, local jobs: every import
    assert all(c["wall_seconds_check"] > 0 for c in check["checks"].values())
    assert (bundle / f"site-{sys.version_info.major}.{sys.version_info.minor}" / "submitit").is_dir()


def test_bundle_and_check_scripts_refuse_bad_options_in_one_line(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("")
    for cmd, message in ((["scripts/offline-bundle.sh", str(tmp_path / "b"), "--python"], "--python needs a value"),
                         (["scripts/offline-bundle.sh", str(tmp_path / "b"), "--torch", "x"], "--torch takes"),
                         (["scripts/offline-bundle.sh", str(tmp_path / "b"), "--platform", "ppc"], "x86_64 or aarch64"),
                         (["scripts/offline-bundle.sh", str(afile)], "is a file, not a folder"),
                         (["scripts/gpu-check.sh", "--bundle"], "--bundle needs a folder")):
        res = subprocess.run(["bash", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=60)
        err = res.stderr.strip()
        assert res.returncode == 2 and err.startswith("error: ") and message in err and "\n" not in err, (cmd, err)
