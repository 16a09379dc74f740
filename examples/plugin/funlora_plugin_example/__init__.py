"""``plugin_example``: a per-class bias on each adapted conv's output channels (feature form).

h_y = conv(x) + delta_y with delta_y in R^{c_out}, zero at initialisation (exact identity).
PPC = sum of c_out over the adapted layers (3,840 on the CIFAR10 U-Net, layers 40-54).
A feature-form method: a mixed batch gathers one delta per sample by label and runs the
layer once. Registered through the entry point in this package's pyproject.toml.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.base import Adapter, AdapterOptions, per_sample_table
from methods.targets import MethodError


@dataclass
class OutputBiasOptions(AdapterOptions):
    """``scale``: a fixed multiplier of the learned bias (1 by default)."""

    scale: float = 1.0

    def validate(self) -> None:
        super().validate()
        if not self.scale > 0:
            raise MethodError(f"method.scale must be positive, got {self.scale!r}")


class OutputBias(Adapter):
    """A learned bias per class and output channel of every adapted Conv2d."""

    title = "Output bias (plugin example)"
    Options = OutputBiasOptions
    form = "feature"

    def new_layer_params(self, key, module):
        return {"delta": torch.zeros(module.out_channels)}

    def feature_forward(self, key, base, x, plan):
        out = base(x)
        delta = per_sample_table(self, plan, key, "delta", torch.zeros(base.out_channels, device=x.device))
        return out + self.options["scale"] * delta.view(*delta.shape, *([1] * (out.dim() - 2)))
