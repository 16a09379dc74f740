"""Resolved configuration of one cell: defaults, scale presets and ``key=value`` overrides.

``scale`` picks the schedules: ``paper`` (the paper's, for GPUs), ``cpu`` (Fashion-MNIST
2-2 in minutes on 2 cores), ``smoke`` (tests). ``method=NAME`` picks a method and
``method.K=5`` sets its options. Unknown keys get a close-match suggestion.
"""
from __future__ import annotations

import copy
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import BenchError
from .flow import SolverConfig
from .trainer import Schedule


# ---- the typed schema of a cell's config (a wrong type is an error at parse time) ---------------
@dataclass
class GeneratorConfig:
    """Schedules of the task-1 U-Net and of the later tasks' adapters (or retraining)."""

    task1: Schedule = field(default_factory=Schedule)
    adapter: Schedule = field(default_factory=Schedule)


@dataclass
class SamplingConfig:
    """Synthetic samples per class (none: as many as the real training set has) and batch size."""

    per_class: Optional[int] = None
    batch_size: int = 500


@dataclass
class ClassifierConfig:
    """The evaluation ResNet18: SGD + OneCycle; ``width`` is the first stage's channels
    (64: torchvision's ResNet18, the paper's; scale=cpu uses 32, 3.5x cheaper on 16 x 16 images)."""

    width: int = 64
    epochs: int = 30
    batch_size: int = 100
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True


@dataclass
class TuneConfig:
    """``tune=lr``: pick the adapter learning rate among ``lr`` on a validation split carved from
    the training data (``val_per_class`` images per class), by ``criterion`` (``loss``: held-out
    flow-matching loss of the task's new classes; ``la``: validation accuracy), on the first
    adapter task (``tasks=first``) or averaged over every adapter task (``tasks=all``)."""

    name: Optional[str] = None
    lr: list[float] = field(default_factory=lambda: [1e-4, 2e-4, 5e-4, 1e-3])
    criterion: str = "loss"
    val_per_class: int = 500
    tasks: str = "first"


@dataclass
class CellConfig:
    """One cell: dataset x split x method x solver x seed at a scale, and where things go."""

    dataset: str = "fashion_mnist"
    split: str = "2-2"
    method: Any = None                 # {"name": ..., option: value}; options typed by the method
    scale: str = "cpu"
    seed: int = 0
    out: Optional[str] = None
    device: str = "auto"
    data_root: Optional[str] = None
    workdir: Optional[str] = None
    class_order: str = "natural"
    threads: Optional[int] = None
    deterministic: bool = False
    precision: str = "fp32"            # fp32, or bf16 (autocast of every forward of the cell)
    numerics: str = "portable"         # portable (same bits on any x86-64 AVX2 CPU) or native (bench/numerics.py)
    compile: bool = False              # torch.compile of the U-Net
    sample_grid: int = 8               # images per class in each task's sample grid (0: none)
    progress: bool = True
    fid: bool = False
    fid_extractor: str = "auto"
    model: str = "auto"
    image_size: Any = "auto"           # "auto" or an integer
    train_per_class: Optional[int] = None
    test_per_class: Optional[int] = None
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)


