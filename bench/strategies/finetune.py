"""Naive fine-tuning: the whole generator retrained on each new task's data (forgets)."""
from __future__ import annotations

import torch

from .base import GeneratorInfo, Strategy, register


@register("finetune")
class Finetune(Strategy):
    """Task t > 1 retrains every U-Net weight on ``training_data(t)`` with the task-1 learning rate."""

    title = "Fine-tuning"
    description = "retrain the whole generator on new data only (catastrophic forgetting)"

    @classmethod
    def stage_keys(cls, cfg):
        return {"sampling": cfg["sampling"]}

    def training_data(self, t: int, classes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cell.task_data(classes)

    @classmethod
    def plan_train(cls, t, classes, w):
        if t == 1:
            w.backbone()
        else:
            w.train(classes, "adapter", adapter=False)

    def train(self, t, classes) -> GeneratorInfo:
        cell = self.cell
        if t == 1:
            return cell.train_backbone()
        x, y = self.training_data(t, classes)
        schedule = cell.schedule("adapter")
        schedule.lr = cell.cfg["generator"]["task1"]["lr"]
        return cell.train_generator(t, x, y, cell.unfreeze_backbone(), cell.unet, cell.paths.generator(t), schedule,
                                  stage="retrain")
