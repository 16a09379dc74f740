"""Method options: the fields every adapter has and the typed, checked build of them.

``AdapterOptions`` is the base of every method's ``Options`` dataclass; ``build_options``
turns a config's ``method.*`` mapping into it with one clear line on an unknown name or a
wrong type; ``positive_int`` is the check most ``Options.validate`` overrides share.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Optional

from .targets import MethodError


@dataclass
class AdapterOptions:
    """Options every method has. ``layers``: Conv2d index ranges (``40-54``) or ``auto``
    (the backbone's ``adapter_layers``); ``target_modules``: module names instead of
    indices; ``train_embedding``: train the new classes' label-embedding rows;
    ``grouped_conv``: run a mixed batch's classes as one grouped convolution (weight form);
    ``budget``: a PPC limit (an integer, or ``<f>x`` times FunLoRA's PPC on the same layers)
    that sets the method's size option (``methods/budget.py``); ``budget_strict=false``
    keeps a method that cannot fit at its smallest size (marked in the record)."""

    layers: Any = "auto"
    target_modules: Optional[list[str]] = None
    train_embedding: bool = True
    grouped_conv: bool = False
    budget: Any = None
    budget_strict: bool = True

    def validate(self) -> None:
        """Check values; raise MethodError with one clear line (subclasses call super)."""
        from .budget import check_budget_value

        check_budget_value(self.budget)


def positive_int(options: Any, name: str) -> None:
    value = getattr(options, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MethodError(f"method.{name} must be a positive integer, got {value!r}")


def build_options(cls: type[AdapterOptions], method: str, options: dict[str, Any]) -> AdapterOptions:
    """Typed options of ``method``: unknown names get a close match, wrong types one line."""
    import difflib

    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    names = [f.name for f in fields(cls)]
    for key in options:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise MethodError(f"method {method!r} has no option {key!r}{hint}; its options: {', '.join(sorted(names))}")
    try:
        typed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), options))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        value = options.get(str(key).split(".")[0], "?")
        raise MethodError(f"method.{key}={value!r} has the wrong type for method {method!r}: "
                          f"{str(exc).splitlines()[0]}") from None
    typed.validate()
    return typed
