"""Image quality through torch-fidelity with the offline classifier extractor, on real images."""
import torch

from bench import data
from bench.classifier import train_classifier
from bench.quality import image_quality


def test_fid_real_vs_real_is_near_zero_and_below_real_vs_noise():
    d = data.load("digits", "/nonexistent")
    x = data.to_model_space(d.train_x, 8)
    net, _ = train_classifier(x, d.train_y, list(range(10)), {"epochs": 2, "batch_size": 64, "lr": 0.05,
                                                             "momentum": 0.9, "weight_decay": 5e-4, "augment": False},
                              seed=0, device=torch.device("cpu"), progress=False)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(x.shape[0], generator=g)
    a, b = x[perm[:600]], x[perm[600:1200]]
    noise = torch.rand(600, *x.shape[1:], generator=g) * 2 - 1
    same = image_quality(a, b, "classifier", net)
    other = image_quality(noise, b, "classifier", net)
    assert same["extractor"] == other["extractor"] == "resnet18-real-penultimate"
    assert same["fid"] < 0.1 * other["fid"]
    # Precision / recall of two halves of one real set are high; their ranking against noise is not
    # asserted: it depends on the feature net, which a different thread count trains differently.
    assert same["precision"] >= 0.8 and same["recall"] >= 0.8
    assert all(0.0 <= q[k] <= 1.0 for q in (same, other) for k in ("precision", "recall"))
    assert abs(image_quality(a, a, "classifier", net)["fid"]) < 1e-3  # identical sets
