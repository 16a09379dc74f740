"""Generative bound: one generator trained on every class at once; classifiers on its samples."""
from __future__ import annotations

from .base import GeneratorInfo, Strategy, register


@register("multitask_generator")
class MultitaskGenerator(Strategy):
    """Trained once before task 1 on all classes (keyed by the method, never shared as a backbone);
    every task's classifier, the first included, learns from its samples. The generator never
    changes after it is trained, so each task's classes are sampled once and reused by the later
    tasks (the same distribution as sampling every seen class again, at a third of the cost on
    a 5-task split)."""

    title = "Generative Multitask"
    description = "one generator trained on all classes at once; classifier on its samples"
    needs_backbone = False
    old_classes_frozen = True
    uses_adapter_schedule = False   # trained with the task-1 schedule (in the backbone key)
    sampling_version = 3     # 3: samples reused across tasks (2 drew every seen class at every task)

    @classmethod
    def stage_keys(cls, cfg):
        return {"sampling": cfg["sampling"]}

    @classmethod
    def plan_start(cls, w):
        w.train([c for task in w.tasks for c in task], "task1", adapter=False)

    def start(self):
        cell = self.cell
        every = [c for task in cell.data.tasks for c in task]
        x, y = cell.task_data(every)
        self._info = cell.train_generator(1, x, y, cell.unfreeze_backbone(), cell.unet, cell.paths.generator(0),
                                          cell.schedule("task1"), stage="multitask")

    def train(self, t, classes):
        return self._info if t == 1 else GeneratorInfo()

    def classifier_data(self, t):
        return "synthetic"
