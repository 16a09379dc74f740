"""Guards, on the CPU, for the three ways the suite failed on its first GPU node.

1. The flow-matching loss drew its times with a CPU generator on the GPU (CUDA refuses a
   generator of another device; the CPU accepts anything, so the check is made explicit here
   and run on the meta device, which stands in for an accelerator).
2. Local sweep jobs were given ``CUDA_VISIBLE_DEVICES=""`` by submitit, so ``device=cuda``
   failed in every job.
3. A checkpoint was loaded with ``map_location=device``: its random states (CPU ByteTensors)
   moved to the GPU and ``set_state`` refused them, so no GPU job could resume or reuse a
   finished backbone (the meta device fails the same way).
"""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import local
from bench.flow import cfm_loss
from bench.trainer import Schedule, train_flow
from bench.unet import build_unet

ROOT = Path(__file__).resolve().parents[1]
RANDOM_OPS = ("rand", "randn", "randint", "randperm")


@pytest.fixture
def generator_discipline(monkeypatch):
    """Every torch.rand/randn/randint/randperm with a generator must draw on that generator's
    device, as CUDA demands (the CPU and meta devices would let a mismatch pass)."""
    seen = []

    def checked(op):
        def draw(*args, generator=None, device=None, **kwargs):
            if generator is not None:
                where = torch.device(device if device is not None else "cpu")
                seen.append((op.__name__, where.type, generator.device.type))
                assert where.type == generator.device.type, (
                    f"torch.{op.__name__} draws on {where} with a generator of {generator.device}")
            return op(*args, generator=generator, device=device, **kwargs)
        draw.__name__ = op.__name__
        return draw

    for name in RANDOM_OPS:
        monkeypatch.setattr(torch, name, checked(getattr(torch, name)))
    return seen


def test_cfm_loss_draws_on_the_generators_device(generator_discipline):
    """x_1 on an accelerator (meta here), the trainer's CPU generator: noise and times are drawn
    on the CPU and moved, so the numbers do not depend on the device."""
    x1 = torch.zeros(4, 1, 8, 8, device="meta")
    y = torch.zeros(4, dtype=torch.long, device="meta")
    loss = cfm_loss(lambda t, xt, yy: xt, x1, y, generator=torch.Generator().manual_seed(0))
    assert loss.device.type == "meta"
    assert {(op, where) for op, where, _ in generator_discipline} == {("randn", "cpu"), ("rand", "cpu")}


def test_cfm_loss_draws_the_same_numbers_whatever_the_device():
    x1 = torch.randn(6, 1, 4, 4)
    field = lambda t, xt, y: xt * t.view(-1, 1, 1, 1)  # noqa: E731 - a vector field that uses t and x_t
    a = cfm_loss(field, x1, torch.zeros(6), generator=torch.Generator().manual_seed(3))
    b = cfm_loss(field, x1.double(), torch.zeros(6), generator=torch.Generator().manual_seed(3))
    assert torch.allclose(a.double(), b, rtol=1e-6)


def _backbone(device: str = "cpu"):
    with torch.device(device):
        return build_unet("tiny", image_size=8, in_channels=1, num_classes=4, dropout=0.1)


def _train(ckpt, device="cpu", interrupt_at=None):
    unet = _backbone(device)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 4, (32,), generator=g)
    sched = Schedule(epochs=4, batch_size=16, warmup_steps=1, ckpt_every=2)
    return unet, train_flow(unet, list(unet.parameters()), x, y, sched, seed=0, device=torch.device(device),
                            ckpt=ckpt, progress=False, interrupt_at=interrupt_at)


def test_a_finished_checkpoint_is_reused_on_another_device(tmp_path):
    """A backbone trained on one device is reused on another (the meta device stands in for the
    GPU: a random state mapped onto it is refused by set_state, as on CUDA)."""
    ckpt = tmp_path / "backbone.pt"
    _, trained = _train(ckpt)
    unet, reused = _train(ckpt, device="meta")
    assert not reused.trained and reused.steps == trained.steps == 8
    assert all(p.device.type == "meta" for p in unet.parameters())


