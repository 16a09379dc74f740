"""Datasets as in-memory uint8 tensors, and class-incremental splits ``a-b``.

Each dataset is one ``DatasetSpec`` in ``DATASETS`` (name, classes, channels, native
size, loader, how to get it), so a new dataset is one entry. ``fashion_mnist`` reads the
Debian package's files offline (``apt-get install dataset-fashion-mnist``) or downloads
through torchvision; ``digits`` ships with scikit-learn; ``cifar10`` / ``cifar100`` read
the python pickle batches in data_root (torchvision's layout; downloaded there by
torchvision when missing); ``imagenet100`` is an ImageFolder (train/ and val/) the user
points to, resized to 64x64.
"""
from __future__ import annotations

import difflib
import gzip
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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


def check_dataset(name: str) -> int:
    """The class count of dataset ``name`` (unknown name: one BenchError line)."""
    return spec(name).num_classes


def spec(name: str) -> "DatasetSpec":
    if not isinstance(name, str) or name not in DATASETS:
        close = difflib.get_close_matches(str(name), DATASETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise BenchError(f"unknown dataset {name!r}{hint}; datasets: {', '.join(DATASETS)}")
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


class _ArrayUnpickler(pickle.Unpickler):
    """Reads CIFAR's python batches (dicts of numpy arrays) and refuses any other global."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


CIFAR_LAYOUT = {"cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"),
                "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels")}


def _read_cifar_batches(folder: Path, names: list[str], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for name in names:
        path = folder / name
        try:
            with open(path, "rb") as f:
                batch = _ArrayUnpickler(f, encoding="latin1").load()
            x = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            y = np.asarray(batch[label_key], dtype=np.int64)
        except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as exc:
            raise BenchError(f"{path} is not a readable CIFAR batch ({type(exc).__name__}: {str(exc)[:80]}); "
                             f"move it aside and download the dataset again") from None
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def _cifar(root: Path, which: str) -> tuple:
    folder, train, test, label_key = CIFAR_LAYOUT[which]
    if not all((root / folder / n).exists() for n in train + test):
        from torchvision import datasets

        cls = datasets.CIFAR10 if which == "cifar10" else datasets.CIFAR100
        try:
            cls(str(root), train=True, download=True)
        except Exception as exc:  # noqa: BLE001 - any download failure means "not available here"
            raise BenchError(f"{which} is not in {root} and could not be downloaded ({type(exc).__name__}: "
                             f"{str(exc)[:80]}); {DATASETS[which].how_to_get}") from None
    tx, ty = _read_cifar_batches(root / folder, train, label_key)
    vx, vy = _read_cifar_batches(root / folder, test, label_key)
    return tx, ty, vx, vy


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


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: its classes, image format, loader (root -> uint8 NCHW train / test arrays
    and labels) and how a user gets it; ``default_split`` serves ``datasets=`` on a grid."""

    name: str
    num_classes: int
    channels: int
    native_size: int
    loader: Callable[[Path], tuple]
    how_to_get: str
    default_split: str
    throughput_only: bool = False      # random tensors: for timing runs, never in a table
    class_names: tuple[str, ...] = ()  # labels of sample grids and per-class tables (else the index)

    def name_of(self, c: int) -> str:
        return self.class_names[c] if c < len(self.class_names) else str(c)


def _synthetic(classes: int, channels: int, size: int, train: int, test: int) -> Callable[[Path], tuple]:
    """Random uint8 images (seeded, the same everywhere) of a real dataset's shape and class count."""
    def load(root: Path) -> tuple:
        rng = np.random.default_rng(0)
        out = []
        for per_class in (train, test):
            y = np.repeat(np.arange(classes), per_class)
            out += [rng.integers(0, 256, (len(y), channels, size, size), dtype=np.uint8), y]
        return tuple(out)

    return load


DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("fashion_mnist", 10, 1, 28, _fashion_mnist,
                "on Debian `apt-get install dataset-fashion-mnist`, else data_root= with network access", "2-2",
                class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                             "Bag", "Ankle boot")),
    DatasetSpec("digits", 10, 1, 8, _digits, "ships with scikit-learn", "2-2"),
    DatasetSpec("cifar10", 10, 3, 32, lambda root: _cifar(root, "cifar10"),
                "download it with torchvision on a machine with network access and pass data_root= "
                "(the folder holding cifar-10-batches-py/)", "2-2",
                class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                             "truck")),
    DatasetSpec("cifar100", 100, 3, 32, lambda root: _cifar(root, "cifar100"),
                "download it with torchvision on a machine with network access and pass data_root= "
                "(the folder holding cifar-100-python/)", "20-20"),
    DatasetSpec("imagenet100", 100, 3, 64, _imagenet100,
                "an ImageFolder with train/ and val/ (100 class folders each) under data_root/imagenet100", "20-20"),
    # Throughput only (no download, nothing to learn): the shapes and class counts of the paper's data.
    DatasetSpec("synthetic", 10, 3, 32, _synthetic(10, 3, 32, 5000, 1000), "generated", "2-2", True),
    DatasetSpec("synthetic100", 100, 3, 32, _synthetic(100, 3, 32, 500, 100), "generated", "20-20", True),
    DatasetSpec("synthetic64", 100, 3, 64, _synthetic(100, 3, 64, 500, 50), "generated", "20-20", True),
)}


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
    s = spec(name)
    tx, ty, vx, vy = s.loader(Path(data_root).expanduser())
    t = lambda a, dt: torch.from_numpy(np.array(a, copy=True)).to(dt)  # noqa: E731
    out = Dataset(name, s.num_classes, t(tx, torch.uint8), t(ty, torch.long), t(vx, torch.uint8), t(vy, torch.long))
    if out.train_x.shape[1] != s.channels or int(out.train_y.max()) >= s.num_classes:
        raise BenchError(f"{name} in {data_root} has {out.train_x.shape[1]} channels and labels up to "
                         f"{int(out.train_y.max())}; expected {s.channels} channels and {s.num_classes} classes")
    return out


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
