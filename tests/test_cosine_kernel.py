"""FunLoRA's cosine kernels (methods/cosine_kernel.py) compute the plain formula: values and
gradients to float32 rounding, M = 1 exactly at initialisation, the same training step;
``auto`` falls back to the hand-written Function where torch.compile cannot work."""
import logging
import shutil

import pytest
import torch

import methods
from methods import cosine_kernel
from methods.cosine_kernel import CosineModulation, cosine_reference, resolve
from methods.targets import MethodError

from .conftest import randomized_unet

FAST = ("function", "compiled")


def _inputs(c_out, c_in, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    b = (1 + 0.3 * torch.randn(c_out, generator=g, dtype=dtype)).requires_grad_()
    a = (1 + 0.3 * torch.randn(c_in, generator=g, dtype=dtype)).requires_grad_()
    gamma = torch.randn(10, generator=g, dtype=dtype).requires_grad_()
    omega = (torch.arange(1, 11, dtype=dtype) + 0.2 * torch.randn(10, generator=g, dtype=dtype)).requires_grad_()
    return b, a, gamma, omega


@pytest.mark.parametrize("kernel", FAST)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
@pytest.mark.parametrize("shape", [(48, 80), (1, 7), (33, 33), (256, 384)])
def test_kernels_equal_the_plain_formula_in_values_and_gradients(kernel, dtype, tol, shape):
    _, fn = resolve(kernel, "cpu")
    args = _inputs(*shape, dtype)
    upstream = torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    got, want = fn(*args), cosine_reference(*args)
    torch.testing.assert_close(got, want, atol=tol, rtol=tol)
    g_got = torch.autograd.grad((got * upstream).sum(), args)
    g_want = torch.autograd.grad((want * upstream).sum(), args)
    for name, x, y in zip("b a gamma omega".split(), g_got, g_want):
        assert ((x - y).abs().max() / y.abs().max()) < 10 * tol, name
    with torch.no_grad():                                         # the sampling path: no graph kept
        torch.testing.assert_close(fn(*args), want, atol=tol, rtol=tol)


@pytest.mark.parametrize("kernel", FAST)
def test_kernels_gradcheck(kernel):
    _, fn = resolve(kernel, "cpu")
    g = torch.Generator().manual_seed(2)
    args = [torch.randn(n, dtype=torch.float64, generator=g).requires_grad_() for n in (5, 7, 4)]
    args.append(torch.rand(4, dtype=torch.float64, generator=g).requires_grad_())
    assert torch.autograd.gradcheck(fn, args)


@pytest.mark.parametrize("name", ["funlora", "funlora_cosine_fixed"])
@pytest.mark.parametrize("kernel", ["compiled", "function", "autograd"])
def test_every_kernel_starts_from_the_identity(name, kernel):
    """gamma_1 inverts cos(1) as the kernel computes it (torch.cos and Inductor's differ by an ulp)."""
    m = methods.build(name, kernel=kernel, layers="all").attach(randomized_unet(image_size=8, in_channels=1,
                                                                                 num_classes=6))
    m.add_classes([4])
    for key, params in m.class_params["4"].layers.items():
        w = m._layer(key).base.weight
        for grad in (False, True):
            with torch.set_grad_enabled(grad):
                assert torch.equal(m.modulation(params, *w.shape[:2]), torch.ones(w.shape[:2])), (key, grad)


def test_kernels_train_alike():
    """A forward and backward through the whole adapted U-Net: same loss and gradients to float32 rounding."""
    results = []
    for kernel in ("compiled", "function", "autograd"):
        m = methods.build("funlora", kernel=kernel).attach(randomized_unet(image_size=8, in_channels=1, num_classes=6))
        m.add_classes([4, 5])
        torch.manual_seed(3)
        with torch.no_grad():
            for p in m.class_params.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        t, x, y = torch.rand(6), torch.randn(6, 1, 8, 8), torch.tensor([4, 5, 0, 4, 5, 1])
        loss = m(t, x, y).pow(2).mean()
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in m.trainable_parameters()]))
    for loss, grads in results[1:]:
        torch.testing.assert_close(loss, results[0][0])
        for a, b in zip(grads, results[0][1]):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_auto_compiles_where_a_compiler_exists_in_native_numerics(monkeypatch):
    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("no C++ compiler: auto uses the function kernel here")
    monkeypatch.setattr(cosine_kernel, "_portable", lambda: False)
    name, fn = resolve("auto", "cpu")
    assert name == "compiled", cosine_kernel.compiled_kernel("cpu")


