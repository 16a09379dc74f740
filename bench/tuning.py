"""``tune=lr``: choose the adapter learning rate on validation data carved from the training set.

For each candidate learning rate, a fresh adapter is trained on each tuned task's new
classes (the task's training images minus a class-stratified validation split) with the
cell's adapter schedule, on a copy of the frozen task-1 backbone, then scored:

- ``loss`` (default): the flow-matching loss of the held-out images of the task's new
  classes, with noise and times drawn from a fixed seed (lower is better);
- ``la``: the accuracy, on the held-out images of every seen class, of a ResNet18 trained
  on the tuning model's samples (higher is better; ``tasks=first`` only: later tasks
  would need every earlier task's tuned adapters).

The test set is never read. Scores are cached per candidate under the cell's tuning
folder, so a killed tuning resumes, and every cell that shares its adapters (same
backbone, method, schedule and tune settings, any solver) reuses the choice.
"""
from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import torch

import methods

from .classifier import accuracy_per_task, train_classifier
from .errors import BenchError
from .flow import cfm_loss
from .files import read_json
from .record import write_json_atomic

if TYPE_CHECKING:  # pragma: no cover
    from .protocol import Cell

LOSS_REPEATS = 4  # noise draws per held-out image: the criterion's own variance is small


def validation_split(y: torch.Tensor, classes: list[int], per_class: int, seed: int) -> torch.Tensor:
    """A class-stratified boolean mask over the *training* labels ``y``: ``per_class`` images of each
    class in ``classes`` (at most half of a class's images, so training keeps the rest)."""
    g = torch.Generator().manual_seed(seed % 2**63)
    mask = torch.zeros_like(y, dtype=torch.bool)
    for c in classes:
        idx = (y == c).nonzero(as_tuple=True)[0]
        k = min(per_class, idx.numel() // 2)
        if k < 1:
            raise BenchError(f"tune: class {c} has {idx.numel()} training images, too few for a validation split")
        mask[idx[torch.randperm(idx.numel(), generator=g)[:k]]] = True
    return mask


@torch.no_grad()
def held_out_loss(model, x: torch.Tensor, y: torch.Tensor, seed: int, device: torch.device,
                  batch_size: int = 256) -> float:
    """Mean CFM loss of (x, y) with noise and times from ``seed`` (repeated LOSS_REPEATS times)."""
    g = torch.Generator().manual_seed(seed % 2**63)
    total, count = 0.0, 0
    for _ in range(LOSS_REPEATS):
        for i in range(0, x.shape[0], batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            loss = cfm_loss(lambda t, xt, yy: model(t.to(device), xt.to(device), yy.to(device)).cpu(), xb, yb,
                            generator=g)
            total += float(loss) * xb.shape[0]
            count += xb.shape[0]
    return total / count


def _tasks(cell: "Cell") -> list[int]:
    adapter_tasks = list(range(2, len(cell.data.tasks) + 1))
    if not adapter_tasks:
        raise BenchError("tune=lr needs at least one adapter task (a split with more than one task)")
    return adapter_tasks[:1] if cell.cfg["tune"]["tasks"] == "first" else adapter_tasks


def score(cell: "Cell", lr: float, t: int) -> float:
    """The criterion after training a fresh adapter for task t's classes with learning rate ``lr``."""
    cfg, d, tune = cell.cfg, cell.data, cell.cfg["tune"]
    classes = d.tasks[t - 1]
    seen = [c for task in d.tasks[:t] for c in task]
    val = validation_split(d.train_y, seen if tune["criterion"] == "la" else classes, tune["val_per_class"],
                           cell.stage_seed("tune-split", t))
    fit = torch.isin(d.train_y, torch.tensor(classes)) & ~val
    unet = copy.deepcopy(cell.unet)  # the frozen backbone, untouched by the tuning adapters
    cell.seed_stage("tune-adapter-init", t)
    adapter = methods.build(cell.method_name, **cell.options).attach(unet)
    adapter.add_classes(classes)
    schedule = cell.schedule("adapter")
    schedule.lr = lr
    ckpt = cell.paths.tuning / f"lr{lr:g}_task{t}.pt"
    cell.train_generator(t, d.train_x[fit], d.train_y[fit], adapter.trainable_parameters(), adapter, ckpt, schedule,
                         stage=f"tune-{lr:g}")
    adapter.set_trainable([])
    if tune["criterion"] == "loss":
        m = val & torch.isin(d.train_y, torch.tensor(classes))
        return held_out_loss(adapter, d.train_x[m], d.train_y[m], cell.stage_seed("tune-val", t), cell.device)
    x, y, _, _ = cell.synthesize(adapter, seen, "tune-sampling", t)
    net, _ = train_classifier(x, y, seen, cfg["classifier"], cell.stage_seed("tune-classifier", t), cell.device,
                              cell.progress, desc=f"tune lr {lr:g} classifier")
    accs = accuracy_per_task(net, d.train_x[val], d.train_y[val], d.tasks[:t], cell.device)
    return sum(accs) / len(accs)


def tune_lr(cell: "Cell") -> dict[str, Any]:
    """Score every candidate, choose the best; returns the record's ``tuning.lr`` entry."""
    tune = cell.cfg["tune"]   # (criterion=la with tasks=all is refused by bench.config, before any work)
    tasks = _tasks(cell)
    done_path = cell.paths.tuning / "scores.json"
    done = read_json(done_path, lambda d: isinstance(d, dict) and all(isinstance(v, (int, float))
                                                                      for v in d.values())) or {}
    for lr in tune["lr"]:
        for t in tasks:
            key = f"{lr:g}/task{t}"
            if key not in done:
                done[key] = score(cell, lr, t)
                write_json_atomic(done_path, done)
    scores = [sum(done[f"{lr:g}/task{t}"] for t in tasks) / len(tasks) for lr in tune["lr"]]
    finite = [(s, lr) for s, lr in zip(scores, tune["lr"]) if math.isfinite(s)]
    if not finite:
        raise BenchError("tune: every candidate learning rate diverged (no finite score)")
    chosen = (min(finite) if tune["criterion"] == "loss" else max(finite))[1]
    cell.log(f"tuned adapter lr: {chosen:g} ({tune['criterion']} per candidate: "
             + ", ".join(f"{lr:g}: {s:.4g}" for lr, s in zip(tune["lr"], scores)) + ")")
    return {"candidates": list(tune["lr"]), "scores": scores, "chosen": chosen, "criterion": tune["criterion"],
            "tasks": tasks, "val_per_class": tune["val_per_class"]}
