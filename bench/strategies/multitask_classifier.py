"""Upper bound: a ResNet18 on the real data of every seen class (no generator)."""
from __future__ import annotations

from .base import GeneratorInfo, Strategy, register


@register("multitask_classifier")
class MultitaskClassifier(Strategy):
    title = "Classifier Multitask"
    description = "upper bound: ResNet18 on the real data of every seen class"
    needs_backbone = False
    has_generator = False
    uses_adapter_schedule = False

    def train(self, t, classes):
        return GeneratorInfo()

    def classifier_data(self, t):
        return "real"