def test_auto_takes_the_function_kernel_in_portable_numerics(monkeypatch):
    """Portable numerics (the tests' mode, as every command's by default): no compiled code,
    whose bits could follow the machine that built it, and no probe of the compiler."""
    from bench import numerics

    assert numerics.process_mode() == "portable"

    def no_probe(device_type):
        raise AssertionError(f"auto probed torch.compile on {device_type}")

    monkeypatch.setattr(cosine_kernel, "compiled_kernel", no_probe)
    assert resolve("auto", "cpu") == ("function", CosineModulation.apply)


def test_auto_takes_the_kernel_measured_fastest_on_each_device(monkeypatch):
    """CUDA: the function kernel (faster than the compiled one on an H200, see the module), and
    no probe (nothing compiled); a device type never measured: function too."""
    def no_probe(device_type):
        raise AssertionError(f"auto probed torch.compile on {device_type}")

    monkeypatch.setattr(cosine_kernel, "compiled_kernel", no_probe)
    assert resolve("auto", "cuda") == ("function", CosineModulation.apply)
    assert resolve("auto", "xpu") == ("function", CosineModulation.apply)
    assert cosine_kernel.AUTO["cuda"] == "function" and cosine_kernel.AUTO["cpu"] == "compiled"


def test_auto_falls_back_with_one_line_and_explicit_compiled_is_an_error(monkeypatch, caplog):
    monkeypatch.setattr(cosine_kernel, "_portable", lambda: False)   # native numerics: auto compiles
    monkeypatch.setitem(cosine_kernel._compiled, "cpu", "InvalidCxxCompiler: no working C++ compiler found")
    monkeypatch.setattr(cosine_kernel, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="methods.cosine_kernel"):
        assert resolve("auto", "cpu") == ("function", CosineModulation.apply)
        resolve("auto", "cpu")
    assert [r.getMessage().count("InvalidCxxCompiler") for r in caplog.records] == [1]   # once per process
    with pytest.raises(MethodError, match="method.kernel=compiled: torch.compile does not work on cpu here"):
        resolve("compiled", "cpu")
    unet = randomized_unet(image_size=8, in_channels=1, num_classes=6)
    with pytest.raises(MethodError, match="method.kernel=compiled"):      # at attach, before any training
        methods.build("funlora", kernel="compiled").attach(unet)
    m = methods.build("funlora").attach(randomized_unet(image_size=8, in_channels=1, num_classes=6))
    assert m.implementation == {"cosine kernel": "function (method.kernel=auto)"}   # what the cell logs
    with pytest.raises(MethodError, match="method.kernel must be one of auto, compiled, function, autograd"):
        methods.build("funlora", kernel="triton")


def test_a_dry_build_on_the_meta_device_neither_probes_nor_spoils_the_probe(monkeypatch):
    """bench.run builds the cell on the meta device first, in the process that then trains:
    the kernel must still compile afterwards (a probe under the meta default device failed)."""
    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("no C++ compiler")
    monkeypatch.setattr(cosine_kernel, "_compiled", {})
    with torch.device("meta"):
        m = methods.build("funlora").attach(randomized_unet(image_size=8, in_channels=1, num_classes=6))
        m.add_classes([4])
        assert m.ppc() > 0
    assert cosine_kernel._compiled == {}                     # nothing probed for a dry build
    with torch.device("meta"):
        assert callable(cosine_kernel.compiled_kernel("cpu"))   # and a probe here runs on the CPU
