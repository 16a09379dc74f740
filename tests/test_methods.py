"""methods/: registry, exact PPC, identity at init, no forgetting, mixed batches, save / load."""
import math

import pytest
import torch

import methods
from bench.unet import build_unet
from methods.funlora import exact_inverse
from methods.targets import MethodError, parse_layers

from .conftest import randomized_unet

ADAPTERS = [m for m in methods.available()]

# ---- exact parameters per class ---------------------------------------------------------
RANGES = {"0-64": 34_054, "5-54": 29_440, "15-44": 18_432, "15-54": 24_832, "25-44": 13_312, "25-54": 19_712,
          "35-54": 13_056, "40-54": 9_728, "45-54": 6_400, "40-49": 6_656, "45-49": 3_328}


def meta_unet(name):
    """Paper-size backbones on the meta device: shapes without allocation (fast)."""
    with torch.device("meta"):
        return build_unet(name)


@pytest.mark.parametrize("layers,ppc", list(RANGES.items()))
def test_rank1_product_ppc_per_range(layers, ppc):
    assert methods.build("vanilla_mul", layers=layers).attach(meta_unet("cifar10")).ppc() == ppc


@pytest.mark.parametrize("name,options,ppc", [
    ("funlora", {}, 10_028), ("funlora_cosine_fixed", {}, 9_878),
    ("funlora", {"ratio": 2}, 5_164), ("funlora", {"ratio": 4}, 2_732),
    ("funlora", {"ratio": 8}, 1_516), ("funlora", {"ratio": 16}, 908),
    ("scale_shift", {}, 11_776), ("lora_attention", {}, 18_432),
    ("lora_conv_v1", {}, 57_856), ("lora_conv_v2", {}, 37_376),
    ("vanilla_add", {}, 9_728), ("mul_add", {}, 19_456), ("conditioning_only", {}, 0),
])
def test_cifar10_ppc(name, options, ppc):
    m = methods.build(name, **options).attach(meta_unet("cifar10"))
    assert m.ppc() == ppc
    m.add_classes([9])  # the count is the allocated one, before and after allocation
    assert sum(p.numel() for p in m.class_params["9"].layers.parameters()) == ppc
    assert m.embedding_params_per_class() == 512


@pytest.mark.parametrize("name,ppc", [("funlora", 13_652), ("scale_shift", 16_128), ("lora_attention", 75_264)])
def test_imagenet64_ppc(name, ppc):
    assert methods.build(name).attach(meta_unet("imagenet64")).ppc() == ppc


# ---- registry and targets -------------------------------------------------------------------
def test_registry_errors_list_what_exists():
    with pytest.raises(MethodError, match="available: .*funlora"):
        methods.build("funlroa")
    with pytest.raises(MethodError, match="did you mean 'funlora'"):
        methods.build("funlroa")
    with pytest.raises(MethodError, match="has no option 'k'.*K"):
        methods.build("funlora", k=3)
    with pytest.raises(MethodError, match="function must be one of"):
        methods.build("funlora", function="tanh")


def test_layer_ranges():
    assert parse_layers("40-54", 65) == list(range(40, 55))
    assert parse_layers("[0-64]", 65) == list(range(65))
    assert parse_layers("0-2,40-41", 65) == [0, 1, 2, 40, 41]
    assert parse_layers(["0-1", 5], 65) == [0, 1, 5]
    with pytest.raises(MethodError, match="outside the backbone: its Conv2d indices are 0-64"):
        parse_layers("40-70", 65)
    with pytest.raises(MethodError, match="cannot read"):
        parse_layers("forty", 65)


def test_target_by_module_names(tiny_unet):
    m = methods.build("vanilla_mul", target_modules=["out.2", "input_blocks.0.0"]).attach(tiny_unet)
    assert [v["name"] for v in m.layer_info.values()] == ["input_blocks.0.0", "out.2"]
    with pytest.raises(MethodError, match="no Conv2d named"):
        methods.build("vanilla_mul", target_modules=["nope"]).attach(randomized_unet(image_size=8, in_channels=1))


