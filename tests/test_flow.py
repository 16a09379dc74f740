"""Flow matching loss and the NFE-counting sampler."""
import pytest
import torch

from bench.flow import SolverConfig, cfm_loss, expected_fixed_nfe, sample


class Field:
    def __init__(self):
        self.calls = 0

    def __call__(self, t, x, y):
        self.calls += 1
        return torch.sin(3 * t)[:, None] * x + y[:, None].float()


@pytest.mark.parametrize("name,steps,per_step", [("rk4", 7, 4), ("euler", 5, 1), ("midpoint", 3, 2), ("rk4", 3, 4)])
def test_fixed_step_nfe(name, steps, per_step):
    f = Field()
    solver = SolverConfig(name=name, steps=steps)
    _, nfe = sample(f, torch.zeros(4, dtype=torch.long), (2,), solver)
    assert nfe == per_step * steps == f.calls == expected_fixed_nfe(solver)


def test_dopri5_nfe_is_counted_not_inferred():
    f = Field()
    _, nfe = sample(f, torch.ones(4, dtype=torch.long), (2,), SolverConfig(name="dopri5", atol=1e-6, rtol=1e-6))
    assert nfe == f.calls
    assert nfe > 8 and (nfe - 2) % 6 == 0  # initial-step probes + 6 per (accepted or rejected) step
    _, loose = sample(Field(), torch.ones(4, dtype=torch.long), (2,), SolverConfig(name="dopri5", atol=1e-2, rtol=1e-2))
    assert loose < nfe


def test_sampler_integrates_from_noise_to_data():
    # v = x1 - x0 exactly for the straight path to a constant target: x(1) = target.
    target = torch.full((2,), 3.0)

    def v(t, x, y):
        return (target - x) / (1 - t[:, None]).clamp_min(1e-3)

    x, _ = sample(v, torch.zeros(5, dtype=torch.long), (2,), SolverConfig(name="euler", steps=10))
    assert torch.allclose(x, target.expand(5, 2), atol=1e-4)


def test_cfm_loss_matches_the_formula():
    x1 = torch.randn(6, 1, 4, 4)
    y = torch.zeros(6, dtype=torch.long)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    model = lambda t, xt, y: xt * t.view(-1, 1, 1, 1)  # noqa: E731
    loss = cfm_loss(model, x1, y, generator=g1)
    x0 = torch.randn(x1.shape, generator=g2)
    t = torch.rand(6, generator=g2).view(-1, 1, 1, 1)
    xt = t * x1 + (1 - t) * x0
    expected = (xt * t - (x1 - x0)).pow(2).mean()
    assert torch.allclose(loss, expected)
