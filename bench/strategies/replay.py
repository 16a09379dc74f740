"""Generative replay: retrain the whole generator on new real data plus its own old-class samples."""
from __future__ import annotations

import torch

from .base import register
from .finetune import Finetune


@register("replay")
class Replay(Finetune):
    title = "Generative replay"
    description = "retrain the whole generator on new real data plus its own samples of old classes"

    @classmethod
    def plan_train(cls, t, classes, w):
        if t == 1:
            w.backbone()
            return
        old = w.counts.per_class_sampled([c for task in w.tasks[:t - 1] for c in task])
        if w.train(classes, "adapter", adapter=False, extra_images=old):
            w.sample(old, adapter=False)

    def training_data(self, t, classes):
        cell = self.cell
        x, y = cell.task_data(classes)
        old = [c for task in cell.data.tasks[:t - 1] for c in task]
        rx, ry, _, _ = cell.synthesize(cell.unet, old, "replay-sampling", t)
        return torch.cat([x, rx]), torch.cat([y, ry])