def test_a_mid_training_checkpoint_resumes_on_another_device(tmp_path, monkeypatch):
    """A stage preempted on one device resumes on another: states restored, training goes on
    from the checkpoint's step (stopped at its first loss: the meta device computes no numbers)."""
    import bench.trainer as trainer

    ckpt = tmp_path / "stage.pt"
    with pytest.raises(trainer.Interrupted):
        _train(ckpt, interrupt_at=2)

    class ReachedTraining(Exception):
        pass

    def first_loss(model, xb, yb, generator=None):  # noqa: ARG001 - cfm_loss's signature
        assert xb.device.type == "meta" and generator.device.type == "cpu"
        raise ReachedTraining(torch.load(ckpt, weights_only=True)["step"])

    monkeypatch.setattr(trainer, "cfm_loss", first_loss)
    with pytest.raises(ReachedTraining) as info:
        _train(ckpt, device="meta")
    assert info.value.args == (2,)


# ---- local jobs see the GPUs ------------------------------------------------------------------
@pytest.fixture(params=["sh", "bash"])
def shell(request, monkeypatch):
    """submitit's local jobs as started where /bin/sh is dash (Debian) and where it is bash
    (RHEL, Rocky, Fedora: bash execs the last command of ``-c`` in its own place)."""
    if request.param == "bash":
        import submitit.local.local as sublocal

        real = sublocal.subprocess.Popen

        def popen(cmd, *args, shell=False, **kwargs):
            if shell:
                kwargs["executable"] = "/bin/bash"
            return real(cmd, *args, shell=shell, **kwargs)

        monkeypatch.setattr(sublocal.subprocess, "Popen", popen)
    return request.param


def test_local_jobs_see_their_gpu_and_are_spread_over_the_gpus(tmp_path, monkeypatch, shell):
    """Through submitit's real local executor and the real StageJob, whatever /bin/sh is: each
    job's CUDA_VISIBLE_DEVICES is the GPU it was given (submitit alone gives ''), two jobs at once
    go to two GPUs, the third to the freed one."""
    import bench.queue as queue
    import bench.sweep as sweep

    monkeypatch.setattr(queue, "LIVE_JOBS", [])
    ex = sweep.make_executor("local", tmp_path / "logs", {}, "cells", 5)
    items = [queue.Item("environment", {"name": n}) for n in ("a", "b", "c")]
    out = queue.dispatch(ex, items, str(tmp_path), 2, "test", slurm=False, gpus=["3", "GPU-uuid-1"])
    assert all(r[3] is None for r in out), [str(r[3])[-500:] for r in out]
    seen = {r[2]["payload"]["name"]: r[2]["CUDA_VISIBLE_DEVICES"] for r in out}
    assert seen["a"] == "3" and seen["b"] == "GPU-uuid-1" and seen["c"] in ("3", "GPU-uuid-1")
    assert not queue.LIVE_JOBS   # finished jobs are let go (none left for the interpreter's exit)


def test_local_plan_on_a_gpu_machine():
    cpu_cells = [{"device": "auto", "scale": "cpu"}] * 9
    plan = local.plan_local("auto", cpu_cells, gpus=["0", "1"], cores=16)
    assert plan.jobs == 2 * local.PER_GPU_SMALL and plan.gpus == ["0", "1"] and "per GPU" in plan.note
    assert local.plan_local("auto", cpu_cells, gpus=["0", "1"], cores=4).jobs == 4          # one per core at most
    paper = local.plan_local("auto", cpu_cells + [{"device": "cuda", "scale": "paper"}], gpus=["0"], cores=16)
    assert paper.jobs == 1                                                                  # a paper cell fills a GPU
    assert local.plan_local(3, cpu_cells, gpus=["0", "1"], cores=16).jobs == 3
    assert local.plan_local("auto", [{"device": "cuda:1", "scale": "cpu"}], gpus=["0", "1"]).gpus == ["0,1"]
    on_cpu = local.plan_local("auto", [{"device": "cpu", "scale": "cpu"}], gpus=["0"], cores=2)
    assert on_cpu.jobs == 2 and on_cpu.gpus == []
    assert local.plan_local("auto", cpu_cells, gpus=[], cores=2).gpus == []                  # a CPU machine