# ---- identity at initialisation and no forgetting ------------------------------------------
def _inputs(n=6, classes=(4, 5), seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    t = torch.rand(n, generator=g)
    y = torch.tensor([classes[i % len(classes)] for i in range(n)])
    return t, x, y


@pytest.mark.parametrize("name", ADAPTERS)
def test_identity_at_initialisation(name):
    unet = randomized_unet(image_size=8, in_channels=1, num_classes=6)
    t, x, y = _inputs(classes=(0, 4, 5))
    with torch.no_grad():
        before = unet(t, x, y)
    # oft / boft need block_size to divide c_out (the tiny U-Net's output conv has c_out 1): their default layers.
    m = methods.build(name, layers="all").attach(unet) \
        if name not in ("lora_attention", "conditioning_only", "oft", "boft") else methods.build(name).attach(unet)
    if name == "lora_attention":
        unet2 = randomized_unet("small", image_size=16, in_channels=1, num_classes=6, attention_resolutions="8")
        t2, x2 = torch.rand(6), torch.randn(6, 1, 16, 16)
        with torch.no_grad():
            before = unet2(t2, x2, y)
        m = methods.build(name).attach(unet2)
        t, x = t2, x2
    m.add_classes([4, 5])
    with torch.no_grad():
        after = m(t, x, y)
    # Exact: every adapter's identity is built from exact float operations (x * 1, W * 1, + 0).
    assert torch.equal(before, after), (before - after).abs().max()


# No forgetting (old classes bit-identical after new classes are trained) is part of the
# contract kit, run on every registered method below (test_every_method_passes_the_contract).


# ---- mixed-label batches ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["vanilla_mul", "funlora", "scale_shift", "lora_conv_v1", "mul_add"])
def test_mixed_batch_equals_per_class_batches(name):
    m = methods.build(name, layers="all").attach(randomized_unet(image_size=8, in_channels=1, num_classes=6))
    m.add_classes([3, 4])
    with torch.no_grad():
        for p in m.class_params.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    t, x, y = _inputs(9, (0, 3, 4))
    with torch.no_grad():
        mixed = m(t, x, y)
        for c in (0, 3, 4):
            sel = y == c
            assert torch.allclose(mixed[sel], m(t[sel], x[sel], y[sel]), atol=1e-5)


# ---- FunLoRA specifics ----------------------------------------------------------------------
def _funlora_params(name, c_out=6, c_in=7, K=3, seed=0):
    m = methods.build(name, K=K)
    torch.manual_seed(seed)
    conv = torch.nn.Conv2d(c_in, c_out, 1)
    params = torch.nn.ParameterDict({k: torch.nn.Parameter(v) for k, v in m.new_layer_params("l", conv).items()})
    return m, params


def test_rshift_rank_is_K_for_generic_factors():
    m, p = _funlora_params("funlora_rshift", c_out=12, c_in=9, K=4)
    with torch.no_grad():
        p["B"].copy_(torch.randn(12))
        p["A"].copy_(torch.randn(9))
        p["gamma"].copy_(torch.randn(4))
    assert torch.linalg.matrix_rank(m.modulation(p, 12, 9)).item() == 4


def test_cosine_rank_can_exceed_K():
    m, p = _funlora_params("funlora", c_out=40, c_in=40, K=2)
    with torch.no_grad():
        p["B"].copy_(torch.linspace(-2, 2, 40))
        p["A"].copy_(torch.linspace(-1.5, 2.5, 40))
        p["gamma"].copy_(torch.tensor([1.0, 0.5]))
    rank = torch.linalg.matrix_rank(m.modulation(p, 40, 40).double()).item()
    assert rank > 2


def test_power_surrogate_has_no_nan_and_gradients_reach_everything():
    m, p = _funlora_params("funlora_power_learned", K=3)
    with torch.no_grad():
        p["B"].copy_(torch.tensor([-1.5, 0.0, 0.5, -0.2, 2.0, 1.0]))
        p["p"].copy_(torch.tensor([0.5, 1.7, 2.3]))
        p["gamma"].copy_(torch.tensor([0.3, 0.3, 0.4]))
    M = m.modulation(p, 6, 7)
    M.sum().backward()
    assert torch.isfinite(M).all()
    for name in ("B", "A", "gamma", "p"):
        assert p[name].grad is not None and torch.isfinite(p[name].grad).all() and p[name].grad.abs().sum() > 0


def test_cosine_gradients_reach_B_A_gamma_omega():
    m, p = _funlora_params("funlora", K=3)
    with torch.no_grad():
        p["gamma"].add_(0.1)
    (m.modulation(p, 6, 7) * torch.randn(6, 7)).sum().backward()
    for name in ("B", "A", "gamma", "omega"):
        assert p[name].grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["funlora", "funlora_cosine_fixed", "funlora_power", "funlora_power_learned",
                                  "funlora_rshift"])
def test_functional_init_makes_M_exactly_one(name):
    m, p = _funlora_params(name, K=10)
    assert torch.equal(m.modulation(p, 6, 7), torch.ones(6, 7))


def test_exact_inverse():
    c = torch.cos(torch.tensor(1.0)).item()
    g = exact_inverse(c)
    assert (torch.tensor(g) * torch.tensor(c)).item() == 1.0
    assert math.isclose(g, 1 / math.cos(1.0), rel_tol=1e-6)


