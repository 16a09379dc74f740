"""Continual-learning metrics (Eq. 22-23) and NFE summaries."""
from __future__ import annotations

import math


def average_accuracies(acc: list[list[float | None]]) -> tuple[float, float, list[float]]:
    """(LA, AIA, [Abar_t]) from the accuracy matrix a[t][i] (None above the diagonal).

    Abar_t = (1/t) sum_{i<=t} a_{t,i}; LA = Abar_T; AIA = (1/T) sum_t Abar_t.
    """
    if not acc:
        raise ValueError("empty accuracy matrix")
    abar = []
    for t, row in enumerate(acc, start=1):
        vals = row[:t]
        if any(v is None for v in vals):
            raise ValueError(f"accuracy row {t} is missing entries on or below the diagonal")
        abar.append(sum(vals) / t)
    return abar[-1], sum(abar) / len(abar), abar


def forgetting(acc: list[list[float | None]]) -> float:
    """Mean over tasks i < T of the largest drop of a_{t,i} from its best earlier value."""
    T = len(acc)
    drops = []
    for i in range(T - 1):
        col = [acc[t][i] for t in range(i, T)]
        drops.append(max(col[:-1]) - col[-1])
    return sum(drops) / len(drops) if drops else math.nan


def summarize_nfe(per_call: list[int], solver: str) -> dict:
    """NFE of one task's sampling calls: total, calls, mean / min / max per call."""
    if not per_call:
        return {"solver": solver, "calls": 0, "total": 0, "per_call_mean": None, "per_call_min": None,
                "per_call_max": None}
    return {"solver": solver, "calls": len(per_call), "total": sum(per_call),
            "per_call_mean": sum(per_call) / len(per_call), "per_call_min": min(per_call),
            "per_call_max": max(per_call)}
