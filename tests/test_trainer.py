"""Generator training resumes exactly from a mid-training checkpoint."""
import pytest
import torch

from bench.trainer import Interrupted, Schedule, train_flow

from .conftest import randomized_unet


def _run(tmp_path, interrupt_at=None, ckpt_name="ckpt.pt"):
    unet = randomized_unet(image_size=8, in_channels=1, num_classes=4, dropout=0.1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 1, 8, 8, generator=g)
    y = torch.randint(0, 4, (48,), generator=g)
    sched = Schedule(epochs=4, lr=1e-3, batch_size=16, warmup_steps=3, ema_decay=0.9, ema_start_epoch=1,
                     ckpt_every=4)
    res = train_flow(unet, list(unet.parameters()), x, y, sched, seed=3, device=torch.device("cpu"),
                     ckpt=tmp_path / ckpt_name, progress=False, module=unet, interrupt_at=interrupt_at)
    return unet, res


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    ref, res = _run(tmp_path / "a")
    assert res.steps == 12 and res.resumed_from == 0
    with pytest.raises(Interrupted):
        _run(tmp_path / "b", interrupt_at=4)
    # A new process would start from scratch here: other RNG state, fresh module.
    torch.manual_seed(12345)
    resumed, res2 = _run(tmp_path / "b")
    assert res2.resumed_from == 4 and res2.steps == 12
    for (n, p), q in zip(ref.named_parameters(), resumed.parameters()):
        assert torch.equal(p, q), n
    # A finished stage is reused, not retrained.
    again, res3 = _run(tmp_path / "b")
    assert res3.resumed_from == 12
    assert all(torch.equal(p, q) for p, q in zip(ref.parameters(), again.parameters()))


def test_a_resumed_stage_counts_the_seconds_of_the_run_it_resumes(tmp_path):
    """A record's generator seconds are the stage's training time: a stage killed and resumed
    counted only the last run's seconds (600 steps resumed at step 100 said 272 s)."""
    with pytest.raises(Interrupted):
        _run(tmp_path, interrupt_at=4)
    ckpt = tmp_path / "ckpt.pt"
    state = torch.load(ckpt, weights_only=False)
    state["seconds"] = 1000.0        # as if the first run had taken 1000 s to reach step 4
    torch.save(state, ckpt)
    _, res = _run(tmp_path)
    assert res.resumed_from == 4 and res.run_seconds > 0
    assert res.seconds == pytest.approx(1000.0 + res.run_seconds)   # not this run's seconds alone
    _, again = _run(tmp_path)        # the finished stage, reused: the same seconds
    assert again.seconds == res.seconds


def test_schedule_steps():
    assert Schedule(epochs=3, batch_size=10).steps(35) == (3, 9)
    assert Schedule(epochs=3, batch_size=10, max_steps=5).steps(35) == (3, 5)
    assert Schedule(epochs=2, batch_size=64).steps(10) == (1, 2)
