"""Fast paths must compute what the plain code computes: FunLoRA's fused cosine modulation
and the sampling-time cache of adapted weights; the narrower evaluation classifier keeps
the stage keys and records of the default width."""
import pytest
import torch

import methods
from methods.funlora import CosineModulation, FunLoRA

from .conftest import randomized_unet


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_fused_cosine_modulation_equals_autograd(dtype, tol):
    torch.manual_seed(0)
    b = (1 + 0.3 * torch.randn(48, dtype=dtype)).requires_grad_()
    a = (1 + 0.3 * torch.randn(80, dtype=dtype)).requires_grad_()
    gamma = torch.randn(10, dtype=dtype).requires_grad_()
    omega = (torch.arange(1, 11, dtype=dtype) + 0.2 * torch.randn(10, dtype=dtype)).requires_grad_()
    upstream = torch.randn(48, 80, dtype=dtype)
    fused = CosineModulation.apply(b, a, gamma, omega)
    plain = FunLoRA.cosine_reference(b, a, gamma, omega)
    torch.testing.assert_close(fused, plain, atol=tol, rtol=tol)
    g_fused = torch.autograd.grad((fused * upstream).sum(), (b, a, gamma, omega))
    g_plain = torch.autograd.grad((plain * upstream).sum(), (b, a, gamma, omega))
    for name, x, y in zip("b a gamma omega".split(), g_fused, g_plain):
        scale = y.abs().max()
        assert ((x - y).abs().max() / scale) < 10 * tol, name


def test_fused_cosine_modulation_gradcheck():
    torch.manual_seed(1)
    args = [torch.randn(5, dtype=torch.float64, requires_grad=True), torch.randn(7, dtype=torch.float64, requires_grad=True),
            torch.randn(4, dtype=torch.float64, requires_grad=True), torch.rand(4, dtype=torch.float64, requires_grad=True)]
    assert torch.autograd.gradcheck(CosineModulation.apply, args)


@pytest.mark.parametrize("options", [{}, {"learn": False}, {"ratio": 4}])
def test_funlora_adapted_weight_matches_the_plain_formula(options):
    """M through the fused function equals the unfused formula for every cosine variant."""
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


def test_fused_and_unfused_funlora_train_alike():
    """A forward and backward through the whole adapted U-Net: same loss and gradients to float32 rounding."""
    results = []
    for fused in (True, False):
        m = methods.build("funlora", fused=fused).attach(randomized_unet(image_size=8, in_channels=1, num_classes=6))
        m.add_classes([4, 5])
        torch.manual_seed(3)
        with torch.no_grad():
            for p in m.class_params.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        t, x, y = torch.rand(6), torch.randn(6, 1, 8, 8), torch.tensor([4, 5, 0, 4, 5, 1])
        loss = m(t, x, y).pow(2).mean()
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in m.trainable_parameters()]))
    (l1, g1), (l2, g2) = results
    torch.testing.assert_close(l1, l2)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


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
