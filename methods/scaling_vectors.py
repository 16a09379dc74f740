"""Per-class scaling-vector methods that LyCORIS lacks, written from their papers.

- ``ia3`` ((IA)^3, Liu et al. 2022): a learned scale l_y per output channel,
  W'_y = diag(l_y) W; l = 1 at init. PPC: c_out per layer.
- ``vera`` (VeRA, Kopiczko et al. 2024): frozen random matrices A (r, c_in k k) and
  B (c_out, r), ONE pair per layer shared by every class, drawn from a seeded generator
  (``seed``), and per-class vectors d_y (r) and b_y (c_out):
  W'_y = W + reshape(diag(b_y) B diag(d_y) A). b = 0, d = ``d_init`` at init. PPC:
  r + c_out per layer; the shared matrices are reported apart (``shared_params``) and
  rebuilt from the seed on load, like the paper's.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
from torch import nn

from . import register
from .base import Adapter, AdapterOptions, positive_int


@register("ia3")
class IA3(Adapter):
    """W'_y = l_y * W (rows scaled), l = 1 at init; a fixed size (no budget option)."""

    title = "IA3"

    def new_layer_params(self, key, module):
        return {"scale": torch.ones(module.out_channels)}

    def adapted_weight(self, key, weight, params):
        return weight * params["scale"].view(-1, *([1] * (weight.dim() - 1)))


@dataclass
class VeRAOptions(AdapterOptions):
    """``rank`` r of the shared random matrices, ``d_init`` the initial d, ``seed`` of the
    shared matrices (the same seed gives the same matrices in every process)."""

    rank: int = 256
    d_init: float = 0.1
    seed: int = 0

    def validate(self) -> None:
        super().validate()
        positive_int(self, "rank")


def _layer_generator(seed: int, key: str) -> torch.Generator:
    digest = hashlib.sha256(f"vera/{seed}/{key}".encode()).digest()
    return torch.Generator(device="cpu").manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _kaiming(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Kaiming-uniform (a = sqrt(5), as nn.Linear) drawn from ``generator`` on the CPU."""
    bound = 1.0 / math.sqrt(shape[1])
    return (torch.rand(shape, generator=generator, device="cpu") * 2 - 1) * bound


@register("vera")
class VeRA(Adapter):
    """W'_y = W + reshape((b_y B) (d_y A)); A, B shared and frozen; b = 0 at init."""

    title = "VeRA"
    Options = VeRAOptions
    size_option = "rank"

    def size_candidates(self):
        return list(range(1, 4097))

    def attach_shared(self) -> None:
        self.shared = nn.Module()
        r = self.options["rank"]
        for key in self.layer_info:
            base = self._layer(key).base
            fan_in = base.weight[0].numel()
            g = _layer_generator(self.options["seed"], key)
            a = _kaiming((r, fan_in), g)
            b = _kaiming((base.out_channels, r), g)
            device = base.weight.device
            self.shared.register_buffer(f"{key}_A", a.to(device))
            self.shared.register_buffer(f"{key}_B", b.to(device))

    def shared_params(self) -> int:
        return sum(t.numel() for t in self.shared.buffers()) if hasattr(self, "shared") else 0

    def new_layer_params(self, key, module):
        return {"d": torch.full((self.options["rank"],), float(self.options["d_init"])),
                "b": torch.zeros(module.out_channels)}

    def adapted_weight(self, key, weight, params):
        a = getattr(self.shared, f"{key}_A").to(weight.device)
        b = getattr(self.shared, f"{key}_B").to(weight.device)
        dw = params["b"][:, None] * (b @ (params["d"][:, None] * a))
        return weight + dw.view(weight.shape)


__all__ = ["IA3", "VeRA"]
