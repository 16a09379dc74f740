"""Registry of continual-learning adapters: ``available()``, ``build(name, **options)``, ``register``.

Every method is an :class:`methods.base.Adapter`: per-class parameters on a frozen
backbone, mixed-label batches, exact parameters per class, save / load of one class.

Methods come from three places: the modules of this package (``@register``), installed
packages that declare an entry point in group ``funlora_bench.methods``
(``plugin_example = my_package:MyAdapter``), and ``package.module:ClassName`` given as
the method name on the command line or in a grid.
"""
from __future__ import annotations

import bench  # noqa: F401 - first: it fixes the numerics mode before torch loads (bench/numerics.py)
import difflib
import importlib
from importlib.metadata import entry_points
from typing import Any, Callable

from .base import Adapter, AdapterOptions
from .targets import MethodError, parse_layers

ENTRY_POINT_GROUP = "funlora_bench.methods"

_REGISTRY: dict[str, type[Adapter]] = {}
_PLUGINS: dict[str, Any] = {}          # entry-point name -> entry point, loaded on first use
_PLUGIN_ERRORS: dict[str, str] = {}
_scanned = False


def register(name: str) -> Callable[[type[Adapter]], type[Adapter]]:
    """Class decorator: make an Adapter subclass buildable as ``name``."""

    def deco(cls: type[Adapter]) -> type[Adapter]:
        if name in _REGISTRY:
            raise MethodError(f"method {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _scan_entry_points() -> None:
    global _scanned
    if _scanned:
        return
    _scanned = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            _PLUGINS.setdefault(ep.name, ep)


def _check_class(obj: Any, where: str) -> type[Adapter]:
    if not (isinstance(obj, type) and issubclass(obj, Adapter)):
        raise MethodError(f"{where} is not a subclass of methods.base.Adapter")
    return obj


def _load_plugin(name: str) -> type[Adapter]:
    if name in _PLUGIN_ERRORS:
        raise MethodError(_PLUGIN_ERRORS[name])
    ep = _PLUGINS[name]
    try:
        cls = _check_class(ep.load(), f"entry point {name!r} ({ep.value})")
    except MethodError as exc:
        _PLUGIN_ERRORS[name] = str(exc)
        raise
    except Exception as exc:  # noqa: BLE001 - a broken plugin is one clear line, not a traceback
        _PLUGIN_ERRORS[name] = f"method plugin {name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}"
        raise MethodError(_PLUGIN_ERRORS[name]) from None
    cls.name = name
    _REGISTRY[name] = cls
    del _PLUGINS[name]
    return cls


def _from_path(spec: str) -> type[Adapter]:
    """``package.module:ClassName`` -> the class (named by ``spec`` unless registered)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise MethodError(f"cannot read method {spec!r}: use package.module:ClassName")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MethodError(f"method {spec!r}: cannot import {module_name!r} ({exc})") from None
    if not hasattr(module, attr):
        raise MethodError(f"method {spec!r}: module {module_name!r} has no {attr!r}")
    cls = _check_class(getattr(module, attr), f"method {spec!r}")
    if not cls.name or _REGISTRY.get(cls.name) is not cls:
        cls.name = spec
    return cls


def available() -> list[str]:
    """Names of every registered adapter method (built-in and installed plugins), sorted."""
    _scan_entry_points()
    return sorted(set(_REGISTRY) | set(_PLUGINS))


def get(name: str) -> type[Adapter]:
    """The class of method ``name`` (a registered name, a plugin, or ``module:Class``)."""
    if not isinstance(name, str):
        raise MethodError(f"method must be a name, got {name!r}")
    if ":" in name:
        return _from_path(name)
    _scan_entry_points()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _PLUGINS or name in _PLUGIN_ERRORS:
        return _load_plugin(name)
    close = difflib.get_close_matches(name, available(), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise MethodError(f"unknown method {name!r}{hint}; available: {', '.join(available())}")


def is_method(name: Any) -> bool:
    """Whether ``name`` names an adapter method (without importing ``module:Class`` paths)."""
    return isinstance(name, str) and (":" in name or name in available())


def build(name: str, **options: Any) -> Adapter:
    """Build method ``name`` with its options (unknown names or options: one MethodError line)."""
    return get(name)(**options)


# Every module of this package is imported, which registers its methods: a new built-in
# method is one file here, with no other edit.
import pkgutil as _pkgutil  # noqa: E402

for _module in _pkgutil.iter_modules(__path__):
    if _module.name not in ("base", "targets", "testing", "analysis"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Adapter", "AdapterOptions", "MethodError", "available", "build", "get", "register", "parse_layers",
           "is_method", "ENTRY_POINT_GROUP"]
