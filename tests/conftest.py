"""Shared fixtures: small backbones with non-trivial weights, so identities are real tests."""
from __future__ import annotations

import bench  # noqa: F401 - first: it fixes the numerics mode (portable) before torch loads
import pytest
import torch

from bench.unet import build_unet


def randomized_unet(name: str = "tiny", seed: int = 0, **overrides):
    """A U-Net whose zero-initialised layers are perturbed too (outputs depend on every layer)."""
    torch.manual_seed(seed)
    unet = build_unet(name, **overrides)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return unet.eval()


@pytest.fixture
def tiny_unet():
    return randomized_unet("tiny", image_size=8, in_channels=1, num_classes=6)


@pytest.fixture
def small_unet():
    return randomized_unet("small", image_size=16, in_channels=1, num_classes=6, attention_resolutions="8")
