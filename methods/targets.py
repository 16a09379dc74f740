"""Which backbone modules a method adapts: the paper's Conv2d indices, module names, attention.

The paper numbers every ``nn.Conv2d`` of the U-Net in registration order (0..64 on the
CIFAR10 config) and selects layers by inclusive index ranges such as ``40-54``.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from torch import nn


class MethodError(ValueError):
    """A method, option or target that cannot be built; the message is one line for users."""


def wrapped_base(module: nn.Module) -> nn.Module:
    """The original module behind an adapter wrapper (or the module itself)."""
    return getattr(module, "base", module) if getattr(module, "is_adapted_layer", False) else module


def conv2d_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """Every Conv2d in registration order as (name, conv); wrapped convs keep their name and index."""
    found: list[tuple[str, nn.Conv2d]] = []
    wrappers: set[str] = set()
    for name, module in model.named_modules():
        if getattr(module, "is_adapted_layer", False):
            wrappers.add(name)
            if isinstance(module.base, nn.Conv2d):
                found.append((name, module.base))
        elif isinstance(module, nn.Conv2d) and name.rsplit(".", 1)[0] not in wrappers:
            found.append((name, module))
    return found


def attention_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Attention blocks (modules with ``qkv`` and ``proj_out``) in registration order."""
    return [(n, m) for n, m in model.named_modules() if hasattr(m, "qkv") and hasattr(m, "proj_out")]


_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*$")


def parse_layers(spec: str | int | Iterable, count: int) -> list[int]:
    """Parse ``40-54``, ``[0-64]``, ``0-9,40-54``, ``all`` or a list of those into sorted indices.

    Raises MethodError naming the valid range when an index falls outside 0..count-1.
    """
    if isinstance(spec, int):
        parts: list[str] = [str(spec)]
    elif isinstance(spec, str):
        text = spec.strip().strip("[]")
        if text == "all":
            return list(range(count))
        parts = [p for p in re.split(r"[,;]", text) if p.strip()]
    else:
        parts = []
        for item in spec:
            parts.extend(str(item).strip().strip("[]").split(","))
    indices: set[int] = set()
    for part in parts:
        m = _RANGE.match(part)
        if not m:
            raise MethodError(f"cannot read layer range {part!r}: use forms like 40-54, [0-64] or 0-9,40-54")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if lo > hi:
            raise MethodError(f"layer range {part.strip()} is empty (start > end)")
        if hi >= count:
            raise MethodError(f"layer range {part.strip()} is outside the backbone: "
                              f"its Conv2d indices are 0-{count - 1}")
        indices.update(range(lo, hi + 1))
    if not indices:
        raise MethodError(f"layer selection {spec!r} selects no layer")
    return sorted(indices)


def select_conv2d(model: nn.Module, layers: str | Iterable | None = None,
                  names: Iterable[str] | None = None) -> list[tuple[int, str, nn.Conv2d]]:
    """Resolve a selection by index ranges or by module names into (index, name, conv)."""
    convs = conv2d_layers(model)
    if names:
        by_name = {n: i for i, (n, _) in enumerate(convs)}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise MethodError(f"no Conv2d named {missing[0]!r} in the backbone "
                              f"(e.g. {convs[0][0]!r} .. {convs[-1][0]!r})")
        picked = sorted(by_name[n] for n in names)
    else:
        picked = parse_layers(layers if layers is not None else "all", len(convs))
    return [(i, convs[i][0], convs[i][1]) for i in picked]


def set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule at dotted path ``name``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
