"""The field's conv-layer PEFT methods, per class, with LyCORIS's delta-weight mathematics.

Every method here is weight form: W'_y = W + dW_y (the orthogonal ones: W'_y = R_y W,
written W + (R_y - I) W), dW_y computed by ``lycoris.functional`` (lycoris-lora, pinned
in pyproject.toml) from class y's parameters, on the torch backend (deterministic; no
compiled or Triton kernels).

- ``locon``: LoRA for convolutions, down (r, c_in k k) and up (c_out, r); PPC r (c_in k^2 + c_out).
- ``loha``: dW = (B1 A1) * (B2 A2), two rank-r products; PPC 2 r (c_in k^2 + c_out).
- ``lokr``: dW = kron(W1, W2) with c_out, c_in factored (``factor``; -1 balanced) and
  the larger factor W2 low rank (r) unless r reaches half its size.
- ``dora``: LoCon's direction with a per-class magnitude per output channel:
  W' = m (W + dW) / ||W + dW||_row; m starts at ||W||_row (+ LyCORIS's eps), exactly
  the identity. PPC: LoCon's + c_out.
- ``oft``: block-diagonal orthogonal R = Cayley(Q - Q^T) on the output channels,
  blocks of ``block_size``; PPC c_out * block_size.
- ``boft``: butterfly OFT, ``butterfly_factor`` stages (-1: all log2(c_out / b) + 1) of
  blocks of ``block_size``; PPC stages * c_out * block_size.

LyCORIS's ``weight_gen`` without Tucker gives conv factors without their kernel axes; we
hand it the weight flattened to (c_out, c_in k k) and reshape dW back, so the kernel is
adapted too. Up-type factors start at zero and the orthogonal blocks at zero (R = I):
every class starts as the frozen model, bit for bit.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Optional

import torch

from . import register
from .base import Adapter, AdapterOptions, positive_int
from .peft_baselines import LoRAConvOptions
from .targets import MethodError

LYCORIS_VERSION = "4.1.3"
BACKEND = "torch"


def lycoris(module: str) -> Any:
    """``lycoris.functional.<module>``, or one clear line on how to install it."""
    try:
        return importlib.import_module(f"lycoris.functional.{module}")
    except ImportError as exc:
        raise MethodError(f"this method needs lycoris-lora=={LYCORIS_VERSION} "
                          f"(pip install lycoris-lora=={LYCORIS_VERSION}): {exc}") from None


# rank r (default 1) and alpha (dW scaled by alpha / r; none: 1): the conv LoRA baseline's options
ZooRankOptions = LoRAConvOptions


@dataclass
class LoKrOptions(ZooRankOptions):
    """``factor``: how c_out and c_in are split into Kronecker factors (-1: balanced)."""

    factor: int = -1

    def validate(self) -> None:
        super().validate()
        if isinstance(self.factor, bool) or not isinstance(self.factor, int) or (self.factor < 1 and self.factor != -1):
            raise MethodError(f"method.factor must be -1 or a positive integer, got {self.factor!r}")


@dataclass
class OFTOptions(AdapterOptions):
    """``block_size`` b (divides every adapted layer's c_out); ``constraint``: COFT's
    bound on ||Q|| (none: unconstrained)."""

    block_size: int = 4
    constraint: Optional[float] = None

    def validate(self) -> None:
        super().validate()
        positive_int(self, "block_size")
        if self.block_size < 2:
            raise MethodError("method.block_size must be at least 2 (a 1 x 1 skew-symmetric block is always 0)")


@dataclass
class BOFTOptions(OFTOptions):
    """``butterfly_factor``: the number of butterfly stages m (-1: all, log2(c_out / b) + 1)."""

    butterfly_factor: int = -1

    def validate(self) -> None:
        super().validate()
        if self.block_size % 2:
            raise MethodError(f"method.block_size must be even for boft, got {self.block_size}")
        m = self.butterfly_factor
        if isinstance(m, bool) or not isinstance(m, int) or (m < 1 and m != -1):
            raise MethodError(f"method.butterfly_factor must be -1 or a positive integer, got {m!r}")


def _flat(weight: torch.Tensor) -> torch.Tensor:
    return weight.reshape(weight.shape[0], -1)


class _Ranked(Adapter):
    Options = ZooRankOptions
    size_option = "rank"

    @property
    def scaling(self) -> torch.Tensor:
        alpha = self.options["alpha"]
        return torch.tensor(1.0 if alpha is None else alpha / self.options["rank"])


@register("locon")
class LoCon(_Ranked):
    """W'_y = W + s reshape(up_y down_y); up = 0 at init."""

    title = "LoCon"

    def new_layer_params(self, key, module):
        down, up, _ = lycoris("locon").weight_gen(_flat(module.weight), self.options["rank"], tucker=False)
        return {"down": down, "up": up}

    def delta(self, weight, params):
        dw = lycoris("locon").diff_weight(params["down"], params["up"], None, gamma=self.scaling, backend=BACKEND)
        return dw.reshape(weight.shape)

    def adapted_weight(self, key, weight, params):
        return weight + self.delta(weight, params)


@register("loha")
class LoHa(_Ranked):
    """W'_y = W + s (B1 A1) * (B2 A2), reshaped; B1 = 0 at init."""

    title = "LoHa"

    def new_layer_params(self, key, module):
        w1d, w1u, w2d, w2u, _, _ = lycoris("loha").weight_gen(_flat(module.weight), self.options["rank"], tucker=False)
        return {"w1d": w1d, "w1u": w1u, "w2d": w2d, "w2u": w2u}

    def adapted_weight(self, key, weight, params):
        p = params
        dw = lycoris("loha").diff_weight(p["w1d"], p["w1u"], p["w2d"], p["w2u"], None, None,
                                         gamma=self.scaling.to(weight.device), backend=BACKEND)
        return weight + dw.reshape(weight.shape)


_LOKR_PARTS = ("w1", "w1a", "w1b", "w2", "w2a", "w2b")


@register("lokr")
class LoKr(_Ranked):
    """W'_y = W + s kron(W1_y, W2_y); W2 (or its up factor) = 0 at init."""

    title = "LoKr"
    Options = LoKrOptions

    def size_candidates(self):
        return list(range(1, 129))

    def new_layer_params(self, key, module):
        parts = lycoris("lokr").weight_gen(module.weight, self.options["rank"], tucker=False,
                                           factor=self.options["factor"])
        return {n: t for n, t in zip(_LOKR_PARTS, parts[:6]) if t is not None}

    def adapted_weight(self, key, weight, params):
        parts = [params[n] if n in params else None for n in _LOKR_PARTS]
        scale = 1.0 if self.options["alpha"] is None else self.options["alpha"] / self.options["rank"]
        dw = lycoris("lokr").kron_weight(*parts, None, scale=scale, backend=BACKEND)
        return weight + dw.reshape(weight.shape)


@register("dora")
class DoRA(LoCon):
    """W'_y = m_y (W + dW_y) / ||W + dW_y|| per output channel; dW as LoCon."""

    title = "DoRA"

    @staticmethod
    def _row_norm(weight: torch.Tensor) -> torch.Tensor:
        # LyCORIS's weight_decompose norm (+ eps), so that m / norm is exactly 1 at init.
        return _flat(weight).norm(dim=1) + torch.finfo(weight.dtype).eps

    def new_layer_params(self, key, module):
        return {**super().new_layer_params(key, module), "magnitude": self._row_norm(module.weight.detach())}

    def adapted_weight(self, key, weight, params):
        merged = weight + self.delta(weight, params)
        m = params["magnitude"].view(-1, *([1] * (weight.dim() - 1)))
        return lycoris("general").weight_decompose(merged, m, 1, True, backend=BACKEND)


@register("oft")
class OFT(Adapter):
    """W'_y = R_y W, R_y block-diagonal Cayley(Q_y - Q_y^T); Q = 0 (R = I) at init."""

    title = "OFT"
    Options = OFTOptions
    size_option = "block_size"

    def size_candidates(self):
        return [2, 4, 8, 16, 32, 64, 128, 256, 512]

    def _blocks(self, module) -> int:
        b, c = self.options["block_size"], module.out_channels
        if c % b:
            raise MethodError(f"method.block_size={b} does not divide c_out={c} of an adapted layer")
        return c // b

    def new_layer_params(self, key, module):
        b = self.options["block_size"]
        return {"blocks": torch.zeros(self._blocks(module), b, b)}

    def adapted_weight(self, key, weight, params):
        dw = lycoris("diag_oft").diff_weight(weight, params["blocks"], None,
                                             constraint=self.options["constraint"], backend=BACKEND)
        return weight + dw


@register("boft")
class BOFT(OFT):
    """W'_y = (prod of butterfly stages R_y,i) W; every stage = I at init."""

    title = "BOFT"
    Options = BOFTOptions

    def size_candidates(self):
        return [2, 4, 8, 16, 32, 64, 128, 256]

    def new_layer_params(self, key, module):
        b, n = self.options["block_size"], self._blocks(module)
        if n & (n - 1):
            raise MethodError(f"boft needs c_out / block_size to be a power of 2; c_out={module.out_channels}, "
                              f"block_size={b}")
        stages = n.bit_length()          # log2(n) + 1
        m = self.options["butterfly_factor"]
        return {"blocks": torch.zeros(stages if m == -1 else min(m, stages), n, b, b)}

    def adapted_weight(self, key, weight, params):
        dw = lycoris("boft").diff_weight(weight, params["blocks"], None, constraint=self.options["constraint"],
                                         backend=BACKEND)
        return weight + dw


__all__ = ["LoCon", "LoHa", "LoKr", "DoRA", "OFT", "BOFT", "LYCORIS_VERSION"]
