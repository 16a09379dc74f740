"""What ``precision=bf16`` and ``compile=true`` do, checked on the CPU (bench/precision.py).

bf16: every adapter's W'_y (FunLoRA's M included) is fp32 in forward and backward, under the
bf16 autocast of a cell and of benchmarks/perf.py alike; the layers' convolutions are bf16.
compile: a cell compiles the U-Net a bounded number of times, not once per class set.
"""
import pytest
import torch

import methods
import methods.funlora as funlora
from bench import precision
from bench.flow import cfm_loss
from methods.testing import tiny_backbone


@pytest.mark.parametrize("name", ["funlora", "vanilla_mul", "loha"])
def test_bf16_builds_every_adapted_weight_in_fp32_forward_and_backward(monkeypatch, name):
    seen = {"weight": [], "weight_grad": [], "M": [], "M_grad": [], "M_inputs": []}
    cls = type(methods.build(name))
    real_weight, real_modulate = cls.adapted_weight, funlora.modulate

    def adapted_weight(self, key, weight, params):
        w = real_weight(self, key, weight, params)
        seen["weight"].append(w.dtype)
        if w.requires_grad:
            w.register_hook(lambda g: seen["weight_grad"].append(g.dtype))
        return w

    def modulate(kernel, b, a, gamma, omega):
        seen["M_inputs"].append({t.dtype for t in (b, a, gamma, omega)})
        m = real_modulate(kernel, b, a, gamma, omega)
        seen["M"].append(m.dtype)
        if m.requires_grad:
            m.register_hook(lambda g: seen["M_grad"].append(g.dtype))
        return m

    monkeypatch.setattr(cls, "adapted_weight", adapted_weight)
    monkeypatch.setattr(funlora, "modulate", modulate)
    adapter = methods.build(name).attach(tiny_backbone(num_classes=8))
    adapter.add_classes([6, 7])
    adapter.set_trainable([6, 7])
    x, y = torch.randn(8, 1, 8, 8), torch.tensor([6, 7] * 4)
    with precision.autocast("cpu", "bf16"):
        out = adapter(torch.rand(8), x, y)
        loss = cfm_loss(adapter, x, y, generator=torch.Generator().manual_seed(0))
        precision.backward(loss)      # what bench/trainer.py and benchmarks/perf.py call
    assert out.dtype == torch.bfloat16, "the U-Net's layers did not run in bf16"
    assert seen["weight"] and set(seen["weight"]) == {torch.float32}
    assert seen["weight_grad"] and set(seen["weight_grad"]) == {torch.float32}
    if name == "funlora":
        assert all(s == {torch.float32} for s in seen["M_inputs"])
        assert set(seen["M"]) == {torch.float32} and set(seen["M_grad"]) == {torch.float32}
    grads = [p.grad for p in adapter.trainable_parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 for g in grads)


def _graphs(split: str, tmp_path, monkeypatch) -> int:
    from torch._dynamo.testing import CompileCounter

    import bench.protocol as protocol
    from bench.config import resolve

    torch._dynamo.reset()
    counter = CompileCounter()   # backend="eager" that counts the graphs it is given
    monkeypatch.setattr(protocol, "COMPILE_BACKEND", counter)
    cfg = resolve({"dataset": "digits", "split": split, "method": {"name": "vanilla_mul"}, "scale": "smoke",
                   "compile": True, "sample_grid": 0, "progress": False})
    protocol.run_cell(cfg, tmp_path / split, log=lambda *a: None)
    return counter.frame_count


def test_compile_compiles_the_unet_a_bounded_number_of_times(tmp_path, monkeypatch, caplog):
    """The adapters' routing depends on the batch's classes: traced, it recompiled the U-Net for
    every class set, and past dynamo's limit of 8 ran it eager. Hidden from the compiler, a cell
    of 5 tasks compiles about as many graphs as one of 2 tasks, and never reaches the limit."""
    import logging

    caplog.set_level(logging.WARNING, logger="torch._dynamo")
    two, five = _graphs("6-4", tmp_path, monkeypatch), _graphs("2-2", tmp_path, monkeypatch)
    assert 0 < two and five <= two + 2, (two, five)
    assert not [r for r in caplog.records if "recompile_limit" in r.getMessage()], "hit dynamo's recompile limit"
