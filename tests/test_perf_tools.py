"""benchmarks/perf.py --json, benchmarks/gpu_check.py, precision=bf16 and dataset=synthetic: they run
and say what they should (speed itself is measured by the scripts, never asserted here)."""
import json
import os
import subprocess
import sys
from pathlib import Path

from bench import config
from bench.hardware import usable_cpus
from bench.protocol import run_cell
from bench.stages import backbone_key, evaluation_key

ROOT = Path(__file__).resolve().parents[1]


def _script(*args):
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_perf_json_has_ratios_per_method_and_the_worst_case():
    # the tiny U-Net: the JSON's shape is what is tested (the small one took 4-8 minutes of CI)
    res = _script("benchmarks/perf.py", "--json", "--json-model", "tiny", "--repeats", "1",
                  "--methods", "vanilla_mul,funlora,ia3,funlora[kernel=function]")
    for part in (res, res["worst_case"]):
        assert set(part["train_ratio"]) == {"conditioning_only", "vanilla_mul", "funlora", "ia3",
                                            "funlora[kernel=function]"}
        assert set(part["sample_ratio"]) == set(part["train_ratio"])
        assert part["train_ratio"]["conditioning_only"] == 1.0
        assert all(v > 0 for v in part["train_ratio"].values())
    assert (res["train_batch"], res["new_classes_per_batch"]) == (32, 2)
    assert (res["worst_case"]["train_batch"], res["worst_case"]["new_classes_per_batch"]) == (16, 8)
    assert set(res["funlora_over_vanilla_mul"]) == {"paper_mix", "worst_case"}
    floor = res["cosine_floor_over_vanilla_mul"]                  # 1 + cos/sin time over vanilla_mul's step
    assert set(floor) == {"paper_mix", "worst_case"} and all(v > 1 for v in floor.values())
    assert res["worst_case"]["cosine_floor_ms"] > 0
    assert res["funlora_kernel"] in ("compiled", "function")
    assert set(res["funlora_over_variant"]) == {"funlora[kernel=function]"}
    assert all(v > 0 for v in res["funlora_over_variant"]["funlora[kernel=function]"].values())


def test_perf_json_under_bf16_says_its_device_and_precision():
    res = _script("benchmarks/perf.py", "--json", "--json-model", "tiny", "--repeats", "1", "--device", "auto",
                  "--precision", "bf16", "--methods", "funlora")
    assert res["precision"] == "bf16" and res["device"] in ("cpu", "cuda")
    assert res["funlora_kernel"] == "function"   # CUDA's choice, and the CPU's in portable numerics
    assert set(res["train_ratio"]) == {"conditioning_only", "funlora"}


