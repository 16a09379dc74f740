"""FunLoRA's cosine modulation M = sum_j gamma_j cos(omega_j b a^T) (Eq. 16-19) and the
kernels that compute it, all equal to float32 rounding in values and gradients (tests):

``autograd``  the formula in torch operations; autograd keeps K full c_out x c_in tensors.
``function``  ``CosineModulation``: a hand-written autograd Function of a few ATen ops; it
              keeps the K x c_out x c_in cosines and sines for the backward.
``compiled``  ``CompiledCosineModulation``: the same Function with a forward and a backward
              compiled by ``torch.compile`` (Inductor: C++ on CPU, Triton on CUDA). Each is
              one fused loop over c_out x c_in with the K terms unrolled: the forward writes M
              and keeps nothing, the backward recomputes cos and sin where it sums them. No
              K x c_out x c_in tensor is ever written; that memory traffic, and torch's slower
              cos and sin, are what the other two pay for.
``auto``      the kernel measured fastest on the device type (``AUTO``): ``compiled`` on the
              CPU where torch.compile works there (a C++ compiler; probed once per process,
              ``function`` where it does not), ``function`` on CUDA; ``function`` on the CPU in
              bench's portable numerics (the default), whose bits must not follow the machine.

Measured: on 2 CPU cores ``compiled`` is 3-7x faster than ``function`` for one 256 x 512
layer, and a FunLoRA step 1.08x vanilla_mul's against 1.28x (8 classes in a batch of 16).
On one H200 (torch 2.11) it is the other way round: a step of the CIFAR10 U-Net at batch
128 with 2 new classes took 78.9 ms (fp32) / 75.9 ms (bf16) with ``compiled`` and 56.5 /
61.4 ms with ``function`` (vanilla_mul 53.5 / 54.8). Why is not measured (a guess: per-call
overhead of the compiled code, not the cosines, at the GPU's speed). ``benchmarks/perf.py --device``
measures both on any machine. ``compiled`` costs one compilation per process (a few seconds;
Inductor caches it on disk) and is deterministic: the same values with 1 or 2 threads and
from a cold or warm cache.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch

from .targets import MethodError

KERNELS = ("auto", "compiled", "function", "autograd")
# kernel=auto per device type: the faster of the two measured there (module docstring);
# compiled falls back to function where torch.compile does not work
AUTO = {"cpu": "compiled", "cuda": "function"}
RECOMPILE_LIMIT = 64
log = logging.getLogger(__name__)


def cosine_reference(b: torch.Tensor, a: torch.Tensor, gamma: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """The plain autograd form: b (c_out,), a (c_in,), gamma and omega (K,) -> M (c_out, c_in)."""
    return torch.einsum("k,kij->ij", gamma, torch.cos(omega[:, None, None] * torch.outer(b, a)))


class CosineModulation(torch.autograd.Function):
    """M = sum_j gamma_j cos(omega_j b a^T) and its gradients in a few large ATen ops.

    Forward: X = omega (x) vec(b a^T) (K x N), C = cos X, M = gamma^T C (one matrix-vector
    product). With gradients wanted it also keeps S = sin X, so the backward is three
    matrix-vector products and no transcendental call:
    dgamma = C g, domega = -gamma * (S (g * p)), dp = -((gamma * omega)^T S) * g,
    db = dP a, da = dP^T b (g = vec dL/dM, p = vec b a^T). Exactly M = 1 at FunLoRA's
    initialisation (every term but gamma_1 cos(1) is an exact zero).
    """

    @staticmethod
    def forward(ctx, b, a, gamma, omega):
        p = torch.outer(b, a).reshape(1, -1)
        x = omega[:, None] * p
        c = torch.cos(x)
        m = (gamma[None, :] @ c).view(b.numel(), a.numel())
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(b, a, gamma, omega, c, torch.sin(x))
        return m

    @staticmethod
    def backward(ctx, grad):
        b, a, gamma, omega, c, s = ctx.saved_tensors
        g = grad.to(c.dtype).reshape(-1, 1)
        p = torch.outer(b, a).reshape(-1, 1)
        d_gamma = (c @ g).view(-1)
        d_omega = -gamma * (s @ (g * p)).view(-1)
        d_p = (((gamma * omega)[None, :] @ s).view(-1, 1) * g).neg_().view(b.numel(), a.numel())
        return d_p @ a, d_p.t() @ b, d_gamma, d_omega


def _modulation(b: torch.Tensor, a: torch.Tensor, gamma: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """M with the sum over j unrolled (K is fixed per model): compiled, one loop over c_out x c_in."""
    p = torch.outer(b, a)
    m = gamma[0] * torch.cos(omega[0] * p)
    for j in range(1, gamma.shape[0]):
        m = m + gamma[j] * torch.cos(omega[j] * p)
    return m


def _modulation_grads(b, a, gamma, omega, grad):
    """(db, da, dgamma, domega) from grad = dL/dM, cos and sin recomputed term by term:
    dgamma_j = sum cos(x_j) g, domega_j = -gamma_j sum sin(x_j) g p,
    dP = -g sum_j gamma_j omega_j sin(x_j), db = dP a, da = dP^T b (x_j = omega_j p, p = b a^T)."""
    p = torch.outer(b, a)
    d_gamma, d_omega = [], []
    acc = torch.zeros_like(p)
    for j in range(gamma.shape[0]):
        x = omega[j] * p
        s = torch.sin(x)
        d_gamma.append((torch.cos(x) * grad).sum())
        d_omega.append(-gamma[j] * (s * grad * p).sum())
        acc = acc + (gamma[j] * omega[j]) * s
    d_p = -(acc * grad)
    return d_p @ a, d_p.t() @ b, torch.stack(d_gamma), torch.stack(d_omega)


_fused: dict[str, Callable] = {}   # "forward" / "backward": the compiled pieces (one pair per process)


class CompiledCosineModulation(torch.autograd.Function):
    """M through the compiled forward; gradients through the compiled backward. Keeps only
    b, a, gamma and omega (no K x c_out x c_in tensor)."""

    @staticmethod
    def forward(ctx, b, a, gamma, omega):
        # detached: the compiled code sees plain tensors, never a parameter, a view or a grad flag
        # (each would be a guard, and a new graph when it changes)
        args = [t.detach() for t in (b, a, gamma, omega)]
        ctx.save_for_backward(*args)
        return _fused["forward"](*args)

    @staticmethod
    def backward(ctx, grad):
        return _fused["backward"](*ctx.saved_tensors, grad.contiguous())


# device type -> the compiled kernel, or why torch.compile does not work there
_compiled: dict[str, Callable | str] = {}
_warned: set[str] = set()


def _probe(fn: Callable, device_type: str) -> None:
    """Run ``fn`` forward and backward on a small input; raise where it disagrees with the plain form."""
    # K = 10 (FunLoRA's default) and c_out c_in > 4096 (Inductor compiles larger sums apart): the common graphs
    g = torch.Generator(device="cpu").manual_seed(0)
    args = [torch.randn(n, generator=g, device="cpu").to(device_type).requires_grad_() for n in (65, 67, 10)]
    args.append(torch.arange(1.0, 11.0, device=device_type).requires_grad_())
    got, want = fn(*args), cosine_reference(*args)
    pairs = [(got, want), *zip(torch.autograd.grad(got.sum(), args), torch.autograd.grad(want.sum(), args))]
    if not all(torch.allclose(x, y, rtol=1e-4, atol=1e-5) for x, y in pairs):
        raise ArithmeticError("the compiled kernel disagrees with the plain formula")


def compiled_kernel(device_type: str) -> Callable | str:
    """``CompiledCosineModulation.apply`` (shape-generic), or why torch.compile fails here.

    Probed once per process and device type on a small input, values and gradients checked
    against the plain form, so that a missing compiler shows here and not mid-training.
    """
    if device_type not in _compiled:
        # One graph per dtype, K and size-1 dimension: perhaps more than dynamo's default 8,
        # after which it would silently fall back to the eager code.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
        if not _fused:
            _fused.update(forward=torch.compile(_modulation, dynamic=True),
                          backward=torch.compile(_modulation_grads, dynamic=True))
        fn = CompiledCosineModulation.apply
        quiet = logging.getLogger("torch.utils.cpp_extension")   # "No CUDA runtime is found" on CPU-only hosts
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            # on the device, whatever the caller's default device (meta, in a dry build) and grad mode
            with torch.device(device_type), torch.inference_mode(False), torch.enable_grad(), \
                    torch.autocast(device_type, enabled=False):
                _probe(fn, device_type)
            _compiled[device_type] = fn
        except Exception as exc:  # any compiler / backend failure means: not available here
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            _compiled[device_type] = f"{type(exc).__name__}: {first}"
        finally:
            quiet.setLevel(level)
    return _compiled[device_type]


def _portable() -> bool:
    """Whether this process computes in bench's portable numerics (``bench/numerics.py``), where
    ``auto`` takes ``function`` on the CPU: Inductor's C++ is built with ``-march=native`` by the
    local compiler, so its bits could follow the machine that built it."""
    from bench.numerics import process_mode

    return process_mode() == "portable"


def resolve(kernel: str, device_type: str) -> tuple[str, Callable]:
    """The kernel that ``kernel`` names on this device: (its name, its function).

    ``auto`` is ``AUTO[device_type]`` (``function`` on device types not measured), and falls
    back to ``function`` (with one logged line) where torch.compile does not work; an explicit
    ``compiled`` that cannot work is a ``MethodError``.
    """
    if kernel == "autograd":
        return "autograd", cosine_reference
    auto = kernel == "auto"
    if auto:
        kernel = AUTO.get(device_type, "function")
        if device_type == "cpu" and _portable():
            kernel = "function"   # compiled code follows the compiler and the CPU it was built on
    if kernel == "function" or device_type == "meta":   # meta: shapes only, nothing to compile
        return "function", CosineModulation.apply
    fn = compiled_kernel(device_type)
    if callable(fn):
        return "compiled", fn
    if not auto:
        raise MethodError(f"method.kernel=compiled: torch.compile does not work on {device_type} here ({fn}); "
                          "use method.kernel=auto or function")
    if device_type not in _warned:
        log.warning("FunLoRA: torch.compile does not work on %s (%s); using the 'function' kernel", device_type, fn)
        _warned.add(device_type)
    return "function", CosineModulation.apply


def modulate(kernel: str, b: torch.Tensor, a: torch.Tensor, gamma: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """M (c_out, c_in) through ``kernel``, in the parameters' precision even under bf16
    autocast: M multiplies every weight of the layer."""
    _, fn = resolve(kernel, b.device.type)
    with torch.autocast(b.device.type, enabled=False):
        return fn(b, a, gamma, omega)
