"""The continual protocol of METHOD.md section 1, for one cell.

For task t = 1..T: (1) generator: t = 1 trains the whole U-Net on D_1; t > 1 trains only
the new classes' parameters through a method on D_t (strategies retrain the whole
U-Net instead); (2) a synthetic set of every seen class; (3) a fresh ResNet18 (on real
D_1 at t = 1, on the synthetic set after); (4) accuracy on the real test images of each
seen task. Stage outputs are checkpointed, so a killed cell resumes where it stopped.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

import methods

from . import data as data_mod
from .classifier import accuracy_per_task, train_classifier
from .errors import BenchError
from .flow import SolverConfig, sample
from .metrics import average_accuracies, summarize_nfe
from .stages import StagePaths
from .trainer import Schedule, train_flow
from .unet import MODEL_CONFIGS, UNetModel, build_unet


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"device={name} was asked for but CUDA is not available here; use device=auto or cpu")
    return torch.device(name)


def model_for(cfg: dict, dataset: str) -> tuple[UNetModel, int]:
    """The U-Net of this scale for ``dataset`` (built on the current default device), and its image size."""
    size = cfg["image_size"]
    if size == "auto":
        size = 64 if data_mod.NATIVE_SIZE[dataset] > 32 else 32
    arch = cfg["model"]
    if arch == "auto":
        arch = "imagenet64" if size == 64 else "cifar10"
    if arch not in MODEL_CONFIGS:
        raise BenchError(f"unknown model {arch!r}; models: {', '.join(MODEL_CONFIGS)}")
    overrides = {"image_size": size, "in_channels": data_mod.CHANNELS[dataset], "num_classes": data_mod.DATASETS[dataset]}
    if arch == "small" and size <= 16:
        overrides["attention_resolutions"] = str(size // 2)
    return build_unet(arch, **overrides), size


def dry_build(cfg: dict) -> dict:
    """Build a cell's backbone and method on the meta device (no memory, no training): its sizes."""
    with torch.device("meta"):
        unet, size = model_for(cfg, cfg["dataset"])
        info = {"image_size": size, "backbone_params": sum(p.numel() for p in unet.parameters()), "ppc": 0}
        name = cfg["method"]["name"]
        if name in methods.available():
            adapter = methods.build(name, **{k: v for k, v in cfg["method"].items() if k != "name"}).attach(unet)
            info["ppc"] = adapter.ppc()
    return info


@dataclass
class CellData:
    tasks: list[list[int]]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def prepare_data(cfg: dict, dataset: data_mod.Dataset, size: int) -> CellData:
    order = data_mod.class_order(dataset.num_classes, cfg["class_order"], cfg["seed"])
    tasks = data_mod.task_classes(cfg["split"], dataset.num_classes, order)
    all_classes = list(range(dataset.num_classes))
    tx, ty = data_mod.subset(dataset.train_x, dataset.train_y, all_classes, cfg["train_per_class"], cfg["seed"])
    vx, vy = data_mod.subset(dataset.test_x, dataset.test_y, all_classes, cfg["test_per_class"], cfg["seed"])
    return CellData(tasks, data_mod.to_model_space(tx, size), ty, data_mod.to_model_space(vx, size), vy)


def _mask(y: torch.Tensor, classes: list[int]) -> torch.Tensor:
    return torch.isin(y, torch.tensor(classes))


def synthesize(model, classes: list[int], counts: dict[int, int], shape: tuple, solver: SolverConfig,
               batch_size: int, seed: int, device: torch.device, progress: bool) -> tuple[torch.Tensor, torch.Tensor, list[int], float]:
    """Samples of ``classes`` (counts[c] each), labels sorted so batches hold few classes."""
    labels = torch.cat([torch.full((counts[c],), c, dtype=torch.long) for c in classes])
    g = torch.Generator().manual_seed(seed)
    xs, nfes, t0 = [], [], time.perf_counter()
    for i in tqdm(range(0, labels.numel(), batch_size), desc="sampling", leave=False, disable=not progress):
        x, nfe = sample(model, labels[i:i + batch_size], shape, solver, generator=g, device=device)
        xs.append(x.clamp(-1, 1).cpu())
        nfes.append(nfe)
    return torch.cat(xs), labels, nfes, time.perf_counter() - t0


