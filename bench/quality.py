"""Image quality through torch-fidelity: FID, KID, precision and recall.

Extractors: ``inception`` (torch-fidelity's defaults: Inception-v3 for FID / KID, VGG16 for
precision / recall; their weights download at first use or are read from
$TORCH_HOME/hub/checkpoints), and ``classifier``: the penultimate features (512-d) of a
ResNet18 trained on the real training set, registered with torch-fidelity as an offline
extractor. ``auto`` takes ``inception`` where its weights can be had and ``classifier``
elsewhere. The extractor's name travels with every number.
"""
from __future__ import annotations

import hashlib

import torch
from torch import nn

_REGISTERED: dict[str, nn.Module] = {}


def to_uint8(x: torch.Tensor, rgb: bool = False) -> torch.Tensor:
    """Model-space images in [-1, 1] -> uint8 (N, C, H, W); grey to RGB when ``rgb``."""
    u8 = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return u8.repeat(1, 3, 1, 1) if rgb and u8.shape[1] == 1 else u8


class TensorImages(torch.utils.data.Dataset):
    """Bare uint8 CHW tensors, the input torch-fidelity expects."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def register_classifier_extractor(net: nn.Module) -> str:
    """Register ``net``'s penultimate features with torch-fidelity; returns the extractor's name."""
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase
    from torch_fidelity.registry import register_feature_extractor

    digest = hashlib.sha1(b"".join(p.detach().cpu().numpy().tobytes()[:4096] for p in net.parameters())).hexdigest()[:10]
    name = f"funlora-resnet18-{digest}"
    if name in _REGISTERED:
        return name
    body = nn.Sequential(*list(net.children())[:-1]).eval()  # everything but fc

    class ClassifierFeatures(FeatureExtractorBase):
        def __init__(self, name, features_list, **kwargs):
            super().__init__(name, features_list)
            self.body = body

        @staticmethod
        def get_provided_features_list():
            return ("penultimate",)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return "penultimate"

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return None

        def forward(self, x):
            device = next(self.body.parameters()).device
            x = x.to(device).float() / 127.5 - 1.0
            with torch.no_grad():
                return (self.body(x).flatten(1).double().cpu(),)

    register_feature_extractor(name, ClassifierFeatures)
    _REGISTERED[name] = net
    return name


def image_quality(fake: torch.Tensor, real: torch.Tensor, extractor: str = "auto", net: nn.Module | None = None,
                  device: torch.device | None = None) -> dict:
    """FID, KID, precision, recall of ``fake`` against ``real`` (both model-space tensors)."""
    import torch_fidelity

    cuda = device is not None and device.type == "cuda"
    n = min(len(fake), len(real))
    common = dict(cuda=cuda, fid=True, kid=True, prc=True, verbose=False, save_cpu_ram=not cuda,
                  kid_subset_size=min(1000, n), cache=False)
    if extractor in ("auto", "inception"):
        try:
            m = torch_fidelity.calculate_metrics(input1=TensorImages(to_uint8(fake, rgb=True)),
                                                 input2=TensorImages(to_uint8(real, rgb=True)), **common)
            return _tidy(m, "inception-v3/vgg16")
        except Exception as exc:  # noqa: BLE001 - no weights and no network: fall back or explain
            if extractor == "inception":
                raise RuntimeError(f"torch-fidelity's Inception / VGG16 weights are not available ({exc}); "
                                   f"use fid_extractor=classifier offline") from None
    if net is None:
        raise ValueError("the classifier extractor needs the trained feature network")
    name = register_classifier_extractor(net)
    m = torch_fidelity.calculate_metrics(input1=TensorImages(to_uint8(fake)), input2=TensorImages(to_uint8(real)),
                                         feature_extractor=name, **common)
    return _tidy(m, "resnet18-real-penultimate")


def _tidy(m: dict, extractor: str) -> dict:
    return {"extractor": extractor, "fid": float(m["frechet_inception_distance"]),
            "kid": float(m["kernel_inception_distance_mean"]), "precision": float(m["precision"]),
            "recall": float(m["recall"])}
