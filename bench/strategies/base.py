"""The strategy interface: the protocol's only questions about what a cell does.

Hooks (class attributes and methods; everything has a default):

- ``needs_backbone``: whether the cell starts from the shared task-1 backbone of its
  dataset x split x seed (trained once per sweep, reused by every method);
- ``has_generator``: whether it trains a generator at all (the classifier bound does not);
- ``takes_method_options``: whether ``method.*`` options mean something to it;
- ``tunable``: whether ``tune=lr`` applies (its adapters' learning rate);
- ``old_classes_frozen``: whether a class's generator never changes after its task (per-class
  adapters on a frozen backbone): each task's classes are then sampled once and their
  synthetic images reused by every later task's classifier;
- ``sampling_version``: bumped for a strategy when how it draws its synthetic sets changes
  (part of its evaluations' key, so sets drawn the old way are never mixed with new ones);
- ``uses_adapter_schedule``: whether its generator stages train with ``generator.adapter``
  (then part of their cache key; the bounds train with the task-1 schedule or not at all, so
  changing the adapters' schedule keeps their stages);
- ``stage_keys(cfg)``: config, beyond the backbone, method and adapter schedule, that its
  generator stages depend on (their cache key);
- ``start()``: work before task 1 (e.g. one generator on every class);
- ``train(t, classes)``: what it trains at task t, returns a ``GeneratorInfo``;
- ``classifier_data(t)``: ``"real"`` or ``"synthetic"``: what the task-t classifier learns from;
- ``sampler()``: the model the synthetic sets come from; ``adapter``: the method, if any;
- ``plan_start(w)``, ``plan_train(t, classes, w)``: what ``start`` and ``train`` cost, told to a
  ``bench.estimate.Workload`` before the sweep runs (generator steps, samples drawn).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:  # pragma: no cover
    import methods
    from ..estimate import Workload
    from ..protocol import Cell

_REGISTRY: dict[str, type["Strategy"]] = {}


def register(name: str):
    """Class decorator: make a Strategy subclass available as ``method=name``."""

    def deco(cls: type[Strategy]) -> type[Strategy]:
        if name in _REGISTRY:
            raise ValueError(f"strategy {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def registry() -> dict[str, type["Strategy"]]:
    return _REGISTRY


@dataclass
class GeneratorInfo:
    """What one task's generator stage did: compute seconds, steps, parameters trained, last loss."""

    seconds: float = 0.0
    steps: int = 0
    trainable: int = 0
    loss: float | None = None
    resumed_from: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Strategy:
    """Base class; see the module docstring for the hooks."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs_backbone: ClassVar[bool] = True
    has_generator: ClassVar[bool] = True
    takes_method_options: ClassVar[bool] = False
    tunable: ClassVar[bool] = False       # tune=lr picks its adapter learning rate
    old_classes_frozen: ClassVar[bool] = False   # samples of earlier tasks' classes stay valid
    uses_adapter_schedule: ClassVar[bool] = True  # generator.adapter is part of its stage keys
    # 2: every stage seeded from (seed, stage, task); adapters sample each task's classes once
    sampling_version: ClassVar[int] = 2

    def __init__(self, cell: "Cell"):
        self.cell = cell

    @classmethod
    def stage_keys(cls, cfg: dict) -> dict[str, Any]:
        return {}

    def start(self) -> None:
        """Work before task 1 (nothing by default)."""

    def train(self, t: int, classes: list[int]) -> GeneratorInfo:
        """Train what task ``t`` needs; by default the task-1 backbone, then nothing."""
        return self.cell.train_backbone() if t == 1 and self.needs_backbone else GeneratorInfo()

    @classmethod
    def plan_start(cls, w: "Workload") -> None:
        """What ``start`` costs, told to ``w`` (bench/estimate.py): nothing by default."""

    @classmethod
    def plan_train(cls, t: int, classes: list[int], w: "Workload") -> None:
        """What ``train(t, classes)`` costs, told to ``w``: by default the task-1 backbone (its own job)."""
        if t == 1 and cls.needs_backbone:
            w.backbone()

    def classifier_data(self, t: int) -> str:
        """``real`` at task 1 (a classifier on real D_1, shared by every method), then ``synthetic``."""
        return "real" if t == 1 else "synthetic"

    @property
    def adapter(self) -> "methods.Adapter | None":
        return None

    def sampler(self) -> torch.nn.Module:
        return self.adapter if self.adapter is not None else self.cell.unet
