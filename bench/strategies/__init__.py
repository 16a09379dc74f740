"""Continual strategies: what the protocol trains at each task and what its classifier sees.

A strategy is a class with a few hooks (``bench.strategies.base.Strategy``); the protocol
asks it and never matches a strategy's name. ``method=NAME`` picks a strategy of this
registry, or any adapter method of ``methods/`` run by the default ``adapters`` strategy.
A new strategy is one class in one file of this package, decorated with ``@register``.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil

from .base import Strategy, register, registry

# Every module of this package is imported, which registers its strategies: a new
# strategy is one file here, with no other edit.
for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

DEFAULT = "adapters"


def available() -> list[str]:
    """Strategies chosen by ``method=NAME`` (the default ``adapters`` is chosen by any adapter method)."""
    return sorted(n for n in registry() if n != DEFAULT)


def is_strategy(name: object) -> bool:
    """Whether ``method=name`` picks a strategy of this registry rather than an adapter method."""
    return isinstance(name, str) and name in registry() and name != DEFAULT


def for_method(name: str) -> type[Strategy]:
    """The strategy that runs ``method=name``: the named one, or ``adapters`` for an adapter method."""
    return registry()[name] if is_strategy(name) else registry()[DEFAULT]


def close_match(name: str) -> str | None:
    found = difflib.get_close_matches(name, available(), n=1)
    return found[0] if found else None


def title(name: str) -> str:
    """The report's row name for ``method=name`` (a strategy's or a method's title, else the name)."""
    if is_strategy(name):
        return registry()[name].title or name
    import methods

    try:
        return methods.get(name).title or name
    except methods.MethodError:
        return name


def display_name(name: str, options: dict | None = None) -> str:
    """A method's title with the options its cell set (``FunLoRA (ratio=4)``): the one name of a
    method in tables' figures, sample grids and their rows."""
    shown = ", ".join(f"{k}={v}" for k, v in sorted((options or {}).items()) if k != "budget_strict")
    return title(name) + (f" ({shown})" if shown else "")


__all__ = ["Strategy", "register", "available", "is_strategy", "for_method", "title", "display_name", "DEFAULT"]