class Cell:
    """One run of the protocol: dataset x split x method x solver x seed at a scale."""

    def __init__(self, cfg: dict, artifacts: str | Path | None = None, log=print):
        self.cfg = cfg
        self.log = log
        self.device = resolve_device(cfg["device"])
        self.method_name = cfg["method"]["name"]
        self.options = {k: v for k, v in cfg["method"].items() if k != "name"}
        self.dataset = data_mod.load(cfg["dataset"], cfg["data_root"])
        data_mod.parse_split(cfg["split"], self.dataset.num_classes)
        self.unet, self.size = model_for(cfg, self.dataset.name)
        self.data = prepare_data(cfg, self.dataset, self.size)
        self.paths = StagePaths(cfg, artifacts or cfg.get("workdir") or "results/artifacts")
        self.progress = bool(cfg.get("progress", True))
        self.solver = SolverConfig.from_dict(cfg["solver"])
        self.adapter: methods.Adapter | None = None

    # ---- stages -------------------------------------------------------------------------
    def train_generator(self, task: int, classes: list[int], x: torch.Tensor, y: torch.Tensor, full: bool) -> dict:
        """Train the whole U-Net (``full``) or the adapter's current classes; returns timing info."""
        schedule = Schedule.from_dict(self.cfg["generator"]["task1" if (full and task == 1) else "adapter"])
        if full and task > 1:
            schedule.lr = self.cfg["generator"]["task1"]["lr"]
        if full:
            for p in self.unet.parameters():
                p.requires_grad_(True)
            params, model, module = list(self.unet.parameters()), self.unet, self.unet
        else:
            params, model, module = self.adapter.trainable_parameters(), self.adapter, self.adapter
        # The multitask generator sees every class: it is keyed by the method, never shared as a backbone.
        ckpt = (self.paths.generator(0) if self.method_name == "multitask_generator"
                else self.paths.backbone if task == 1 else self.paths.generator(task))
        if not params:  # nothing to train (cannot happen for the registered methods)
            return {"seconds": 0.0, "steps": 0, "trainable": 0}
        res = train_flow(model, params, x, y, schedule, seed=self.cfg["seed"] * 1000 + task, device=self.device,
                         ckpt=ckpt, progress=self.progress, desc=f"task {task} generator", module=module)
        module.eval()
        return {"seconds": res.seconds, "steps": res.steps, "trainable": sum(p.numel() for p in params),
                "loss": res.loss, "resumed_from": res.resumed_from}

    def counts(self, classes: list[int]) -> dict[int, int]:
        per_class = self.cfg["sampling"]["per_class"]
        return {c: per_class or int((self.data.train_y == c).sum()) for c in classes}

    # ---- the protocol ---------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg, d = self.cfg, self.data
        self.unet.to(self.device)
        T = len(d.tasks)
        acc: list[list[float | None]] = []
        seconds = {"generator": [], "sampling": [], "classifier": []}
        nfe, trainable = [], []
        name = self.method_name
        strategy = name in ("multitask_classifier", "multitask_generator", "replay", "finetune")
        if name == "multitask_generator":
            all_classes = [c for t in d.tasks for c in t]
            m = _mask(d.train_y, all_classes)
            info = self.train_generator(1, all_classes, d.train_x[m], d.train_y[m], full=True)
        for t, classes in enumerate(d.tasks, start=1):
            seen = [c for task in d.tasks[:t] for c in task]
            cached = self.paths.evaluation(t, real_first_task=name != "multitask_generator")
            gen = {"seconds": 0.0, "trainable": 0}
            m = _mask(d.train_y, classes)
            if name == "multitask_generator":
                gen = info if t == 1 else gen
            elif name != "multitask_classifier":
                if t == 1:
                    gen = self.train_generator(1, classes, d.train_x[m], d.train_y[m], full=True)
                    if not strategy:
                        self.adapter = methods.build(name, **self.options).attach(self.unet)
                elif strategy:
                    x, y = d.train_x[m], d.train_y[m]
                    if name == "replay":
                        old = [c for task in d.tasks[:t - 1] for c in task]
                        rx, ry, _, _ = synthesize(self.unet, old, self.counts(old), x.shape[1:], self.solver,
                                                  cfg["sampling"]["batch_size"], cfg["seed"] * 7919 + t,
                                                  self.device, self.progress)
                        x, y = torch.cat([x, rx]), torch.cat([y, ry])
                    gen = self.train_generator(t, classes, x, y, full=True)
                else:
                    self.adapter.add_classes(classes)
                    gen = self.train_generator(t, classes, d.train_x[m], d.train_y[m], full=False)
                    self.adapter.set_trainable([])
            seconds["generator"].append(gen["seconds"])
            trainable.append(gen["trainable"])
            if cached.exists():
                row = json.loads(cached.read_text())
            else:
                row = self.evaluate(t, seen)
                write_json_atomic(cached, row)
            seconds["sampling"].append(row["sampling_seconds"])
            seconds["classifier"].append(row["classifier_seconds"])
            nfe.append(row["nfe"])
            acc.append(row["accuracy"] + [None] * (T - t))
            shown = " ".join(f"{a:.1f}" for a in row["accuracy"])
            self.log(f"task {t}/{T} classes {classes}: accuracy per task [{shown}]  "
                     f"Abar_{t} = {sum(row['accuracy']) / t:.2f}")
        return self.record(acc, seconds, nfe, trainable, row.get("quality"))

    def evaluate(self, t: int, seen: list[int]) -> dict:
        cfg, d = self.cfg, self.data
        use_real = self.method_name == "multitask_classifier" or (t == 1 and self.method_name != "multitask_generator")
        nfes, sampling_seconds = [], 0.0
        if use_real:
            m = _mask(d.train_y, seen)
            x, y = d.train_x[m], d.train_y[m]
        else:
            model = self.adapter if self.adapter is not None else self.unet
            x, y, nfes, sampling_seconds = synthesize(model, seen, self.counts(seen), d.train_x.shape[1:], self.solver,
                                                      cfg["sampling"]["batch_size"], cfg["seed"] * 7919 + 100 + t,
                                                      self.device, self.progress)
        net, secs = train_classifier(x, y, seen, cfg["classifier"], cfg["seed"] * 1000 + 500 + t, self.device,
                                     self.progress, desc=f"task {t} classifier")
        m = _mask(d.test_y, seen)
        accs = accuracy_per_task(net, d.test_x[m], d.test_y[m], d.tasks[:t], self.device)
        row = {"accuracy": accs, "nfe": summarize_nfe(nfes, self.solver.name),
               "sampling_seconds": sampling_seconds, "classifier_seconds": secs,
               "classifier_data": "real" if use_real else "synthetic"}
        if cfg["fid"] and t == len(d.tasks) and not use_real:
            row["quality"] = self.quality(x, d.test_x[m])
        return row

    def feature_net(self):
        """ResNet18 on every real training image (cached): the offline FID extractor."""
        from .classifier import build_resnet18

        d, path = self.data, self.paths.feature_net
        classes = list(range(self.dataset.num_classes))
        if path.exists():
            net = build_resnet18(d.train_x.shape[1], len(classes))
            net.load_state_dict(torch.load(path, map_location="cpu"))
            net.classes = classes
            return net.to(self.device).eval()
        net, _ = train_classifier(d.train_x, d.train_y, classes, self.cfg["classifier"], self.cfg["seed"] * 1000 + 999,
                                  self.device, self.progress, desc="FID feature network")
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), path.with_suffix(".tmp"))
        os.replace(path.with_suffix(".tmp"), path)
        return net

    def quality(self, fake: torch.Tensor, real: torch.Tensor) -> dict:
        from .quality import image_quality

        extractor = self.cfg["fid_extractor"]
        net = self.feature_net() if extractor != "inception" else None
        t0 = time.perf_counter()
        q = image_quality(fake, real, extractor, net, self.device)
        return {**q, "seconds": time.perf_counter() - t0, "n_fake": len(fake), "n_real": len(real)}

    def record(self, acc, seconds, nfe, trainable, quality=None) -> dict[str, Any]:
        la, aia, abar = average_accuracies(acc)
        adapter = self.adapter
        return {
            "schema": 1,
            "cell": {"dataset": self.cfg["dataset"], "split": self.cfg["split"], "method": self.method_name,
                     "method_options": self.options, "scale": self.cfg["scale"], "seed": self.cfg["seed"],
                     "solver": self.cfg["solver"]},
            "tasks": self.data.tasks,
            "accuracy": acc, "avg_accuracy": abar, "la": la, "aia": aia,
            "ppc": adapter.ppc() if adapter is not None else 0,
            "embedding_params_per_class": adapter.embedding_params_per_class() if adapter is not None else 0,
            "trainable_per_task": trainable,
            "analysis": adapter_analysis(adapter) if adapter is not None else None,
            "nfe": nfe,
            "quality": quality,
            "seconds": {**seconds, "total": sum(sum(v) for v in seconds.values())},
            "device": str(self.device), "torch": torch.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": self.cfg,
        }


def adapter_analysis(adapter: methods.Adapter) -> dict[str, list[dict]]:
    """Tidy analysis records of the trained adapters (Figures 3-5)."""
    from methods import analysis

    return {"importance": analysis.layer_importance(adapter), "rank": analysis.modulation_rank(adapter),
            "function_parameters": analysis.function_parameters(adapter)}


def write_json_atomic(path: Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=float))
    os.replace(tmp, path)


def run_cell(cfg: dict, artifacts: str | Path | None = None, log=print) -> dict[str, Any]:
    """Run one cell end to end and return its record."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    return Cell(cfg, artifacts, log).run()
