"""The paper's datasets, offline: tiny sets written in their real on-disk formats, through smoke cells.

CIFAR-10 / CIFAR-100 as torchvision downloads them (python pickle batches in
cifar-10-batches-py/ and cifar-100-python/), ImageNet100 as an ImageFolder of PNGs at
another size than the model's. Each goes through its DatasetSpec's loader and a cell.
"""
import pickle

import numpy as np
import pytest
from PIL import Image

from bench import config, data
from bench.errors import BenchError
from bench.protocol import run_cell


def _batch(n_per_class: int, classes: int, label_key: str, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    # Class-dependent mean brightness, so the classifier has something to learn.
    base = (labels * (200 // classes))[:, None] + rng.integers(0, 40, (labels.size, 3072))
    return {"batch_label": "testing batch", label_key: labels.tolist(),
            "data": np.clip(base, 0, 255).astype(np.uint8), "filenames": [f"img{i}.png" for i in range(labels.size)]}


def write_cifar(root, which: str, train_per_class: int = 12, test_per_class: int = 4):
    folder, train, test, key = data.CIFAR_LAYOUT[which]
    classes = data.DATASETS[which].num_classes
    (root / folder).mkdir(parents=True)
    for i, name in enumerate(train + test):
        n = train_per_class // len(train) if name in train else test_per_class
        with open(root / folder / name, "wb") as f:
            pickle.dump(_batch(max(1, n), classes, key, seed=i), f, protocol=2)


def write_imagenet100(root, per_class: int = 2, size: int = 20):
    rng = np.random.default_rng(0)
    for part in ("train", "val"):
        for c in range(100):
            folder = root / "imagenet100" / part / f"n{c:08d}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                img = np.clip(c * 2 + rng.integers(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{i}.png")


def _cell(dataset, split, root, tmp_path):
    cfg = config.resolve({"dataset": dataset, "split": split, "method": {"name": "vanilla_mul"}, "scale": "smoke",
                          "data_root": str(root), "progress": False, "workdir": str(tmp_path / "art"),
                          "sampling": {"per_class": 2}})
    return run_cell(cfg, log=lambda *_: None)


def test_cifar10_pickle_batches_through_a_cell(tmp_path):
    write_cifar(tmp_path, "cifar10", train_per_class=10)
    ds = data.load("cifar10", tmp_path)
    assert ds.train_x.shape == (100, 3, 32, 32) and ds.test_x.shape == (40, 3, 32, 32)
    assert sorted(set(ds.train_y.tolist())) == list(range(10))
    rec = _cell("cifar10", "6-2", tmp_path, tmp_path)
    assert rec.tasks == [[0, 1, 2, 3, 4, 5], [6, 7], [8, 9]] and rec.ppc > 0
    assert rec.config["dataset"] == "cifar10"


def test_cifar100_pickle_batches_through_a_cell(tmp_path):
    write_cifar(tmp_path, "cifar100", train_per_class=2, test_per_class=1)
    ds = data.load("cifar100", tmp_path)
    assert ds.num_classes == 100 and ds.train_x.shape == (200, 3, 32, 32)
    rec = _cell("cifar100", "50-50", tmp_path, tmp_path)
    assert len(rec.tasks) == 2 and len(rec.tasks[1]) == 50


def test_imagenet100_image_folder_through_a_cell(tmp_path):
    write_imagenet100(tmp_path)
    ds = data.load("imagenet100", tmp_path)
    assert ds.train_x.shape == (200, 3, 64, 64)  # resized from 20x20 to the native 64x64
    rec = _cell("imagenet100", "50-50", tmp_path, tmp_path)
    assert len(rec.tasks) == 2


def test_a_pickle_with_code_is_refused(tmp_path):
    write_cifar(tmp_path, "cifar10")

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({"data": Evil(), "labels": []}, f)
    with pytest.raises(BenchError, match="not a readable CIFAR batch.*builtins.print is not allowed"):
        data.load("cifar10", tmp_path)


def test_unknown_dataset_never_falls_through():
    with pytest.raises(BenchError, match="unknown dataset 'cifar1O' \\(did you mean 'cifar10'\\?\\)"):
        data.spec("cifar1O")
    assert set(data.DATASETS) == {"fashion_mnist", "digits", "cifar10", "cifar100", "imagenet100",
                                  "synthetic", "synthetic100", "synthetic64"}
    assert {n for n, s in data.DATASETS.items() if s.throughput_only} == {"synthetic", "synthetic100", "synthetic64"}
    for name, s in data.DATASETS.items():
        assert s.name == name and s.num_classes in (10, 100) and s.channels in (1, 3) and s.how_to_get
