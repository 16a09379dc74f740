"""Parameter budgets: ``method.budget=N`` picks the largest size whose PPC is <= N.

A method with a size option (``Adapter.size_option``: ``rank``, ``block_size``, ``ratio``,
...) lists its candidate sizes (``Adapter.size_candidates``); the budget resolver counts
the PPC of every candidate on the attached backbone's target layers (on the meta device:
nothing is allocated) and keeps the candidate with the largest PPC that fits.

``budget`` is an integer, or ``<f>x`` (``0.25x``, ``1x``, ``4x``): that multiple of the
PPC of FunLoRA (the paper's default) on the same layers, so one grid serves every
backbone. ``budget_strict=false`` (the zoo grids) keeps a method that cannot fit at its
smallest size, marked ``met: false`` in the record, instead of stopping with an error.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Optional

import torch

from .targets import MethodError

if TYPE_CHECKING:  # pragma: no cover
    from .base import Adapter

_MULTIPLE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*x\s*$")


@dataclass
class BudgetChoice:
    """What a budget resolved to (kept in the record's ``budget`` field)."""

    requested: str              # as given: "10000" or "1x"
    limit: int                  # the PPC limit it means on this backbone
    option: Optional[str]       # the size option chosen over (None: a fixed-size method)
    size: Any                   # the size kept
    ppc: int                    # the PPC at that size
    met: bool                   # ppc <= limit

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self, method: str) -> str:
        what = f"{self.option}={self.size}" if self.option else "its only size"
        verdict = "" if self.met else " (OVER budget: the smallest size it has)"
        return f"method {method}: budget {self.requested} = PPC <= {self.limit:,} -> {what}, PPC {self.ppc:,}{verdict}"


def check_budget_value(value: Any) -> None:
    """Raise MethodError unless ``value`` is a positive integer or ``<f>x``."""
    if value is None:
        return
    if isinstance(value, bool):
        raise MethodError(f"method.budget must be a positive integer or a multiple like 1x, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise MethodError(f"method.budget must be a positive integer or a multiple like 1x, got {value!r}")
        return
    if isinstance(value, str) and (value.strip().isdigit() and int(value) > 0 or _MULTIPLE.match(value)):
        if _MULTIPLE.match(value) and float(_MULTIPLE.match(value).group(1)) <= 0:
            raise MethodError(f"method.budget multiple must be positive, got {value!r}")
        return
    raise MethodError(f"method.budget must be a positive integer or a multiple like 1x, got {value!r}")


def _count(adapter: "Adapter", modules: list) -> int:
    with torch.device("meta"):
        return sum(t.numel() for key, module in modules for t in adapter.new_layer_params(key, module).values())


def reference_ppc(backbone: torch.nn.Module) -> int:
    """FunLoRA's PPC with its defaults on ``backbone`` (the unit of ``<f>x`` budgets)."""
    from . import get

    ref = get("funlora")()
    return _count(ref, [(key, module) for key, _, module, _ in ref.select_targets(backbone)])


def limit_of(backbone: torch.nn.Module, value: Any) -> int:
    """The PPC limit that budget ``value`` means on ``backbone``."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    factor = float(_MULTIPLE.match(text).group(1))
    return int(factor * reference_ppc(backbone))


def _set_size(adapter: "Adapter", option: str, value: Any) -> None:
    setattr(adapter.config, option, value)
    adapter.options[option] = value


def resolve(adapter: "Adapter", backbone: torch.nn.Module, targets: list) -> Optional[BudgetChoice]:
    """Apply ``adapter.options['budget']`` before ``targets`` (select_targets' tuples) are
    wrapped: set the size option; return the choice."""
    value = adapter.options.get("budget")
    if value is None:
        return None
    modules = [(key, module) for key, _, module, _ in targets]
    if not modules:
        raise MethodError(f"method {adapter.name!r} adapts no layers, so method.budget means nothing for it")
    limit = limit_of(backbone, value)
    option = adapter.size_option
    if option is None:
        ppc = _count(adapter, modules)
        choice = BudgetChoice(str(value), limit, None, None, ppc, ppc <= limit)
        if not choice.met and adapter.options["budget_strict"]:
            raise MethodError(f"method {adapter.name!r} has no size option and its PPC {ppc:,} exceeds the "
                              f"budget {value} (PPC <= {limit:,})")
        return choice
    original = adapter.options[option]
    counted = []
    for size in adapter.size_candidates():
        _set_size(adapter, option, size)
        try:
            adapter.config.validate()
            counted.append((_count(adapter, modules), size))
        except MethodError:   # a size these layers cannot take (rank above a side, block not dividing)
            continue
        if adapter.size_monotone and counted[-1][0] > limit:
            break           # PPC grows along the candidates: none further can fit
    if not counted:
        _set_size(adapter, option, original)
        raise MethodError(f"method {adapter.name!r}: no valid {option} on these layers")
    fitting = [c for c in counted if c[0] <= limit]
    if fitting:
        ppc, size = max(fitting, key=lambda c: c[0])
        met = True
    else:
        ppc, size = min(counted, key=lambda c: c[0])
        met = False
        if adapter.options["budget_strict"]:
            _set_size(adapter, option, original)
            raise MethodError(f"method {adapter.name!r}: no {option} meets budget {value} (PPC <= {limit:,}); "
                              f"the smallest PPC possible is {ppc:,} at {option}={size}")
    _set_size(adapter, option, size)
    adapter.config.validate()
    return BudgetChoice(str(value), limit, option, size, ppc, met)


__all__ = ["BudgetChoice", "check_budget_value", "reference_ppc", "resolve"]
