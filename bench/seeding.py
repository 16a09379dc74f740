"""Every random draw of a cell is seeded from (seed, stage, task), so a cell is reproducible.

``stage_seed(seed, "generator", 2)`` is a stable 63-bit integer (SHA-256 of the triple):
the same in every process, independent of what ran before, and different across stages
so that no two stages share a random stream. ``seed_all`` seeds torch (CPU and CUDA),
numpy and Python's ``random`` with it; stages call it before they build or draw anything.
"""
from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import torch


def stage_seed(seed: int, stage: str, task: int = 0) -> int:
    """A stable seed for ``stage`` of task ``task`` of a cell seeded ``seed``."""
    digest = hashlib.sha256(f"{seed}/{stage}/{task}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def seed_all(value: int) -> int:
    """Seed torch, numpy and random with ``value`` (numpy takes its low 32 bits); returns it."""
    torch.manual_seed(value)
    np.random.seed(value % 2**32)
    random.seed(value)
    return value


# The two values cuBLAS documents as deterministic (a workspace of 4096 KiB x 8 or 16 KiB x 8).
DETERMINISTIC_CUBLAS = (":4096:8", ":16:8")


def set_deterministic(on: bool, log=print) -> None:
    """``deterministic=true``: deterministic kernels on GPUs (slower; an error where none exists).
    A ``CUBLAS_WORKSPACE_CONFIG`` already set to a value that is not deterministic is replaced,
    and said (kept, the first matmul on a GPU would raise)."""
    if on:
        old = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
        if old not in DETERMINISTIC_CUBLAS:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = DETERMINISTIC_CUBLAS[0]
            if old is not None:
                log(f"deterministic=true: CUBLAS_WORKSPACE_CONFIG={old!r} is not deterministic; "
                    f"set to {DETERMINISTIC_CUBLAS[0]!r}")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(on)
