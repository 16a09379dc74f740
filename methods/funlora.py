"""FunLoRA (Eq. 8-19): a rank-1 product B A whose rank is raised by K functions.

M_y = sum_{j=1..K} gamma_{y,j} f_j(B_y, A_y) and W'_y = W * M_y (broadcast over k x k).
- cosine (Eq. 16-19): f_j = cos(omega_j * B A), omega = [1..K], learned or fixed;
- power (Eq. 11-15):  f_j = (B A)^{p_j}, p = [1..K]; a learned p uses the surrogate
  sign(x) |x|^p (plain x^p is NaN for negative x and fractional p);
- rshift (Eq. 9-10):  f_j = S_j(B) S_j(A^T)^T, S_j a circular shift by j = 0..K-1 of
  both factors (rank <= K).
``ratio`` rho (Table IV) shrinks B and A to c_out/rho and c_in/rho entries, each value
repeated rho times to full size.

Initialisation rule (the paper does not give one): B = A = 1 and gamma = (g, 0, ..., 0)
with g chosen so that M_y = 1 exactly at init: g = 1 for power and rshift (f_1 = 1), and
for cosine g = 1/cos(omega_1), nudged by one float32 ulp at a time until g * cos(omega_1)
rounds to exactly 1, with cos(omega_1) as the cosine kernel computes it on the layer's device
(``methods/cosine_kernel.py``). A new class therefore starts from the frozen model's output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import register
from .base import Adapter, AdapterOptions, positive_int
from .cosine_kernel import KERNELS, cosine_reference, modulate, resolve
from .targets import MethodError

FUNCTIONS = ("cosine", "power", "rshift")


def exact_inverse(c: float) -> float:
    """A float32 g with float32(g * c) == 1 (g = 1/c, corrected by ulps if needed)."""
    c32 = torch.tensor(c, dtype=torch.float32, device="cpu")
    g = torch.tensor(1.0, dtype=torch.float32, device="cpu") / c32
    for _ in range(8):
        prod = (g * c32).item()
        if prod == 1.0:
            return g.item()
        g = torch.nextafter(g, torch.tensor(-math.inf if prod > 1 else math.inf, device="cpu"))
    raise ArithmeticError(f"no float32 inverse of {c}")  # pragma: no cover - cannot happen for c in (0.5, 1]


@dataclass
class FunLoRAOptions(AdapterOptions):
    """``function`` f_j (cosine, power, rshift), ``K`` functions, ``learn`` omega / p,
    ``ratio`` rho: B and A hold c_out/rho and c_in/rho values (Table IV)."""

    function: str = "cosine"
    K: int = 10
    learn: bool = True
    ratio: int = 1
    kernel: str = "auto"     # cosine: how M is computed (methods/cosine_kernel.py; equal to float32 rounding)

    def validate(self) -> None:
        super().validate()
        if self.function not in FUNCTIONS:
            raise MethodError(f"method.function must be one of {', '.join(FUNCTIONS)}, got {self.function!r}")
        if self.kernel not in KERNELS:
            raise MethodError(f"method.kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}")
        positive_int(self, "K")
        positive_int(self, "ratio")
        if self.function == "rshift" and self.learn:
            raise MethodError("rshift has no learnable function parameter: use method.learn=false")


@dataclass
class CosineFixedOptions(FunLoRAOptions):
    learn: bool = False


@dataclass
class PowerOptions(FunLoRAOptions):
    function: str = "power"
    learn: bool = False


@dataclass
class PowerLearnedOptions(FunLoRAOptions):
    function: str = "power"


@dataclass
class RShiftOptions(FunLoRAOptions):
    function: str = "rshift"
    learn: bool = False


class FunLoRA(Adapter):
    """The functional rank-1 adapter; registered variants fix ``function`` and ``learn``."""

    Options = FunLoRAOptions
    size_option = "ratio"

    def __init__(self, **options):
        super().__init__(**options)
        self._inverse: dict[torch.device, float] = {}   # device -> gamma_1 at init (cosine)

    def size_candidates(self):
        return [64, 32, 16, 8, 4, 2, 1]      # PPC grows as the ratio shrinks

    def attach_shared(self) -> None:
        """Resolve the cosine kernel on the backbone's device (``method.kernel=compiled`` that
        cannot work there is a MethodError now, not mid-training)."""
        super().attach_shared()
        if self.options["function"] == "cosine":
            name, _ = resolve(self.options["kernel"], self._device().type)
            self.implementation["cosine kernel"] = f"{name} (method.kernel={self.options['kernel']})"

    # -- parameters ---------------------------------------------------------------------
    def _init_gamma(self, device: torch.device) -> torch.Tensor:
        K = self.options["K"]
        gamma = torch.zeros(K)
        gamma[0] = self._cosine_inverse(device) if self.options["function"] == "cosine" else 1.0
        return gamma

    def _cosine_inverse(self, device: torch.device) -> float:
        """g with g * cos(omega_1) == 1 in float32, cos as this kernel computes it on ``device``
        (implementations differ by an ulp: torch.cos(1) and Inductor's cos(1) do)."""
        if device.type == "meta":        # shapes only (dry builds, parameter counts): no values
            return 1.0
        if device not in self._inverse:
            K = self.options["K"]
            e1 = torch.zeros(K, device=device)
            e1[0] = 1.0
            # sizes 2 and 3: the shapes a compiled kernel is already generic over (no new graph for size 1)
            b, a = torch.ones(2, device=device), torch.ones(3, device=device)
            with torch.no_grad():
                c = modulate(self.options["kernel"], b, a, e1, torch.arange(1.0, K + 1, device=device))
            self._inverse[device] = exact_inverse(c[0, 0].item())
        return self._inverse[device]

    def new_layer_params(self, key, module):
        rho, K = self.options["ratio"], self.options["K"]
        params = {"B": torch.ones(math.ceil(module.out_channels / rho)),
                  "A": torch.ones(math.ceil(module.in_channels / rho)),
                  "gamma": self._init_gamma(module.weight.device)}
        if self.options["learn"]:
            name = "omega" if self.options["function"] == "cosine" else "p"
            params[name] = torch.arange(1, K + 1, dtype=torch.float32)
        return params

    # -- M_y ----------------------------------------------------------------------------
    def _full(self, v: torch.Tensor, size: int) -> torch.Tensor:
        rho = self.options["ratio"]
        return v if rho == 1 else v.repeat_interleave(rho)[:size]

    def modulation(self, params, c_out: int, c_in: int, kernel: str | None = None) -> torch.Tensor:
        """M_y (c_out x c_in) of one class and layer (cosine: through ``kernel``, by default the option's)."""
        b, a = self._full(params["B"], c_out), self._full(params["A"], c_in)
        gamma, K, fn = params["gamma"], self.options["K"], self.options["function"]
        if fn == "rshift":
            bs = torch.stack([torch.roll(b, j) for j in range(K)])      # (K, c_out)
            as_ = torch.stack([torch.roll(a, j) for j in range(K)])     # (K, c_in)
            return (bs * gamma[:, None]).t() @ as_
        if fn == "cosine":
            omega = params["omega"] if "omega" in params else torch.arange(1, K + 1, dtype=b.dtype, device=b.device)
            return modulate(kernel or self.options["kernel"], b, a, gamma, omega)
        ba = torch.outer(b, a)
        if "p" in params:
            f = torch.sign(ba) * ba.abs().clamp_min(1e-12).pow(params["p"][:, None, None])
        else:
            p = torch.arange(1, K + 1, dtype=ba.dtype, device=ba.device)
            f = ba.pow(p[:, None, None])
        return torch.einsum("k,kij->ij", gamma, f)

    cosine_reference = staticmethod(cosine_reference)   # the plain form every kernel must equal

    def adapted_weight(self, key, weight, params):
        m = self.modulation(params, weight.shape[0], weight.shape[1])
        return weight * m.view(*m.shape, *([1] * (weight.dim() - 2)))


@register("funlora")
class FunLoRACosine(FunLoRA):
    """The paper's default: cosine, K = 10, learned omega."""

    title = "FunLoRA"


@register("funlora_cosine_fixed")
class FunLoRACosineFixed(FunLoRA):
    title = "FunLoRA cosine (fixed omega)"
    Options = CosineFixedOptions


@register("funlora_power")
class FunLoRAPower(FunLoRA):
    title = "FunLoRA power"
    Options = PowerOptions


@register("funlora_power_learned")
class FunLoRAPowerLearned(FunLoRA):
    title = "FunLoRA power (learned p)"
    Options = PowerLearnedOptions


@register("funlora_rshift")
class FunLoRARShift(FunLoRA):
    title = "FunLoRA rshift"
    Options = RShiftOptions
