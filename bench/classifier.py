"""The evaluation classifier: torchvision ResNet18 with the CIFAR stem.

3x3 conv, stride 1, no max pool, any input channel count; SGD + OneCycleLR with
random crop (padding size/8) and horizontal flip. Accuracy is reported per task.
``width`` scales every stage's channels (64, 128, 256, 512 at the default 64, the
paper's); scale=cpu uses 32: a quarter of the FLOPs, 3.5x faster on 16 x 16 images. Width 16
would be 10x faster, but three classifier seeds on one synthetic set (vanilla_mul, seed 0)
spread over 2.5 points at width 16 and 0.8 at width 32: too noisy an instrument.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18
from torchvision.models.resnet import BasicBlock
from tqdm.auto import tqdm

from .precision import backward


class GlobalAvgPool(nn.Module):
    """The mean over height and width: torchvision's ``AdaptiveAvgPool2d(1)`` to the bit on the CPU,
    and deterministic on CUDA, where that module's backward has no deterministic kernel
    (``deterministic=true`` would fail at the first classifier step)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


def build_resnet18(in_channels: int, num_classes: int, width: int = 64) -> nn.Module:
    """ResNet18 with the CIFAR stem; stages of width, 2 width, 4 width, 8 width channels.

    At width 64 this is torchvision's network as it always was (same modules, same draws
    from the global generator). Other widths rebuild the stages with torchvision's own
    ``_make_layer`` and its initialisation (Kaiming-normal convs, BN at 1 / 0)."""
    net = resnet18(num_classes=num_classes)
    if width != 64:
        net.inplanes = width
        net.bn1 = nn.BatchNorm2d(width)
        for i, stage in enumerate(("layer1", "layer2", "layer3", "layer4")):
            setattr(net, stage, net._make_layer(BasicBlock, width * 2 ** i, 2, stride=1 if i == 0 else 2))
        net.fc = nn.Linear(8 * width, num_classes)
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
    net.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.avgpool = GlobalAvgPool()
    return net


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop with zero-padding size/8 (4 px at 32x32) and horizontal flip, per sample."""
    n, c, h, w = x.shape
    pad = max(1, h // 8)
    xp = F.pad(x, (pad, pad, pad, pad), value=float(x.min()))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (oy[:, None] + torch.arange(h))[:, :, None]          # n, h, 1
    cols = (ox[:, None] + torch.arange(w))[:, None, :]          # n, 1, w
    out = xp.permute(0, 2, 3, 1)[torch.arange(n)[:, None, None], rows.to(x.device), cols.to(x.device)]
    out = out.permute(0, 3, 1, 2)
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip.to(x.device)[:, None, None, None], out.flip(-1), out)


def train_classifier(x: torch.Tensor, y: torch.Tensor, classes: list[int], cfg: dict, seed: int,
                     device: torch.device, progress: bool = True, desc: str = "classifier") -> tuple[nn.Module, float]:
    """Train a fresh ResNet18 on (x, y) over ``classes``; returns (model, seconds)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    lut = torch.full((max(classes) + 1,), -1, dtype=torch.long)
    lut[torch.tensor(classes)] = torch.arange(len(classes))
    targets = lut[y]
    # channels_last: about 15% faster training and 1.5x faster prediction on a CPU (oneDNN)
    net = build_resnet18(x.shape[1], len(classes), cfg.get("width", 64)).to(device, memory_format=torch.channels_last)
    bs = cfg["batch_size"]
    per_epoch = max(1, -(-x.shape[0] // bs))
    total = per_epoch * cfg["epochs"]
    opt = torch.optim.SGD(net.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                          weight_decay=cfg["weight_decay"], nesterov=False)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=total)
    t0 = time.perf_counter()
    net.train()
    with tqdm(total=total, desc=desc, leave=False, disable=not progress, dynamic_ncols=True) as bar:
        for _ in range(cfg["epochs"]):
            perm = torch.randperm(x.shape[0], generator=g)
            for b in range(per_epoch):
                idx = perm[b * bs:(b + 1) * bs]
                xb = x[idx].to(device)
                if cfg.get("augment", True):
                    xb = augment(xb, g)
                xb = xb.contiguous(memory_format=torch.channels_last)
                loss = F.cross_entropy(net(xb), targets[idx].to(device))
                opt.zero_grad(set_to_none=True)
                backward(loss)   # outside autocast (bench/precision.py)
                opt.step()
                sched.step()
                bar.update(1)
    net.eval()
    net.classes = list(classes)  # type: ignore[attr-defined]
    return net, time.perf_counter() - t0


@torch.no_grad()
def predict(net: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 500) -> torch.Tensor:
    """Predicted labels (in the dataset's label space)."""
    classes = torch.tensor(net.classes)
    preds = [net(x[i:i + batch_size].to(device).contiguous(memory_format=torch.channels_last)).argmax(1).cpu()
             for i in range(0, x.shape[0], batch_size)]
    return classes[torch.cat(preds)] if preds else torch.empty(0, dtype=torch.long)


def accuracy_per_task(net: nn.Module, x: torch.Tensor, y: torch.Tensor, tasks: list[list[int]],
                      device: torch.device, pred: torch.Tensor | None = None) -> list[float]:
    """Accuracy (%) on the test images of each task in ``tasks``."""
    pred = predict(net, x, device) if pred is None else pred
    out = []
    for classes in tasks:
        mask = torch.isin(y, torch.tensor(classes))
        out.append(100.0 * (pred[mask] == y[mask]).float().mean().item() if mask.any() else float("nan"))
    return out


def accuracy_per_class(pred: torch.Tensor, y: torch.Tensor, classes: list[int]) -> dict[str, float]:
    """Accuracy (%) on the test images of each class (JSON keys: the class index as text)."""
    return {str(c): 100.0 * (pred[y == c] == c).float().mean().item() for c in classes if (y == c).any()}
