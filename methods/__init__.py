"""Registry of continual-learning adapters: ``available()``, ``build(name, **options)``, ``register``.

Every method is an :class:`methods.base.Adapter`: per-class parameters on a frozen
backbone, mixed-label batches, exact parameters per class, save / load of one class.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable

from .base import Adapter
from .targets import MethodError, parse_layers

_REGISTRY: dict[str, type[Adapter]] = {}


def register(name: str) -> Callable[[type[Adapter]], type[Adapter]]:
    """Class decorator: make an Adapter subclass buildable as ``name``."""

    def deco(cls: type[Adapter]) -> type[Adapter]:
        if name in _REGISTRY:
            raise MethodError(f"method {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available() -> list[str]:
    """Names of every registered adapter method, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> type[Adapter]:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise MethodError(f"unknown method {name!r}{hint}; available: {', '.join(available())}")
    return _REGISTRY[name]


def build(name: str, **options: Any) -> Adapter:
    """Build method ``name`` with its options (unknown names or options: one MethodError line)."""
    return get(name)(**options)


# Importing the method modules registers them.
from . import vanilla, funlora, peft_baselines  # noqa: E402,F401

__all__ = ["Adapter", "MethodError", "available", "build", "get", "register", "parse_layers"]
