"""Vanilla adapters of the paper: conditioning only, LoRA add (Eq. 3), mul (Eq. 4-7), mul-add.

All act per class on Conv2d weights W (c_out, c_in, k, k) with a c_out x c_in matrix
broadcast over the k x k kernel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from . import register
from .base import Adapter, AdapterOptions, conv_with_weight, per_sample_table, positive_int
from .targets import MethodError


@dataclass
class RankOptions(AdapterOptions):
    """``rank`` r of the factors B (c_out x r) and A (r x c_in)."""

    rank: int = 1

    def validate(self) -> None:
        super().validate()
        positive_int(self, "rank")


@dataclass
class MulOptions(RankOptions):
    """``form``: ``weight`` (W * B A) or ``feature`` (the same function as feature modulation)."""

    form: str = "weight"

    def validate(self) -> None:
        super().validate()
        if self.form not in ("weight", "feature"):
            raise MethodError(f"method.form must be weight or feature, got {self.form!r}")
        if self.form == "feature" and self.rank != 1:
            raise MethodError("method.form=feature needs method.rank=1")


@register("conditioning_only")
class ConditioningOnly(Adapter):
    """Frozen backbone; only the new classes' embedding rows are trained (PPC 0)."""

    title = "Vanilla conditioning only"
    target = "none"


class _LowRank(Adapter):
    """Shared option handling for the B (c_out x r) A (r x c_in) adapters."""

    Options = RankOptions
    size_option = "rank"

    def _mul_init(self, module: nn.Module) -> dict[str, torch.Tensor]:
        r = self.options["rank"]
        # B A = 1 exactly for r = 1 (the paper); for r > 1, B = 1 and A = 1/r (near identity).
        return {"B": torch.ones(module.out_channels, r), "A": torch.full((r, module.in_channels), 1.0 / r)}

    def _add_init(self, module: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
        r = self.options["rank"]
        b = torch.empty(module.out_channels, r)
        nn.init.kaiming_uniform_(b, a=math.sqrt(5))
        return {prefix + "B": b, prefix + "A": torch.zeros(r, module.in_channels)}


@register("vanilla_mul")
class VanillaMul(_LowRank):
    """W'_y = W * (B_y A_y), all-ones init (identity); rank 1 in the paper.

    ``form=feature`` computes the same function as feature modulation (rank 1 only):
    conv(x, W * b a^T) = b * conv(a * x, W), with per-sample a, b gathered by label, so a
    mixed batch needs one convolution and no weight gradient. It is not bit-identical to
    the weight form (a separate bias add), so the exact-identity guarantee at init holds
    for the default ``form=weight`` and to float rounding (~1e-7 relative) for ``feature``.
    """

    title = "Vanilla mul"
    Options = MulOptions

    def new_layer_params(self, key, module):
        return self._mul_init(module)

    def uses_feature_form(self):
        return self.options["form"] == "feature"

    def feature_forward(self, key, base, x, plan):
        a = per_sample_table(self, plan, key, "A", torch.ones(1, base.in_channels, device=x.device))[:, 0]
        b = per_sample_table(self, plan, key, "B", torch.ones(base.out_channels, 1, device=x.device))[:, :, 0]
        h = conv_with_weight(base, x * a[:, :, None, None], base.weight, bias=False)
        h = h * b[:, :, None, None]
        return h + base.bias[:, None, None] if base.bias is not None else h

    def adapted_weight(self, key, weight, params):
        m = params["B"] @ params["A"]
        return weight * m.view(*m.shape, *([1] * (weight.dim() - 2)))


@register("vanilla_add")
class VanillaAdd(_LowRank):
    """LoRA-style W'_y = W + B_y A_y broadcast over the kernel; B kaiming, A zeros."""

    title = "Vanilla add"

    def new_layer_params(self, key, module):
        return self._add_init(module)

    def adapted_weight(self, key, weight, params):
        m = params["B"] @ params["A"]
        return weight + m.view(*m.shape, *([1] * (weight.dim() - 2)))


@register("mul_add")
class MulAdd(_LowRank):
    """W'_y = W * (B A) + B' A' (Table III): ones init for the product, zero-init additive part."""

    title = "Mul-add"

    def new_layer_params(self, key, module):
        return {**self._mul_init(module), **self._add_init(module, prefix="add_")}

    def adapted_weight(self, key, weight, params):
        m = params["B"] @ params["A"]
        d = params["add_B"] @ params["add_A"]
        shape = (*m.shape, *([1] * (weight.dim() - 2)))
        return weight * m.view(shape) + d.view(shape)
