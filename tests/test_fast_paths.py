"""Fast paths must compute what the plain code computes: FunLoRA's cosine modulation (its
kernels: tests/test_cosine_kernel.py) and the sampling-time cache of adapted weights; the
narrower evaluation classifier keeps the stage keys and records of the default width."""
import pytest
import torch

import methods
from methods.funlora import FunLoRA

from .conftest import randomized_unet


@pytest.mark.parametrize("options", [{}, {"learn": False}, {"ratio": 4}])
def test_funlora_adapted_weight_matches_the_plain_formula(options):
    """M through the default kernel equals the plain formula for every cosine variant."""
    m = methods.build("funlora", **options).attach(randomized_unet(image_size=8, in_channels=1, num_classes=6))
    m.add_classes([4])
    with torch.no_grad():
        for p in m.class_params.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    for key, params in m.class_params["4"].layers.items():
        w = m._layer(key).base.weight
        c_out, c_in = w.shape[:2]
        b, a = m._full(params["B"], c_out), m._full(params["A"], c_in)
        omega = params["omega"] if "omega" in params else torch.arange(1, 11, dtype=torch.float32)
        torch.testing.assert_close(m.modulation(params, c_out, c_in),
                                   FunLoRA.cosine_reference(b, a, params["gamma"], omega))


def test_sampling_reuses_adapted_weights_until_parameters_change():
    m = methods.build("funlora").attach(randomized_unet(image_size=8, in_channels=1, num_classes=6))
    m.add_classes([4, 5])
    t, x, y = torch.rand(4), torch.randn(4, 1, 8, 8), torch.tensor([4, 5, 4, 0])
    calls = []
    original = m.adapted_weight
    m.adapted_weight = lambda *args: calls.append(1) or original(*args)
    with torch.no_grad():
        first = m(t, x, y)
        n = len(calls)
        second = m(t, x, y)
        assert len(calls) == n and torch.equal(first, second)      # every W'_y reused
    opt = torch.optim.SGD(m.trainable_parameters(), lr=0.1)
    m(t, x, y).pow(2).mean().backward()
    opt.step()
    with torch.no_grad():
        third = m(t, x, y)
    assert len(calls) > 2 * n and not torch.equal(first, third)   # recomputed after the step
    with torch.no_grad():
        m(t, x, torch.tensor([5, 5, 5, 5]))
    assert {c for _, c in m._weights} == {5}                        # only the batch's classes are kept


def test_classifier_width_scales_every_stage_and_64_is_torchvision():
    from torchvision.models import resnet18

    from bench.classifier import build_resnet18

    torch.manual_seed(0)
    net = build_resnet18(1, 10)
    torch.manual_seed(0)
    ref = resnet18(num_classes=10)
    ref.conv1 = torch.nn.Conv2d(1, 64, 3, 1, 1, bias=False)
    ref_state = ref.state_dict()
    assert all(torch.equal(v, ref_state[k]) for k, v in net.state_dict().items())   # width 64: unchanged
    narrow = build_resnet18(1, 10, width=32)
    assert sum(p.numel() for p in net.parameters()) == 11_172_810
    assert sum(p.numel() for p in narrow.parameters()) == 2_797_034
    assert [narrow.layer1[0].conv1.out_channels, narrow.layer2[0].conv1.out_channels,
            narrow.layer3[0].conv1.out_channels, narrow.layer4[0].conv1.out_channels] == [32, 64, 128, 256]
    assert narrow(torch.randn(2, 1, 16, 16)).shape == (2, 10)


def test_keys_and_records_from_before_the_width_option_stay_valid():
    """Width 64 keeps the stage keys it always had and old records missing the key are not
    stale; scale=cpu (width 32) computes something else, so its old records are."""
    from bench import config
    from bench.record import with_added_keys
    from bench.stages import evaluation_key, feature_net_key, first_task_key

    for scale in ("paper", "cpu"):
        cfg = config.resolve({"scale": scale, "method": {"name": "funlora"}, "dataset": "fashion_mnist"})
        old = {**cfg, "classifier": {k: v for k, v in cfg["classifier"].items() if k != "width"}}
        for k in ("precision", "compile", "sample_grid"):
            old.pop(k)
        same = scale == "paper"
        assert (with_added_keys(old) == with_added_keys(cfg)) is same
        for key in (evaluation_key, first_task_key, feature_net_key):
            assert (key(old) == key(cfg)) is same


def test_the_bounds_keep_their_stages_when_the_adapter_schedule_changes():
    """The generative and classifier bounds never train with generator.adapter: a sweep over
    adapter schedules reuses their stages instead of retraining the multitask generator."""
    from bench import config
    from bench.stages import evaluation_key, generator_key

    for method, kept in (("multitask_generator", True), ("multitask_classifier", True), ("funlora", False),
                         ("conditioning_only", False)):
        cfg = config.resolve({"scale": "cpu", "method": {"name": method}, "dataset": "fashion_mnist"})
        other = {**cfg, "generator": {**cfg["generator"], "adapter": {**cfg["generator"]["adapter"], "max_steps": 7}}}
        task1 = {**cfg, "generator": {**cfg["generator"], "task1": {**cfg["generator"]["task1"], "max_steps": 7}}}
        for key in (generator_key, evaluation_key):
            assert (key(other) == key(cfg)) is kept, (method, key.__name__)
            if method != "multitask_classifier":
                assert key(task1) != key(cfg)   # every generator starts from a task-1 schedule