# ---- save and load one class ----------------------------------------------------------------
def test_save_load_class_gives_bit_identical_outputs(tmp_path):
    unet = randomized_unet(image_size=8, in_channels=1, num_classes=6)
    backbone = {k: v.clone() for k, v in unet.state_dict().items()}
    m = methods.build("funlora").attach(unet)
    m.add_classes([4])
    with torch.no_grad():
        for p in m.class_params.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    m.save_class(4, tmp_path / "c4")
    t, x, y = _inputs(4, (4,))
    with torch.no_grad():
        ref = m(t, x, y)
    fresh = build_unet("tiny", image_size=8, in_channels=1, num_classes=6)
    fresh.load_state_dict(backbone)
    m2 = methods.build("funlora").attach(fresh)
    assert m2.load_class(tmp_path / "c4") == 4
    with torch.no_grad():
        assert torch.equal(ref, m2(t, x, y))
    from bench.flow import SolverConfig, sample

    solver = SolverConfig(name="rk4", steps=3)
    s1, _ = sample(m, y, (1, 8, 8), solver, generator=torch.Generator().manual_seed(0))
    s2, _ = sample(m2, y, (1, 8, 8), solver, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s1, s2)  # bit-identical samples
    with pytest.raises(MethodError, match="holds a 'funlora' adapter"):
        methods.build("vanilla_mul").attach(build_unet("tiny", image_size=8, in_channels=1, num_classes=6)) \
            .load_class(tmp_path / "c4")


def test_vanilla_mul_feature_form_equals_weight_form():
    unet = randomized_unet(image_size=8, in_channels=1, num_classes=6)
    state = {k: v.clone() for k, v in unet.state_dict().items()}
    w = methods.build("vanilla_mul", layers="all").attach(unet)
    unet2 = build_unet("tiny", image_size=8, in_channels=1, num_classes=6)
    unet2.load_state_dict(state)
    f = methods.build("vanilla_mul", layers="all", form="feature").attach(unet2.eval())
    for m in (w, f):
        m.add_classes([3, 4])
        torch.manual_seed(5)
        with torch.no_grad():
            for p in m.class_params.parameters():
                p.add_(torch.randn_like(p) * 0.1)
    t, x, y = _inputs(9, (0, 3, 4))
    with torch.no_grad():
        assert torch.allclose(w(t, x, y), f(t, x, y), rtol=1e-5, atol=1e-5)
    with pytest.raises(MethodError, match="form=feature needs method.rank=1"):
        methods.build("vanilla_mul", form="feature", rank=2)


def test_grouped_conv_path_matches_per_class_batches(monkeypatch):
    from methods import base

    calls = []
    original = base.Adapter._grouped_conv
    monkeypatch.setattr(base.Adapter, "_grouped_conv", lambda self, *a: calls.append(1) or original(self, *a))
    m = methods.build("funlora", layers="all", grouped_conv=True).attach(
        randomized_unet(image_size=8, in_channels=1, num_classes=6))
    m.add_classes([3, 4])
    with torch.no_grad():
        for p in m.class_params.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    t, x, y = _inputs(7, (0, 3, 4, 4))  # unequal group sizes: padding is exercised
    with torch.no_grad():
        mixed = m(t, x, y)
        for c in (0, 3, 4):
            sel = y == c
            assert torch.allclose(mixed[sel], m(t[sel], x[sel], y[sel]), atol=1e-5)
    assert calls  # the grouped path really ran


# ---- the contract kit, on every registered method ----------------------------------------------
@pytest.mark.parametrize("name", ADAPTERS)
def test_every_method_passes_the_contract(name):
    from methods.testing import check_adapter

    check_adapter(name)


def test_contract_kit_catches_a_broken_method():
    from dataclasses import dataclass

    from methods.base import Adapter, AdapterOptions
    from methods.testing import check_adapter

    class NotIdentity(Adapter):
        def new_layer_params(self, key, module):
            return {"s": torch.full((module.out_channels,), 1.5)}

        def adapted_weight(self, key, weight, params):
            return weight * params["s"].view(-1, 1, 1, 1)

    with pytest.raises(AssertionError, match="not the identity at initialisation"):
        check_adapter(NotIdentity)

    class SharedLeak(Adapter):
        """Allocates a tensor per class outside class_params: PPC under-reports it."""

        def new_layer_params(self, key, module):
            self.register_buffer(f"hidden{len(self.class_params)}_{key}", torch.zeros(3))
            return {"s": torch.ones(module.out_channels)}

        def adapted_weight(self, key, weight, params):
            return weight * params["s"].view(-1, 1, 1, 1)

    with pytest.raises(AssertionError, match="ppc"):
        check_adapter(SharedLeak)

    @dataclass
    class Opts(AdapterOptions):
        scale: float = 1.0

    class Forgets(Adapter):
        """Every class shares one tensor: training a new class changes the old ones."""

        Options = Opts

        def attach(self, backbone):
            super().attach(backbone)
            self.shared = torch.nn.Parameter(torch.ones(1))
            return self

        def trainable_parameters(self):
            return super().trainable_parameters() + [self.shared]

        def new_layer_params(self, key, module):
            return {"s": torch.ones(module.out_channels)}

        def adapted_weight(self, key, weight, params):
            return weight * (params["s"] * self.shared).view(-1, 1, 1, 1)

    with pytest.raises(AssertionError, match="trainable|changed"):
        check_adapter(Forgets)
