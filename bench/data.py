"""Datasets as in-memory uint8 tensors, and class-incremental splits ``a-b``.

``fashion_mnist`` reads the Debian package's files offline (``apt-get install
dataset-fashion-mnist``) or downloads through torchvision; ``digits`` ships with
scikit-learn; ``cifar10`` / ``cifar100`` download through torchvision into data_root;
``imagenet100`` is an ImageFolder (train/ and val/) the user points to, resized to 64x64.
"""
from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import BenchError

DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class Dataset:
    """Train and test images (uint8, N x C x H x W) with integer labels."""

    name: str
    num_classes: int
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    @property
    def channels(self) -> int:
        return self.train_x.shape[1]


DATASETS = {"fashion_mnist": 10, "digits": 10, "cifar10": 10, "cifar100": 100, "imagenet100": 100}
NATIVE_SIZE = {"fashion_mnist": 28, "digits": 8, "cifar10": 32, "cifar100": 32, "imagenet100": 64}
CHANNELS = {"fashion_mnist": 1, "digits": 1, "cifar10": 3, "cifar100": 3, "imagenet100": 3}


def check_dataset(name: str) -> int:
    if name not in DATASETS:
        raise BenchError(f"unknown dataset {name!r}; datasets: {', '.join(DATASETS)}")
    return DATASETS[name]


# ---- class-incremental splits -------------------------------------------------------------
def parse_split(split: str, num_classes: int) -> list[int]:
    """Task sizes of split ``a-b`` (first task a classes, then b each) for num_classes classes."""
    m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", str(split))
    if not m:
        raise BenchError(f"cannot read split {split!r}: use a-b, e.g. 2-2 (first task 2 classes, then 2 per task)")
    first, step = int(m.group(1)), int(m.group(2))
    if first < 1 or step < 1 or first > num_classes or (num_classes - first) % step:
        raise BenchError(f"split {split} does not divide {num_classes} classes into tasks "
                         f"(need first task <= {num_classes} and the rest a multiple of {step})")
    return [first] + [step] * ((num_classes - first) // step)


def task_classes(split: str, num_classes: int, order: list[int] | None = None) -> list[list[int]]:
    """Labels of every task, in ``order`` (the natural order by default)."""
    order = list(range(num_classes)) if order is None else order
    sizes, out, start = parse_split(split, num_classes), [], 0
    for size in sizes:
        out.append(order[start:start + size])
        start += size
    return out


def class_order(num_classes: int, mode: str, seed: int) -> list[int]:
    if mode == "natural":
        return list(range(num_classes))
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(num_classes, generator=g).tolist()


# ---- loaders --------------------------------------------------------------------------------
def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _fashion_mnist(root: Path) -> tuple:
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    for folder in (DEBIAN_FMNIST, root / "FashionMNIST" / "raw"):
        files = [folder / (n + ".gz") if (folder / (n + ".gz")).exists() else folder / n for n in names]
        if all(f.exists() for f in files):
            tx, ty, vx, vy = (_read_idx(f) for f in files)
            return tx[:, None], ty, vx[:, None], vy
    try:
        from torchvision.datasets import FashionMNIST

        tr, te = (FashionMNIST(str(root), train=s, download=True) for s in (True, False))
    except Exception as exc:  # noqa: BLE001 - any download failure means "not available here"
        raise BenchError(f"Fashion-MNIST not found in {DEBIAN_FMNIST} or {root} and the download failed "
                         f"({type(exc).__name__}); on Debian run `apt-get install dataset-fashion-mnist`, "
                         f"or pass data_root= with network access") from None
    return tr.data.numpy()[:, None], tr.targets.numpy(), te.data.numpy()[:, None], te.targets.numpy()


def _digits(root: Path) -> tuple:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.clip(d.images * 16, 0, 255).astype(np.uint8)[:, None]  # 0..16 -> 0..255 (approximately)
    y = d.target
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))
    cut = int(0.8 * len(y))
    return x[idx[:cut]], y[idx[:cut]], x[idx[cut:]], y[idx[cut:]]


def _cifar(root: Path, which: str) -> tuple:
    from torchvision import datasets

    cls = datasets.CIFAR10 if which == "cifar10" else datasets.CIFAR100
    try:
        tr, te = (cls(str(root), train=s, download=True) for s in (True, False))
    except Exception as exc:  # noqa: BLE001
        raise BenchError(f"{which} is not in {root} and could not be downloaded ({type(exc).__name__}: "
                         f"{str(exc)[:80]}); download it with torchvision on a machine with network "
                         f"access and pass data_root=") from None
    return (tr.data.transpose(0, 3, 1, 2), np.array(tr.targets), te.data.transpose(0, 3, 1, 2), np.array(te.targets))


def _imagenet100(root: Path) -> tuple:
    from torchvision import datasets, transforms

    base = root / "imagenet100"
    if not (base / "train").is_dir() or not (base / "val").is_dir():
        raise BenchError(f"ImageNet100 not found: expected an ImageFolder with train/ and val/ under {base} "
                         f"(100 class folders each); pass data_root= pointing to its parent")
    tf = transforms.Compose([transforms.Resize(64), transforms.CenterCrop(64), transforms.PILToTensor()])
    out = []
    for part in ("train", "val"):
        ds = datasets.ImageFolder(str(base / part), transform=tf)
        xs = torch.stack([ds[i][0] for i in range(len(ds))]).numpy()
        out += [xs, np.array(ds.targets)]
    return tuple(out)


def ensure_available(name: str, data_root: str | Path) -> None:
    """Fail early (one BenchError line) when a dataset is missing; downloads what can be downloaded."""
    if name == "imagenet100":
        base = Path(data_root).expanduser() / "imagenet100"
        if not (base / "train").is_dir() or not (base / "val").is_dir():
            _imagenet100(Path(data_root).expanduser())  # raises the explanatory BenchError
        return
    load(name, data_root)


def load(name: str, data_root: str | Path) -> Dataset:
    """Load dataset ``name``; a missing dataset is a BenchError saying how to get it."""
    n = check_dataset(name)
    root = Path(data_root).expanduser()
    loader = {"fashion_mnist": _fashion_mnist, "digits": _digits, "imagenet100": _imagenet100}.get(name)
    tx, ty, vx, vy = loader(root) if loader else _cifar(root, name)
    t = lambda a, dt: torch.from_numpy(np.array(a, copy=True)).to(dt)  # noqa: E731
    return Dataset(name, n, t(tx, torch.uint8), t(ty, torch.long), t(vx, torch.uint8), t(vy, torch.long))


# ---- tensors for the models -------------------------------------------------------------------
def to_model_space(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images -> float in [-1, 1] at ``size`` (pad 28 -> 32 with black; else area resize)."""
    x = x.float() / 127.5 - 1.0
    h = x.shape[-1]
    if h == size:
        return x
    if size > h and (size - h) % 2 == 0 and size - h <= 8:
        p = (size - h) // 2
        return F.pad(x, (p, p, p, p), value=-1.0)
    return F.interpolate(x, size=(size, size), mode="area" if size < h else "bilinear", align_corners=None)


def subset(x: torch.Tensor, y: torch.Tensor, classes: list[int], per_class: int | None,
           seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The samples of ``classes`` (at most ``per_class`` each, a seeded choice)."""
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c in classes:
        idx = (y == c).nonzero(as_tuple=True)[0]
        if per_class is not None and idx.numel() > per_class:
            idx = idx[torch.randperm(idx.numel(), generator=g)[:per_class]].sort().values
        keep.append(idx)
    if not keep:
        return x[:0], y[:0]
    idx = torch.cat(keep)
    return x[idx], y[idx]
