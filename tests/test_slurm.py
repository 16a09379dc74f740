"""bench.sweep on a real single-node Slurm cluster (slurm/cluster-up.sh; CI starts it).

Skipped when no cluster answers, unless FUNLORA_REQUIRE_SLURM=1 (set by .ci/run), where
a missing cluster is a failure.
"""
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from bench.record import Record

from bench import config
from bench.sweep import main as sweep_main


def _cluster_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return out.returncode == 0 and any(s in out.stdout for s in ("idle", "mix", "alloc"))


if not _cluster_up():
    if os.environ.get("FUNLORA_REQUIRE_SLURM") == "1":
        pytest.fail("FUNLORA_REQUIRE_SLURM=1 but no Slurm cluster answers (run slurm/cluster-up.sh)",
                    pytrace=False)
    pytest.skip("no Slurm cluster (run slurm/cluster-up.sh)", allow_module_level=True)


def test_smoke_grid_on_slurm_gpu_nodes(tmp_path, capsys):
    """The GPU profile's gpus_per_node reaches every job: its sbatch script asks for the GPU and
    Slurm allocates it (the test node declares one as a generic resource, no device behind it).
    One method (its two solver cells, one backbone job) keeps it short; the local sweep tests
    run the whole grid."""
    store = tmp_path / "store"
    assert sweep_main(["grid=smoke", "executor=slurm", "slurm=local-gpu", "method=vanilla_mul",
                       f"store={store}"]) == 0
    recs = sorted((store / "records" / "smoke").glob("*.json"))
    assert len(recs) == 2
    for path in recs:
        rec = Record.load(path)
        assert rec.label == path.stem and len(rec.accuracy) == 4 and rec.nfe[1].calls >= 1
    assert len(list((store / "artifacts" / "backbones").glob("*.pt"))) == 1
    logs = list((store / "logs" / "smoke").rglob("*_log.err"))
    assert logs, "submitit wrote no Slurm logs"
    scripts = list((store / "logs" / "smoke").rglob("*_submission.sh"))
    assert scripts and all("#SBATCH --gpus-per-node=1" in p.read_text() for p in scripts)
    ids = {p.name.split("_")[0] for p in logs}
    tres = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,AllocTRES", "-j", ",".join(ids)],
                          capture_output=True, text=True, timeout=30).stdout.splitlines()
    assert tres and all("gres/gpu=1" in line for line in tres), tres


def test_failing_cell_on_slurm(tmp_path, capsys):
    grid = tmp_path / "broken.yaml"
    grid.write_text("axes:\n  data: [{dataset: digits, split: 5-5}]\n  method: ['tests.plugins:FailsAtTask2']\n"
                    "fixed: {scale: smoke}\n")
    assert sweep_main([f"grid={grid}", "executor=slurm", "slurm=local", f"store={tmp_path / 's'}"]) == 1
    err = capsys.readouterr().err
    assert "1 failed" in err and "RuntimeError: this adapter fails on purpose" in err
    assert Path(err.split("log: ")[1].split()[0]).exists()


def test_preempted_training_resumes_from_its_checkpoint(tmp_path):
    import submitit

    from bench.jobs import StageJob
    from bench.stages import StagePaths

    cfg = config.resolve({"dataset": "digits", "split": "5-5", "scale": "smoke", "progress": False,
                          "generator": {"task1": {"max_steps": 60, "epochs": 60, "ckpt_every": 10}}})
    artifacts = tmp_path / "artifacts"
    ckpt = StagePaths(cfg, artifacts).backbone
    ex = submitit.AutoExecutor(folder=str(tmp_path / "logs"), cluster="slurm")
    ex.update_parameters(timeout_min=10, slurm_partition="debug", cpus_per_task=1)
    job = ex.submit(StageJob(), "backbone", cfg, str(artifacts))
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.5)
    assert ckpt.exists(), "no checkpoint was written"
    time.sleep(1.0)
    job._interrupt()  # SIGUSR2, as Slurm sends before preemption / time limit
    result = job.result()
    assert result["resumed_from"] > 0, result
    assert result["steps"] == 60


def test_device_cuda_submits_from_a_login_node_without_gpu_and_the_job_says_why_it_failed(tmp_path, capsys):
    """The GPU is on the job's node, never on the login node: device=cuda with a GPU profile is
    submitted from this machine (no CUDA here), and a job that finds no CUDA on its node fails
    with one clear line in the sweep's summary."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: its jobs would run")
    code = sweep_main(["grid=smoke", "executor=slurm", "slurm=local-gpu", "device=cuda", "method=vanilla_mul",
                       f"store={tmp_path / 's'}"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "failed:" in err and "device=cuda was asked for but CUDA is not available on" in err, err
    assert "Traceback" not in err
