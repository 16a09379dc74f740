"""Flow matching (Eq. 1-2): the conditional OT loss and an ODE sampler that counts NFE.

x_t = t x_1 + (1 - t) x_0 with x_0 ~ N(0, I) noise and x_1 data (sigma_min = 0 by
default); the target velocity is x_1 - x_0. Sampling integrates dx/dt = v(t, x, y)
from t = 0 (noise) to t = 1 (data) with torchdiffeq; NFE is counted by a wrapper
around the vector field, never inferred from the solver's settings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torchdiffeq import odeint

VectorField = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def cfm_loss(model: VectorField, x1: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None,
             sigma_min: float = 0.0) -> torch.Tensor:
    """|| v(t, x_t, y) - (x_1 - x_0) ||^2 averaged over the batch (Eq. 2).

    Noise and times are drawn on the generator's device (the trainer's is a CPU generator,
    so a run draws the same numbers on any device), then moved to x_1's device."""
    draw = x1.device if generator is None else generator.device
    x0 = torch.randn(x1.shape, generator=generator, device=draw).to(x1.device)
    t = torch.rand(x1.shape[0], generator=generator, device=draw).to(x1.device)
    tb = t.view(-1, *([1] * (x1.dim() - 1)))
    xt = tb * x1 + (1 - tb) * x0
    if sigma_min:
        xt = xt + sigma_min * torch.randn_like(x1)
    return (model(t, xt, y) - (x1 - x0)).pow(2).mean()


@dataclass
class SolverConfig:
    """torchdiffeq method; ``steps`` for the fixed-grid ones, atol/rtol for dopri5."""

    name: str = "dopri5"
    atol: float = 1e-4
    rtol: float = 1e-4
    steps: int = 100

    @classmethod
    def from_dict(cls, d: dict) -> "SolverConfig":
        return cls(**{k: d[k] for k in ("name", "atol", "rtol", "steps") if k in d})


class CountingField(torch.nn.Module):
    """dx/dt = v(t, x, y) for fixed labels y; counts every call (the NFE)."""

    def __init__(self, model: VectorField, y: torch.Tensor):
        super().__init__()
        self.model, self.y, self.nfe = model, y, 0

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return self.model(t.expand(x.shape[0]), x, self.y)


@torch.no_grad()
def sample(model: VectorField, y: torch.Tensor, shape: tuple[int, ...], solver: SolverConfig,
           generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> tuple[torch.Tensor, int]:
    """Samples x(1) for labels y from x(0) ~ N(0, I), and the NFE really used."""
    x0 = torch.randn((y.shape[0], *shape), generator=generator).to(device)
    field = CountingField(model, y.to(device))
    if solver.name == "dopri5":
        t = torch.tensor([0.0, 1.0], device=device)
        xs = odeint(field, x0, t, method="dopri5", atol=solver.atol, rtol=solver.rtol)
    else:
        # The grid is given explicitly: torchdiffeq's step_size grid can add a step when
        # 1/step_size is not exact in floating point.
        t = torch.linspace(0.0, 1.0, solver.steps + 1, device=device)
        xs = odeint(field, x0, t, method=solver.name)
    return xs[-1], field.nfe


def expected_fixed_nfe(solver: SolverConfig) -> int | None:
    """Evaluations per sampling call of a fixed-grid solver (None for adaptive ones)."""
    per_step = {"euler": 1, "midpoint": 2, "rk4": 4}.get(solver.name)
    return None if per_step is None else per_step * solver.steps
