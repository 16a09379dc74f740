"""Adapters defined outside methods/, loaded as ``method=tests.plugins:ClassName`` by the tests."""
from __future__ import annotations

import torch

from methods.base import Adapter


class OutputScale(Adapter):
    """A per-class scale of each adapted conv's output channels (weight form), ones at init."""

    title = "Output scale (test plugin)"

    def new_layer_params(self, key, module):
        return {"s": torch.ones(module.out_channels)}

    def adapted_weight(self, key, weight, params):
        return weight * params["s"].view(-1, *([1] * (weight.dim() - 1)))


class FailsAtTask2(OutputScale):
    """Builds and validates like any method, then fails when the protocol adds task 2's classes."""

    def add_classes(self, classes):
        raise RuntimeError("this adapter fails on purpose at add_classes")


class NotAnAdapter:
    pass


