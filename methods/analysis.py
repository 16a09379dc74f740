"""Analyses of trained adapters as tidy records (one dict per row), for the report's figures.

- ``layer_importance``: I_{l,y} = mean|vec(B_{l,y}) - 1| + mean|vec(A_{l,y}) - 1| (Eq. 20),
  the mean absolute distance of the rank-1 factors from their all-ones init, and
  ``importance_per_layer``: I_l = mean over classes with its spread (Eq. 21, Figure 3);
- ``modulation_rank``: rank of M_y per layer and class (Figure 4);
- ``function_parameters``: learned gamma and omega / p per layer and class (Figure 5).
"""
from __future__ import annotations

import statistics

import torch

from .base import Adapter
from .funlora import FunLoRA


def _rows(adapter: Adapter):
    for cls, params in sorted(adapter.class_params_items()):
        for key, info in adapter.layer_info.items():
            yield cls, key, info, params.layers[key]


def layer_importance(adapter: Adapter) -> list[dict]:
    """I_{l,y} for every adapted layer l and class y (methods with B and A factors)."""
    out = []
    for cls, key, info, p in _rows(adapter):
        if "B" in p and "A" in p:
            value = (p["B"].detach() - 1).abs().mean().item() + (p["A"].detach() - 1).abs().mean().item()
            out.append({"layer": info["index"], "name": info["name"], "class": cls, "importance": value})
    return out


def importance_per_layer(adapter: Adapter) -> list[dict]:
    """I_l = mean over classes of I_{l,y}, with its standard deviation, min and max."""
    by_layer: dict[int, list[float]] = {}
    for row in layer_importance(adapter):
        by_layer.setdefault(row["layer"], []).append(row["importance"])
    return [{"layer": layer, "importance": statistics.fmean(v), "std": statistics.pstdev(v),
             "min": min(v), "max": max(v), "classes": len(v)} for layer, v in sorted(by_layer.items())]


def modulation(adapter: Adapter, cls: int, key: str) -> torch.Tensor | None:
    """M_y (c_out x c_in) of a multiplicative adapter in float64, or None where the method has none.

    Float64 from the float32 parameters: a rank-1 product formed in float32 carries rounding
    noise that a float64 SVD would count as full rank.
    """
    p = {k: v.detach().double() for k, v in adapter.class_params[str(cls)].layers[key].items()}
    info = adapter.layer_info[key]
    if isinstance(adapter, FunLoRA):
        return adapter.modulation(p, info["out_channels"], info["in_channels"], kernel="autograd")
    if "B" in p and "A" in p and adapter.name in ("vanilla_mul", "mul_add"):
        return p["B"] @ p["A"]
    return None


def modulation_rank(adapter: Adapter, rtol: float = 1e-6) -> list[dict]:
    """Numerical rank of M_y per layer and class: singular values above rtol * the largest."""
    out = []
    for cls, key, info, _ in _rows(adapter):
        m = modulation(adapter, cls, key)
        if m is not None:
            rank = torch.linalg.matrix_rank(m, rtol=rtol).item()
            out.append({"layer": info["index"], "name": info["name"], "class": cls, "rank": rank,
                        "function": adapter.options.get("function", adapter.name),
                        "max_rank": min(m.shape)})
    return out


def function_parameters(adapter: Adapter) -> list[dict]:
    """gamma_j and omega_j / p_j per layer and class (j = 1..K), one row per j; FunLoRA only.

    Scale-and-shift also names its per-channel scale gamma, but that is no rank-raising
    function's parameter: written out per channel it made the record 1.3 MB, for no figure.
    """
    if not isinstance(adapter, FunLoRA):
        return []
    out = []
    for cls, key, info, p in _rows(adapter):
        K = p["gamma"].numel()
        learned = "omega" if "omega" in p else ("p" if "p" in p else None)
        for j in range(K):
            row = {"layer": info["index"], "class": cls, "j": j + 1, "gamma": p["gamma"][j].item()}
            if learned:
                row[learned] = p[learned][j].item()
            out.append(row)
    return out
