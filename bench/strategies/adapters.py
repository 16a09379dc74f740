"""The default strategy: a frozen task-1 backbone plus a method of ``methods/`` per new class."""
from __future__ import annotations

import methods

from .base import Strategy, register


@register("adapters")
class Adapters(Strategy):
    """Task 1 trains the shared backbone; each later task trains only its classes' adapters."""

    title = "Adapters"
    description = "frozen task-1 backbone + per-class adapters of a method in methods/"
    takes_method_options = True
    tunable = True
    old_classes_frozen = True   # the contract: old classes bit-identical after new tasks

    def __init__(self, cell):
        super().__init__(cell)
        self._adapter: methods.Adapter | None = None

    @property
    def adapter(self):
        return self._adapter

    @classmethod
    def plan_train(cls, t, classes, w):
        if t == 1:
            w.backbone()
            if w.cfg["tune"]["name"] == "lr":
                w.tuning()
        else:
            w.train(classes, "adapter", adapter=True)

    def train(self, t, classes):
        cell = self.cell
        if t == 1:
            info = cell.train_backbone()
            if cell.cfg["tune"]["name"] == "lr":  # on copies of the plain backbone, before it is adapted
                from ..tuning import tune_lr

                cell.tuning = {"lr": tune_lr(cell)}
            cell.seed_stage("adapter-attach")  # e.g. shared random projections drawn at attach
            self._adapter = methods.build(cell.method_name, **cell.options).attach(cell.unet)
            if self._adapter.budget_choice is not None:
                cell.log(self._adapter.budget_choice.describe(cell.method_name))
            for what, how in self._adapter.implementation.items():
                cell.log(f"{cell.method_name}: {what}: {how}")
            return info
        cell.seed_stage("adapter-init", t)  # random initial factors, whether the backbone was cached or not
        self._adapter.add_classes(classes)
        x, y = cell.task_data(classes)
        info = cell.train_generator(t, x, y, self._adapter.trainable_parameters(), self._adapter,
                                    cell.paths.generator(t), cell.schedule("adapter"), stage="adapter")
        self._adapter.set_trainable([])
        return info
