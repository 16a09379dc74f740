"""The contract every method satisfies, ours or a user's: ``check_adapter(name_or_class, **options)``.

    from methods.testing import check_adapter
    check_adapter("funlora")                      # a registered name
    check_adapter("my_pkg.adapters:MyAdapter")    # a class path, or the class itself

On a tiny U-Net with non-trivial weights (attention included, so every target kind has
layers) it checks, raising AssertionError with a clear message on the first failure:

1. exact identity at initialisation (``torch.equal`` with the frozen backbone);
2. only the current classes' parameters are trainable, the backbone never is;
3. ``ppc()`` equals the numel of what one new class really allocates (its embedding
   row, reported apart by ``embedding_params_per_class``, excluded);
4. the new classes learn, and old classes stay bit-identical after new classes are
   added and trained (the backbone too); a batch of frozen-backbone classes only is the
   backbone's own output, bit for bit (the protocol shares those classes' samples
   between methods);
5. a mixed-label batch equals the per-class forwards (to float32 rounding);
6. ``save_class`` / ``load_class`` round-trips one class into a fresh backbone.
"""
from __future__ import annotations

import copy
import tempfile
from typing import Any

import torch

from . import build, get
from .base import Adapter

__all__ = ["check_adapter", "tiny_backbone"]


def tiny_backbone(seed: int = 0, num_classes: int = 6) -> torch.nn.Module:
    """A tiny U-Net (8x8, one channel, attention at 4x4) whose every weight is non-zero."""
    from bench.unet import build_unet  # the suite's backbone; methods/ itself stays model-only

    torch.manual_seed(seed)
    unet = build_unet("tiny", image_size=8, in_channels=1, num_classes=num_classes, attention_resolutions="4")
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return unet.eval()


def _inputs(n: int, classes: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, generator=g), torch.randn(n, 1, 8, 8, generator=g),
            torch.tensor([classes[i % len(classes)] for i in range(n)]))


def _train(m: Adapter, classes: tuple[int, ...], steps: int = 3) -> None:
    opt = torch.optim.Adam(m.trainable_parameters(), lr=0.05)
    for i in range(steps):
        t, x, y = _inputs(8, classes, seed=10 + i)
        loss = (m(t, x, y) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters()) + sum(b.numel() for b in module.buffers())


def _require(ok: bool, name: str, what: str) -> None:
    if not ok:
        raise AssertionError(f"method {name!r} breaks the adapter contract: {what}")


def check_adapter(name_or_class: str | type[Adapter], **options: Any) -> None:
    """Check the adapter contract (see the module docstring); AssertionError on the first breach."""
    cls = get(name_or_class) if isinstance(name_or_class, str) else name_or_class
    name = cls.name or cls.__name__
    make = (lambda: build(name_or_class, **options)) if isinstance(name_or_class, str) else (lambda: cls(**options))

    # 1. identity at initialisation, on a batch mixing a frozen class (0) and new ones (4, 5)
    unet = tiny_backbone()
    backbone_state = copy.deepcopy(unet.state_dict())
    t, x, y = _inputs(6, (0, 4, 5), seed=1)
    with torch.no_grad():
        before = unet(t, x, y)
    m = make().attach(unet)
    _require(len(m.layer_info) > 0 or m.target == "none", name, "it wraps no layer of the backbone")
    size_before = _numel(m)
    m.add_classes([4])
    allocated = _numel(m) - size_before - m.embedding_params_per_class()
    _require(allocated == m.ppc(), name, f"ppc() = {m.ppc()} but one class allocates {allocated} parameters")
    m.add_classes([5])
    with torch.no_grad():
        after = m(t, x, y)
    _require(torch.equal(before, after), name,
             f"not the identity at initialisation (max |diff| {(before - after).abs().max().item():.3g})")

    # 2. only the current classes train
    unet = tiny_backbone()
    m = make().attach(unet)
    m.add_classes([2, 3])
    own = {id(p) for c in ("2", "3") for p in m.class_params[c].parameters()}
    trainable = [p for p in m.parameters() if p.requires_grad]
    _require({id(p) for p in trainable} == own and {id(p) for p in m.trainable_parameters()} == own, name,
             "after add_classes([2, 3]) the trainable parameters are not exactly those of classes 2 and 3")
    _require(not any(p.requires_grad for p in unet.parameters() if id(p) not in own), name,
             "a backbone parameter requires grad")

    # 4. old classes bit-identical after new classes are added and trained
    _train(m, (2, 3))
    m.set_trainable([])
    t, x, y = _inputs(8, (0, 1, 2, 3), seed=2)
    with torch.no_grad():
        old_before = m(t, x, y)
    state = {k: v.clone() for k, v in unet.state_dict().items() if "class_params" not in k}
    m.add_classes([4, 5])
    _require({id(p) for p in m.trainable_parameters()} == {id(p) for c in ("4", "5")
                                                          for p in m.class_params[c].parameters()}, name,
             "after add_classes([4, 5]) classes 2 and 3 are still trainable")
    t_new, x_new, y_new = _inputs(8, (4, 5), seed=99)
    with torch.no_grad():
        new_at_init = m(t_new, x_new, y_new)
    _train(m, (4, 5))
    m.set_trainable([])
    with torch.no_grad():
        old_after = m(t, x, y)
        new_trained = m(t_new, x_new, y_new)
    _require(torch.equal(old_before, old_after), name, "old classes changed after new classes were trained")
    now = {k: v for k, v in unet.state_dict().items() if "class_params" not in k}
    _require(all(torch.equal(state[k], now[k]) for k in state), name, "the frozen backbone changed")
    _require(not torch.equal(new_at_init, new_trained), name, "the new classes did not learn (outputs unchanged)")
    t, x, y = _inputs(8, (0, 1), seed=4)
    with torch.no_grad():
        frozen_only, bare = m(t, x, y), tiny_backbone()(t, x, y)
    _require(torch.equal(frozen_only, bare), name, "a batch of frozen-backbone classes is not the backbone's output")

    # 5. a mixed batch equals the per-class forwards
    t, x, y = _inputs(9, (0, 2, 4, 5), seed=3)
    with torch.no_grad():
        mixed = m(t, x, y)
        for c in (0, 2, 4, 5):
            sel = y == c
            alone = m(t[sel], x[sel], y[sel])
            _require(torch.allclose(mixed[sel], alone, rtol=1e-5, atol=1e-5), name,
                     f"class {c} in a mixed batch differs from its own batch "
                     f"(max |diff| {(mixed[sel] - alone).abs().max().item():.3g})")

    # 6. save / load one class into a fresh backbone
    with tempfile.TemporaryDirectory() as tmp:
        m.save_class(4, tmp)
        fresh = tiny_backbone()
        m2 = make().attach(fresh)
        _require(m2.load_class(tmp) == 4, name, "load_class did not return the saved class")
        t, x, y = _inputs(4, (4,), seed=4)
        with torch.no_grad():
            ref, got = m(t, x, y), m2(t, x, y)
        _require(torch.equal(ref, got), name, "a class saved and loaded into a fresh backbone gives other outputs")
