"""Golden facts of the paper's U-Net (torchcfm layout)."""
import json

import torch
from torch import nn

from bench.inspect import main as inspect_main
from bench.unet import build_unet
from methods.targets import conv2d_layers

PAPER_40_54 = [
    "output_blocks.4.0.skip_connection",
    "output_blocks.5.0.in_layers.2", "output_blocks.5.0.out_layers.3", "output_blocks.5.0.skip_connection",
    "output_blocks.5.1.conv",
    "output_blocks.6.0.in_layers.2", "output_blocks.6.0.out_layers.3", "output_blocks.6.0.skip_connection",
    "output_blocks.7.0.in_layers.2", "output_blocks.7.0.out_layers.3", "output_blocks.7.0.skip_connection",
    "output_blocks.8.0.in_layers.2", "output_blocks.8.0.out_layers.3", "output_blocks.8.0.skip_connection",
    "output_blocks.8.2.conv",
]


def count(m):
    return sum(p.numel() for p in m.parameters())


def test_cifar10_golden_parameter_counts():
    assert count(build_unet("cifar10")) == 35_751_427
    assert count(build_unet("cifar10", num_classes=100)) == 35_797_507
    assert count(build_unet("cifar10", num_classes=None)) == 35_746_307


def test_cifar10_conv2d_indices():
    unet = build_unet("cifar10")
    convs = conv2d_layers(unet)
    assert len(convs) == 65
    assert sum(isinstance(m, nn.Conv1d) for m in unet.modules()) == 12
    assert [n for n, _ in convs[40:55]] == PAPER_40_54
    assert convs[40][1].in_channels == 512 and convs[40][1].out_channels == 256
    assert (convs[51][1].in_channels, convs[51][1].out_channels) == (384, 256)


def test_imagenet64_output_blocks_4_to_8_are_40_to_56():
    convs = conv2d_layers(build_unet("imagenet64"))
    names = [n for n, _ in convs]
    assert names[40].startswith("output_blocks.4.") and names[56].startswith("output_blocks.8.")
    assert not names[39].startswith("output_blocks.4.") and not names[57].startswith("output_blocks.8.")


def test_forward_shape_and_time_conventions():
    unet = build_unet("tiny", image_size=8, in_channels=1, num_classes=4)
    x = torch.randn(3, 1, 8, 8)
    y = torch.tensor([0, 1, 3])
    assert unet(torch.rand(3), x, y).shape == x.shape
    assert unet(torch.tensor(0.5), x, y).shape == x.shape  # scalar t broadcasts


def test_inspect_json(capsys):
    assert inspect_main(["model=cifar10", "format=json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 35_751_427
    assert len(info["conv2d"]) == 65
    assert info["conv2d"][40] == {"index": 40, "name": "output_blocks.4.0.skip_connection",
                                  "in_channels": 512, "out_channels": 256, "kernel_size": 1}


def test_inspect_with_method(capsys):
    assert inspect_main(["model=cifar10", "method=funlora", "format=json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["ppc"] == 10_028
    assert info["trainable"] == 10_028 + 512  # adapter + the class's embedding row
    assert inspect_main(["model=cifar10", "format=table"]) == 0
    assert "35,751,427" in capsys.readouterr().out