def test_perf_on_a_missing_device_is_one_line():
    import torch

    if torch.cuda.is_available():
        return
    out = subprocess.run([sys.executable, "benchmarks/perf.py", "--device", "cuda", "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.strip() == "error: --device cuda: CUDA is not available here"


def test_gpu_check_smoke_projects_every_stage():
    res = _script("benchmarks/gpu_check.py", "--smoke", "--device", "cpu", "--repeats", "1", "--json")
    assert res["counts"] == {"task1_steps": 39500, "adapter_steps": 94800, "solves_paper": 280,
                             "solves_reused": 100, "classifier_steps": 45000}
    for precision in ("fp32", "bf16"):
        r = res["results"][precision]
        assert r["sampling_nfe"] > 0 and set(r["projection"]) == {"generator_h", "sampling_paper_h",
                                                                 "sampling_reused_h", "classifier_h"}


def test_gpu_check_without_cuda_is_one_line():
    out = subprocess.run([sys.executable, "benchmarks/gpu_check.py"], cwd=ROOT, capture_output=True, text=True)
    import torch

    if not torch.cuda.is_available():
        assert out.returncode == 2 and out.stderr.strip().startswith("error: no CUDA device")


def test_bf16_cell_runs_and_keeps_its_own_stages(tmp_path):
    cfg = config.resolve({"dataset": "synthetic", "split": "2-2", "method": {"name": "funlora"}, "scale": "smoke",
                          "precision": "bf16", "progress": False, "workdir": str(tmp_path)})
    fp32 = {**cfg, "precision": "fp32"}
    assert backbone_key(cfg) != backbone_key(fp32) and evaluation_key(cfg) != evaluation_key(fp32)
    rec = run_cell(cfg, log=lambda *_: None)
    assert rec.config["precision"] == "bf16" and len(rec.accuracy) == 5


def test_synthetic_records_never_reach_a_table(tmp_path):
    from bench.report.records import load

    from .test_report import make_record

    make_record(tmp_path, "table5", "synthetic", "2-2", "funlora", 0, 10.0, 10.0, 10028)
    make_record(tmp_path, "table5", "cifar10", "2-2", "funlora", 0, 80.0, 85.0, 10028)
    loaded = load(tmp_path)
    assert list(loaded.frame["dataset"]) == ["cifar10"]
    assert any("random tensors for timing runs" in p for p in loaded.problems)


def test_gpu_node_check_runs_every_check_on_the_cpu(tmp_path):
    """scripts/gpu-check.sh's driver, with tiny cells on the CPU (Table V at scale=cpu left out: an
    hour here; the smoke sweep and perf.py too: their own tests cover them): a cell killed in its backbone and in an adapter stage resumes to the same record,
    two deterministic runs agree, and check.json / check.md say so, one pass per check."""
    out = tmp_path / "gpu"
    proc = subprocess.run([sys.executable, "benchmarks/gpu_node.py", "--device", "cpu", "--smoke", "--skip",
                           "table5,smoke_sweep,perf",
                           "--out", str(out), "--scratch", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    res = json.loads((out / "check.json").read_text())
    assert res["pass"] and set(res["checks"]) == {"resume", "determinism", "gpu_check"}
    kills = res["checks"]["resume"]["kills"]
    assert kills["backbone"]["killed"] and 0 < kills["backbone"]["at_step"] < 60
    assert kills["adapter_task2"]["killed"] and 0 < kills["adapter_task2"]["at_step"] < 24
    assert res["checks"]["resume"]["differences"] == [] and res["checks"]["determinism"]["differences"] == []
    assert res["checks"]["determinism"]["side_by_side"] is (usable_cpus() > 1)
    md = (out / "check.md").read_text()
    assert md.startswith("# GPU node check: PASS") and "| resume | pass |" in md


def test_gpu_check_script_without_cuda_is_one_line():
    import torch

    if torch.cuda.is_available():
        return
    out = subprocess.run(["bash", "scripts/gpu-check.sh"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.strip().startswith("error: no CUDA device here"), out.stderr
    missing = subprocess.run(["bash", "scripts/gpu-check.sh", "--bundle", "/nonexistent"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "has no wheels/" in missing.stderr


def test_gpu_check_refuses_a_bundle_made_for_another_python(tmp_path):
    """A bundle's compiled wheels install only on its own Python: one error line and exit 2, not pip's
    'not a supported wheel' and exit 1 (which means a failed check); nothing is installed."""
    bundle = tmp_path / "bundle"
    (bundle / "wheels").mkdir(parents=True)
    (bundle / "wheels" / "pyyaml-6.0.4-cp39-cp39-manylinux2014_x86_64.whl").write_bytes(b"not a wheel")
    (bundle / "MANIFEST.txt").write_text("funlora-bench offline bundle for CPython 3.9 (2026-12-01T00:00:00Z)\n")
    out = subprocess.run(["bash", "scripts/gpu-check.sh", "--bundle", str(bundle)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHON": sys.executable})
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "is for CPython 3.9" in out.stderr and "--python %d.%d" % sys.version_info[:2] in out.stderr
    assert not list(bundle.glob("site-*"))
    # A bundle without the manifest (older, or hand-made) is tried; pip's failure is still one line.
    (bundle / "MANIFEST.txt").unlink()
    out = subprocess.run(["bash", "scripts/gpu-check.sh", "--bundle", str(bundle)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "PYTHON": sys.executable})
    assert out.returncode == 2 and out.stderr.startswith("error: installing --bundle"), out.stderr
    assert out.stderr.count("\n") == 1 and not (bundle / f"site-{sys.version_info[0]}.{sys.version_info[1]}"
                                                 / ".installed").exists()
