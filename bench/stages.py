"""Stage keys and the paths of stage outputs: a stage's output is keyed by the config
that affects it, so that cells sharing a stage (every method of a dataset x split x
seed shares its task-1 backbone) reuse it instead of training it again.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

BACKBONE_KEYS = ("dataset", "split", "seed", "scale", "model", "image_size", "train_per_class", "class_order")
# Bumped when what a stage draws from its seed changes (2: every stage seeded from (seed, stage, task)),
# so that stages of an older version are never mixed with newer ones.
RNG_VERSION = 2


def key_of(obj: Any) -> str:
    """A short stable hash of a JSON-able object."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _precision(cfg: dict) -> dict:
    """bf16 autocast changes what is computed (fp32, the default, keeps the keys it always had);
    revision 2: adapter weights in fp32 and backward outside autocast (bench/precision.py)."""
    return {"precision": cfg["precision"], "precision_rev": 2} if cfg.get("precision", "fp32") != "fp32" else {}


def _numerics(cfg: dict) -> dict:
    """The portable numerics computes other bits than the native one (bench/numerics.py);
    native, what every stage computed before the option existed, keeps the keys it always had."""
    from .numerics import PORTABLE_REVISION

    mode = cfg.get("numerics", "native")
    return {"numerics": mode, "numerics_rev": PORTABLE_REVISION} if mode != "native" else {}


def _classifier(cfg: dict) -> dict:
    """The classifier config as keys see it: width 64 (torchvision's ResNet18, what every
    evaluation computed before the option existed) keeps the keys it always had."""
    clf = dict(cfg["classifier"])
    if clf.get("width", 64) == 64:
        clf.pop("width", None)
    return clf


def backbone_key(cfg: dict) -> str:
    """Key of the task-1 backbone: data, split, seed, model and its schedule; never the method."""
    return key_of({**{k: cfg[k] for k in BACKBONE_KEYS}, "schedule": cfg["generator"]["task1"], "rng": RNG_VERSION,
                   **_precision(cfg), **_numerics(cfg)})


def generator_key(cfg: dict) -> str:
    """Key of the generators of tasks > 1: the backbone plus method and its schedule (not the solver).

    The adapter schedule only for strategies that train with it: the bounds' stages are kept
    when it changes (a generator trained with the task-1 schedule, or none)."""
    from . import strategies

    strategy = strategies.for_method(cfg["method"]["name"])
    schedule = {"schedule": cfg["generator"]["adapter"]} if strategy.uses_adapter_schedule else {}
    extra = {"method": method_key(cfg), **schedule, **strategy.stage_keys(cfg)}
    if strategy.tunable and cfg["tune"]["name"]:
        extra["tune"] = cfg["tune"]  # the adapters are trained with the learning rate the tuning chose
    return key_of({"backbone": backbone_key(cfg), **extra})


def method_key(cfg: dict) -> dict:
    """The method as its stages see it. A budget (``method.budget=1x``) is replaced by the size it
    resolves to on the cell's backbone, options left at their defaults are left out: a budgeted
    method that resolves to what a plain cell runs (the zoo's FunLoRA at 1x is Table V's FunLoRA)
    keys like that cell and reuses its stages. A method without a budget keeps the key it always had."""
    if cfg["method"].get("budget") is None:
        return cfg["method"]
    model = {k: cfg[k] for k in ("dataset", "model", "image_size")}
    return json.loads(_resolved_method(json.dumps({"method": cfg["method"], **model}, sort_keys=True)))


@lru_cache(maxsize=256)
def _resolved_method(spec: str) -> str:
    """``method_key`` of a JSON ``{"method": ..., "dataset", "model", "image_size"}`` (built on the meta device)."""
    import torch

    import methods

    from .protocol import model_for

    cfg = json.loads(spec)
    name, options = cfg["method"]["name"], {k: v for k, v in cfg["method"].items() if k != "name"}
    with torch.device("meta"):
        unet, _ = model_for(cfg, cfg["dataset"])
        resolved = methods.build(name, **options).attach(unet).options
    defaults = methods.build(name).options
    kept = {k: v for k, v in resolved.items() if k not in ("budget", "budget_strict") and v != defaults.get(k)}
    return json.dumps({"name": name, **kept}, sort_keys=True)


def evaluation_key(cfg: dict) -> str:
    """Key of the per-task synthetic sets and classifiers: the generators plus solver and classifier
    (and the strategy's ``sampling_version``: how its synthetic sets are drawn)."""
    from . import strategies

    version = strategies.for_method(cfg["method"]["name"]).sampling_version
    return key_of({"generator": generator_key(cfg), "solver": cfg["solver"], "sampling": cfg["sampling"],
                   "sampling_version": version,
                   "classifier": _classifier(cfg), "test_per_class": cfg["test_per_class"],
                       "fid": [cfg.get("fid", False), cfg.get("fid_extractor", "auto")]})


def first_samples_key(cfg: dict) -> str:
    """Key of task 1's synthetic group under adapters: drawn from the frozen backbone alone,
    so the same for every adapter method (the backbone plus solver and sampling config)."""
    return key_of({"backbone": backbone_key(cfg), "solver": cfg["solver"], "sampling": cfg["sampling"],
                   "classes": "task1", "rng": RNG_VERSION})


def first_task_key(cfg: dict) -> str:
    """Key of the task-1 evaluation on real data (a classifier on real D_1): shared by every method."""
    return key_of({**{k: cfg[k] for k in BACKBONE_KEYS if k not in ("model",)}, "classifier": _classifier(cfg),
                   "test_per_class": cfg["test_per_class"], "rng": RNG_VERSION, **_precision(cfg), **_numerics(cfg)})


def feature_net_key(cfg: dict) -> str:
    """Key of the ResNet18 trained on all real training data (the offline FID extractor)."""
    return key_of({**{k: cfg[k] for k in ("dataset", "seed", "scale", "image_size", "train_per_class")},
                   "classifier": _classifier(cfg), "rng": RNG_VERSION, **_precision(cfg), **_numerics(cfg)})


class StagePaths:
    """Where a cell's stage outputs live under ``artifacts``."""

    def __init__(self, cfg: dict, artifacts: str | Path):
        root = Path(artifacts)
        self.backbone = root / "backbones" / f"{backbone_key(cfg)}.pt"
        self.generators = root / "generators" / generator_key(cfg)
        self.evaluations = root / "evaluations" / evaluation_key(cfg)
        self.first_task = root / "evaluations" / f"task1-real-{first_task_key(cfg)}.json"
        self.first_samples = root / "samples" / f"task1-{first_samples_key(cfg)}.pt"
        self.feature_net = root / "feature_nets" / f"{feature_net_key(cfg)}.pt"
        self.tuning = root / "tuning" / generator_key(cfg)

    def generator(self, task: int) -> Path:
        return self.generators / f"task{task}.pt"

    def evaluation(self, task: int, shared_first_task: bool = False) -> Path:
        """Task ``task``'s evaluation; the real-data task-1 evaluation is shared by every method."""
        if task == 1 and shared_first_task:
            return self.first_task
        return self.evaluations / f"task{task}.json"
