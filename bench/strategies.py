"""Strategies run by the protocol that are not adapters (bounds and the paper's foils)."""
from __future__ import annotations

STRATEGIES: dict[str, str] = {
    "multitask_classifier": "upper bound: ResNet18 on the real data of every seen class",
    "multitask_generator": "one generator trained on all classes at once; classifier on its samples",
    "replay": "retrain the whole generator on new real data plus its own samples of old classes",
    "finetune": "retrain the whole generator on new data only (catastrophic forgetting)",
}


def is_strategy(name: str) -> bool:
    return name in STRATEGIES
