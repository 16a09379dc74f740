"""The paper's comparative PEFT methods, per class (Table V).

- ``scale_shift`` [SSF]: gamma, beta on each adapted conv's input channels (2 c_in per layer);
- ``lora_attention``: LoRA of rank r on qkv (C -> 3C) and proj_out (C -> C) of every
  attention block;
- ``lora_conv_v1``: loralib's Conv2d layout, A (r k, c_in k), B (c_out k, r k),
  delta = (B A) reshaped to (c_out, c_in, k, k) times alpha / r;
- ``lora_conv_v2``: AdAM kernel modulation, W' = W * (1 + reshape(v u^T)) with
  u in R^{c_in k^2}, v in R^{c_out}; v = 0 at init.
The two feature-form methods (scale_shift, lora_attention) gather per-sample vectors
by label and run one batched call per layer; the conv LoRAs group samples by class.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from . import register
from .base import Adapter, AdapterOptions, per_sample_table, positive_int
from .targets import attention_blocks


@dataclass
class LoRAOptions(AdapterOptions):
    """``rank`` r and ``alpha`` (scaling alpha / r; none: 1)."""

    rank: int = 2
    alpha: Optional[float] = None

    def validate(self) -> None:
        super().validate()
        positive_int(self, "rank")


@dataclass
class LoRAConvOptions(LoRAOptions):
    rank: int = 1


@register("scale_shift")
class ScaleShift(Adapter):
    """x' = gamma_y * x + beta_y on the conv input; gamma = 1, beta = 0 at init (exact identity)."""

    title = "Scale and shift (Conv2d)"
    form = "feature"

    def new_layer_params(self, key, module):
        return {"gamma": torch.ones(module.in_channels), "beta": torch.zeros(module.in_channels)}

    def feature_forward(self, key, base, x, plan):
        c = base.in_channels
        g = per_sample_table(self, plan, key, "gamma", torch.ones(c, device=x.device))
        b = per_sample_table(self, plan, key, "beta", torch.zeros(c, device=x.device))
        shape = (x.shape[0], c) + (1,) * (x.dim() - 2)
        return base(x * g.view(shape) + b.view(shape))


class _RankOption(Adapter):
    Options = LoRAOptions
    size_option = "rank"

    @property
    def scaling(self) -> float:
        alpha = self.options["alpha"]
        return 1.0 if alpha is None else alpha / self.options["rank"]


@register("lora_attention")
class LoRAAttention(_RankOption):
    """h = W x + s B_y A_y x on qkv and proj_out of every attention block; B = 0 at init."""

    title = "LoRA attention layers"
    target = "attention"
    form = "feature"

    def select_targets(self, backbone):
        for i, (name, block) in enumerate(attention_blocks(backbone)):
            for part in ("qkv", "proj_out"):
                conv = getattr(block, part)
                yield f"attn{i}_{part}", f"{name}.{part}", conv, {
                    "index": i, "in_channels": conv.in_channels, "out_channels": conv.out_channels,
                    "kernel_size": conv.kernel_size[0]}

    def new_layer_params(self, key, module):
        r = self.options["rank"]
        a = torch.empty(r, module.in_channels)
        nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        return {"A": a, "B": torch.zeros(module.out_channels, r)}

    def feature_forward(self, key, base, x, plan):
        out = base(x)
        r = self.options["rank"]
        a = per_sample_table(self, plan, key, "A", torch.zeros(r, base.in_channels, device=x.device))
        b = per_sample_table(self, plan, key, "B", torch.zeros(base.out_channels, r, device=x.device))
        return out + self.scaling * torch.bmm(b, torch.bmm(a, x))


@register("lora_conv_v1")
class LoRAConvV1(_RankOption):
    """loralib Conv2d: W' = W + s reshape(B A); A kaiming, B zeros; rank 1 by default."""

    title = "LoRA Conv2d v1"
    Options = LoRAConvOptions

    def new_layer_params(self, key, module):
        r, k = self.options["rank"], module.kernel_size[0]
        a = torch.empty(r * k, module.in_channels * k)
        nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        return {"A": a, "B": torch.zeros(module.out_channels * k, r * k)}

    def adapted_weight(self, key, weight, params):
        return weight + self.scaling * (params["B"] @ params["A"]).view(weight.shape)


@register("lora_conv_v2")
class LoRAConvV2(Adapter):
    """AdAM kernel modulation: W' = W * (1 + reshape(v u^T)); v = 0, u ~ N(0, 1e-2) at init."""

    title = "LoRA Conv2d v2"

    def new_layer_params(self, key, module):
        k = module.kernel_size[0]
        return {"u": torch.randn(module.in_channels * k * k) * 1e-2, "v": torch.zeros(module.out_channels)}

    def adapted_weight(self, key, weight, params):
        return weight * (1 + torch.outer(params["v"], params["u"]).view(weight.shape))


__all__ = ["ScaleShift", "LoRAAttention", "LoRAConvV1", "LoRAConvV2"]