def typed_merge(schema: type, *layers: dict, what: str = "") -> dict[str, Any]:
    """Merge ``layers`` onto the dataclass ``schema``; a wrong type is one BenchError line."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), *layers)
        return OmegaConf.to_container(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        raise BenchError(f"{what}{key}: {str(exc).splitlines()[0]}") from None

SCHEDULE = {"epochs": 1, "max_steps": None, "lr": 2e-4, "batch_size": 128, "warmup_steps": 1000,
            "grad_clip": 1.0, "ema_decay": 0.9999, "ema_start_epoch": 0, "ckpt_every": 500}

SCALES: dict[str, dict[str, Any]] = {
    "paper": {
        "model": "auto", "image_size": "auto", "train_per_class": None, "test_per_class": None,
        "generator": {"task1": {**SCHEDULE, "epochs": 500, "ema_start_epoch": 200},
                      "adapter": {**SCHEDULE, "epochs": 300, "ema_start_epoch": 100}},
        "sampling": {"per_class": None, "batch_size": 500},
        "classifier": {"width": 64, "epochs": 30, "batch_size": 100, "lr": 0.1, "momentum": 0.9,
                       "weight_decay": 5e-4, "augment": True},
        "solver": {"name": "dopri5", "atol": 1e-4, "rtol": 1e-4, "steps": 100},
        "tune": {"name": None, "lr": [1e-4, 2e-4, 5e-4, 1e-3], "criterion": "loss", "val_per_class": 500,
                 "tasks": "first"},
    },
    "cpu": {
        "model": "small", "image_size": 16, "train_per_class": 1000, "test_per_class": None,
        "generator": {"task1": {**SCHEDULE, "epochs": 20, "max_steps": 400, "lr": 2e-3, "batch_size": 64,
                                "warmup_steps": 50, "ema_decay": 0.99, "ema_start_epoch": 5,
                                "ckpt_every": 100},
                      "adapter": {**SCHEDULE, "epochs": 20, "max_steps": 150, "lr": 1e-2, "batch_size": 64,
                                  "warmup_steps": 20, "ema_decay": 0.99, "ema_start_epoch": 5,
                                  "ckpt_every": 100}},
        "sampling": {"per_class": 200, "batch_size": 400},
        "classifier": {"width": 32, "epochs": 4, "batch_size": 128, "lr": 0.05, "momentum": 0.9,
                       "weight_decay": 5e-4, "augment": True},
        "solver": {"name": "midpoint", "atol": 1e-4, "rtol": 1e-4, "steps": 6},
        "tune": {"name": None, "lr": [1e-3, 3e-3, 1e-2, 3e-2], "criterion": "loss", "val_per_class": 100,
                 "tasks": "first"},
    },
    "smoke": {
        "model": "tiny", "image_size": 8, "train_per_class": 40, "test_per_class": 30,
        "generator": {"task1": {**SCHEDULE, "epochs": 2, "max_steps": 8, "lr": 2e-3, "batch_size": 32,
                                "warmup_steps": 2, "ema_decay": 0.9, "ema_start_epoch": 1, "ckpt_every": 4},
                      "adapter": {**SCHEDULE, "epochs": 2, "max_steps": 4, "lr": 1e-2, "batch_size": 32,
                                  "warmup_steps": 1, "ema_decay": 0.9, "ema_start_epoch": 1, "ckpt_every": 4}},
        "sampling": {"per_class": 16, "batch_size": 64},
        "classifier": {"width": 16, "epochs": 1, "batch_size": 32, "lr": 0.05, "momentum": 0.9,
                       "weight_decay": 5e-4, "augment": True},
        "solver": {"name": "euler", "atol": 1e-4, "rtol": 1e-4, "steps": 2},
        "tune": {"name": None, "lr": [1e-3, 1e-2], "criterion": "loss", "val_per_class": 8, "tasks": "first"},
    },
}

# Paper settings that differ on ImageNet100 (METHOD.md section 2).
PAPER_DATASET_OVERRIDES = {
    "imagenet100": {"generator": {"task1": {"epochs": 250, "lr": 1e-4, "ema_start_epoch": 100},
                                  "adapter": {"epochs": 200, "ema_start_epoch": 100}}},
}

TOP_LEVEL = {"dataset": "fashion_mnist", "split": "2-2", "method": {"name": "vanilla_mul"},
             "scale": "cpu", "seed": 0, "out": None, "device": "auto", "data_root": None,
             "workdir": None, "class_order": "natural", "threads": None, "deterministic": False,
             "precision": "fp32", "numerics": "portable", "compile": False, "sample_grid": 8,
             "progress": True,
             "fid": False, "fid_extractor": "auto"}

SOLVERS = ("dopri5", "rk4", "euler", "midpoint")


def default_data_root() -> str:
    return os.environ.get("FUNLORA_DATA", str(Path.home() / ".cache" / "funlora-bench" / "data"))


def parse_overrides(argv: list[str]) -> dict[str, Any]:
    """Turn ``key=value`` words into a nested dict (values parsed as YAML: 5, 1e-4, [0,1], true)."""
    out: dict[str, Any] = {}
    for word in argv:
        if "=" not in word or word.startswith("="):
            raise BenchError(f"cannot read argument {word!r}: use key=value (e.g. dataset=fashion_mnist)")
        key, _, raw = word.partition("=")
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        if key in ("method", "tune"):  # method=NAME and tune=lr name a group: NAME is its .name
            key = f"{key}.name"
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise BenchError(f"key {key!r} conflicts with another argument")
        node[parts[-1]] = value
    return out


def parse_known(argv: list[str], keys) -> dict[str, Any]:
    """``key=value`` words of a small CLI whose keys are ``keys`` (unknown key: close-match error)."""
    args = parse_overrides(argv)
    for key in args:
        if key not in keys:
            close = difflib.get_close_matches(key, list(keys), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise BenchError(f"unknown key {key!r}{hint}; keys: {', '.join(sorted(keys))}")
    return args


def _check_keys(overrides: dict, reference: dict, prefix: str = "") -> None:
    for key, value in overrides.items():
        full = f"{prefix}{key}"
        if key not in reference:
            close = difflib.get_close_matches(key, list(reference), n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise BenchError(f"unknown key {full!r}{hint}")
        if isinstance(reference[key], dict) and isinstance(value, dict):
            _check_keys(value, reference[key], prefix=f"{full}.")
        elif isinstance(reference[key], dict):
            raise BenchError(f"key {full!r} is a group; set one of its keys, e.g. {full}.{next(iter(reference[key]))}=...")


def resolve(argv: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Full config of one cell: top-level defaults, then the scale preset, then overrides."""
    overrides = parse_overrides(argv) if isinstance(argv, list) else copy.deepcopy(argv)
    scale = overrides.get("scale", TOP_LEVEL["scale"])
    if scale not in SCALES:
        close = difflib.get_close_matches(str(scale), SCALES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise BenchError(f"unknown scale {scale!r}{hint}; scales: {', '.join(SCALES)}")
    base = {**copy.deepcopy(TOP_LEVEL), **copy.deepcopy(SCALES[scale])}
    dataset = overrides.get("dataset", base["dataset"])
    if scale == "paper" and dataset in PAPER_DATASET_OVERRIDES:
        base = OmegaConf.to_container(OmegaConf.merge(base, PAPER_DATASET_OVERRIDES[dataset]))
    method_overrides = overrides.pop("method", {})
    if not isinstance(method_overrides, dict):
        method_overrides = {"name": method_overrides}
    _check_keys(overrides, base)
    method = {**base.pop("method"), **(method_overrides or {})}
    cfg = typed_merge(CellConfig, base, overrides)
    cfg["method"] = method
    if cfg["data_root"] is None:
        cfg["data_root"] = default_data_root()
    validate(cfg)
    return cfg


def _positive(cfg: dict, path: str, allow_none: bool = False, allow_zero: bool = False) -> None:
    node = cfg
    for part in path.split("."):
        node = node[part]
    if node is None and allow_none:
        return
    if node is None or node < 0 or (node == 0 and not allow_zero):
        need = "non-negative" if allow_zero else "positive"
        raise BenchError(f"{path} must be {need}, got {node!r}")


def validate(cfg: dict[str, Any]) -> None:
    """Cheap checks that fail before any work starts (data and split are checked by bench.data)."""
    from methods import MethodError

    from . import strategies
    from .data import check_dataset

    from .data import parse_split

    parse_split(cfg["split"], check_dataset(cfg["dataset"]))   # a grid file's split too, before any job
    if cfg["seed"] < 0:
        raise BenchError(f"seed must be a non-negative integer, got {cfg['seed']!r}")
    name = cfg["method"].get("name")
    options = {k: v for k, v in cfg["method"].items() if k != "name"}
    if strategies.is_strategy(name):
        if options:
            raise BenchError(f"{name} is a strategy, not an adapter: it takes no method.* options")
    else:
        import methods

        try:
            methods.build(name, **options)  # raises MethodError on an unknown name, option or value
        except MethodError as exc:
            close = strategies.close_match(str(name)) if "unknown method" in str(exc) else None
            if close:
                raise MethodError(f"unknown method {name!r} (did you mean the strategy {close!r}?)") from None
            raise
    solver = cfg["solver"]
    if solver["name"] not in SOLVERS:
        raise BenchError(f"unknown solver {solver['name']!r}; solvers: {', '.join(SOLVERS)}")
    if solver["name"] != "dopri5" and solver["steps"] < 1:
        raise BenchError(f"solver.steps must be a positive integer, got {solver['steps']!r}")
    for key in ("solver.atol", "solver.rtol", "sampling.batch_size", "classifier.batch_size", "classifier.lr",
                "classifier.width",
                "generator.task1.batch_size", "generator.adapter.batch_size", "generator.task1.lr",
                "generator.adapter.lr"):
        _positive(cfg, key)
    for key in ("generator.task1.epochs", "generator.adapter.epochs", "classifier.epochs", "generator.task1.ckpt_every",
                "generator.adapter.ckpt_every", "generator.task1.warmup_steps", "generator.adapter.warmup_steps"):
        _positive(cfg, key, allow_zero=True)
    for key in ("sampling.per_class", "train_per_class", "test_per_class", "threads", "generator.task1.max_steps",
                "generator.adapter.max_steps"):
        _positive(cfg, key, allow_none=True)
    if cfg["image_size"] != "auto" and (isinstance(cfg["image_size"], bool) or not isinstance(cfg["image_size"], int)
                                        or cfg["image_size"] < 4):
        raise BenchError(f"image_size must be auto or an integer >= 4, got {cfg['image_size']!r}")
    if cfg["device"] not in ("auto", "cpu", "cuda") and not str(cfg["device"]).startswith("cuda:"):
        raise BenchError(f"device must be auto, cpu or cuda[:N], got {cfg['device']!r}")
    if isinstance(cfg["sample_grid"], bool) or not isinstance(cfg["sample_grid"], int) or cfg["sample_grid"] < 0:
        raise BenchError(f"sample_grid must be a number of images per class (0: none), got {cfg['sample_grid']!r}")
    if cfg["precision"] not in ("fp32", "bf16"):
        raise BenchError(f"precision must be fp32 or bf16, got {cfg['precision']!r}")
    from .numerics import check_mode

    check_mode(cfg["numerics"])
    if cfg["fid_extractor"] not in ("auto", "inception", "classifier"):
        raise BenchError(f"fid_extractor must be auto, inception or classifier, got {cfg['fid_extractor']!r}")
    tune = cfg["tune"]
    if tune["name"] not in (None, "lr"):
        raise BenchError(f"tune takes only 'lr' (the adapter learning rate), got {tune['name']!r}")
    if not tune["lr"] or any(v <= 0 for v in tune["lr"]):
        raise BenchError(f"tune.lr must be a non-empty list of positive learning rates, got {tune['lr']!r}")
    if tune["criterion"] not in ("loss", "la"):
        raise BenchError(f"tune.criterion must be loss or la, got {tune['criterion']!r}")
    if tune["tasks"] not in ("first", "all"):
        raise BenchError(f"tune.tasks must be first or all, got {tune['tasks']!r}")
    if tune["name"] and tune["criterion"] == "la" and tune["tasks"] != "first":
        raise BenchError("tune.criterion=la needs tune.tasks=first (later tasks need every earlier tuned adapter)")
    _positive(cfg, "tune.val_per_class")
    if cfg["class_order"] not in ("natural", "permuted"):
        raise BenchError(f"class_order must be natural or permuted, got {cfg['class_order']!r}")


def dump(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