def test_least_loaded_gpu():
    assert local.least_loaded(["0", "1"], []) == "0"
    assert local.least_loaded(["0", "1"], ["0"]) == "1"
    assert local.least_loaded(["0", "1"], ["0", "1", "1"]) == "0"


def test_a_sweep_with_a_failed_job_exits_without_a_traceback(tmp_path):
    """A local sweep whose job fails ends with its summary, not with submitit's LocalJob.__del__
    tracebacks at interpreter exit (a job still referenced from a module global)."""
    grid = tmp_path / "broken.yaml"
    grid.write_text("axes:\n  data: [{dataset: digits, split: 5-5}]\n  method: ['tests.plugins:FailsAtTask2']\n"
                    "fixed: {scale: smoke, sample_grid: 0}\n")
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    res = subprocess.run([sys.executable, "-m", "bench.sweep", f"grid={grid}", f"store={tmp_path / 's'}", "jobs=1"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "1 failed" in res.stderr
    assert "Exception ignored" not in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]


def test_the_classifier_has_no_op_that_deterministic_cuda_refuses():
    """AdaptiveAvgPool2d's backward has no deterministic CUDA kernel: with deterministic=true a GPU
    run failed at the first classifier step. Its replacement is the same to the bit here."""
    from bench.classifier import GlobalAvgPool, build_resnet18

    for width in (16, 64):
        net = build_resnet18(1, 10, width)
        assert not any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in net.modules())
    x = torch.randn(9, 64, 4, 4, requires_grad=True)
    ref = torch.nn.functional.adaptive_avg_pool2d(x, 1)
    got = GlobalAvgPool()(x)
    assert torch.equal(ref, got)
    g = torch.randn_like(ref)
    assert torch.equal(torch.autograd.grad(ref, x, g)[0], torch.autograd.grad(got, x, g)[0])


def test_device_cuda_on_slurm_needs_a_profile_that_asks_for_gpus(tmp_path, capsys):
    """Refused before anything is submitted (and before Slurm is asked anything)."""
    from bench.sweep import main as sweep_main

    store = tmp_path / "store"
    assert sweep_main(["grid=smoke", "executor=slurm", "slurm=local", "device=cuda", f"store={store}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: device=cuda with executor=slurm needs a profile that asks for GPUs"), err
    assert "\n" not in err and not store.exists()


def test_threads_and_local_jobs_come_from_the_cpus_this_process_may_use(monkeypatch):
    from bench import hardware

    assert hardware.usable_cpus({"SLURM_CPUS_PER_TASK": "3"}) == 3
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: {0, 5})
    assert hardware.usable_cpus({}) == 2
    monkeypatch.setattr(local, "usable_cpus", lambda: 2)
    monkeypatch.setattr(local.os, "cpu_count", lambda: 64)   # the node's, not this process's
    assert local.plan_local("auto", [{"device": "cpu", "scale": "cpu"}] * 9, gpus=[]).jobs == 2
    assert local.threads_for("local", 1) == 2 and local.threads_for("local", 2) == 1


def test_deterministic_replaces_a_cublas_workspace_that_is_not_deterministic(monkeypatch):
    from bench import seeding

    said = []
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":0:0")
    try:
        seeding.set_deterministic(True, log=said.append)
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert said and "':0:0' is not deterministic" in said[0]
        said.clear()
        monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
        seeding.set_deterministic(True, log=said.append)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8" and not said
    finally:
        seeding.set_deterministic(False)
