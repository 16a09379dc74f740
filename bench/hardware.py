"""What a cell ran on, and how many CPUs this process may use.

``describe(device)`` names the processor (or GPU) for the record, so a published number
says where it was computed: per-core speed differs threefold between machines of one
kind, so a time or a kernel-dependent last bit means little without it.
``usable_cpus()`` counts the CPUs this process may really use (its affinity mask, a Slurm
allocation), not the machine's, so local jobs and threads do not oversubscribe a shared node.
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Optional

import torch


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The processor's model name and widest vector extension, e.g. ``AMD EPYC (AVX2)``."""
    name, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not name:
                    name = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
                if name and flags:
                    break
    except OSError:
        pass
    if not name:
        import platform

        name = platform.processor() or platform.machine() or "unknown CPU"
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else ""
    return f"{name} ({isa})" if isa else name


def describe(device: torch.device | str) -> str:
    """``NVIDIA H200`` for a CUDA device, the CPU model with ``N cores`` otherwise."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {usable_cpus()} cores"


def usable_cpus(env: Optional[dict] = None) -> int:
    """CPUs this process may use: Slurm's ``SLURM_CPUS_PER_TASK`` where set, else the
    affinity mask (cgroup cpusets and ``taskset`` show there), else ``os.cpu_count()``."""
    env = os.environ if env is None else env
    slurm = env.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
