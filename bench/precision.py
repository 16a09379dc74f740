"""What ``precision=bf16`` means, in one place for cells and benchmarks/perf.py.

Forwards run under bfloat16 autocast: convolutions, linear layers and attention of the
U-Net and the classifier compute in bf16 (autocast's own op lists: losses, norms and
softmax stay fp32). Two things stay fp32 in forward and backward:
- every adapter's per-class weight W'_y (FunLoRA's M, vanilla_mul's B @ A, LoHa's Hadamard
  product, ...): built with autocast off (``methods.base.Adapter.class_weight``), so all
  methods are compared at the same precision; only the layer's convolution with W'_y is bf16;
- the backward pass runs outside autocast (``backward``), as torch's AMP recipe does: each
  op's gradient is computed in the dtype its forward used.
"""
from __future__ import annotations

from contextlib import AbstractContextManager

import torch


def autocast(device: torch.device | str, precision: str) -> AbstractContextManager:
    """bf16 autocast of the forwards on ``device`` when ``precision == "bf16"`` (else a no-op)."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def backward(loss: torch.Tensor) -> None:
    """``loss.backward()`` with autocast off, whatever context the caller's forward ran in."""
    with torch.autocast(loss.device.type, enabled=False):
        loss.backward()
