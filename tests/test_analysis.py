"""Analysis records and the strategies that are not adapters."""
import torch

import methods
from bench import config
from bench.protocol import Cell
from methods import analysis

from .conftest import randomized_unet


def test_importance_rank_and_function_parameters():
    m = methods.build("funlora", K=3, layers="all").attach(randomized_unet(image_size=8, in_channels=1, num_classes=6))
    m.add_classes([4, 5])
    with torch.no_grad():
        m.class_params["4"].layers["conv0"]["B"].add_(0.5)   # class 4 moved away from init on layer 0
    rows = analysis.layer_importance(m)
    assert len(rows) == 2 * len(m.layer_info)
    imp = {(r["layer"], r["class"]): r["importance"] for r in rows}
    assert imp[(0, 4)] == 0.5 and imp[(0, 5)] == 0.0 and imp[(1, 4)] == 0.0
    per_layer = {r["layer"]: r for r in analysis.importance_per_layer(m)}
    assert per_layer[0]["importance"] == 0.25 and per_layer[0]["std"] == 0.25
    ranks = analysis.modulation_rank(m)
    assert all(r["rank"] == 1 for r in ranks)  # M_y = 1 at init for class 5, and a scaled outer product elsewhere
    fp = analysis.function_parameters(m)
    assert {r["j"] for r in fp} == {1, 2, 3} and all("omega" in r for r in fp)
    assert len(fp) == 3 * 2 * len(m.layer_info)


def test_function_parameters_are_funloras_alone():
    """Scale-and-shift's per-channel gamma is no rank-raising function's parameter (Figure 5)."""
    m = methods.build("scale_shift").attach(randomized_unet(image_size=8, in_channels=1, num_classes=6))
    m.add_classes([4, 5])
    assert analysis.function_parameters(m) == []


def test_finetune_forgets_old_classes(tmp_path):
    cfg = config.resolve({"dataset": "digits", "split": "5-5", "method": {"name": "finetune"}, "scale": "smoke",
                          "progress": False, "workdir": str(tmp_path)})
    cell = Cell(cfg)
    d = cell.data
    t, x = torch.rand(4), torch.randn(4, *d.train_x.shape[1:])
    y_old = torch.tensor([0, 1, 2, 3])
    cell.strategy.train(1, d.tasks[0])
    with torch.no_grad():
        before = cell.unet(t, x, y_old)
    cell.strategy.train(2, d.tasks[1])
    with torch.no_grad():
        after = cell.unet(t, x, y_old)
    assert not torch.equal(before, after)  # the whole generator moved: old classes changed


def test_rank_of_trained_like_factors():
    unet = randomized_unet("small", image_size=16, in_channels=1, num_classes=6, attention_resolutions="8")
    ranks = {}
    for name in ("vanilla_mul", "funlora"):
        m = methods.build(name).attach(unet) if name == "vanilla_mul" else \
            methods.build(name).attach(randomized_unet("small", image_size=16, in_channels=1, num_classes=6,
                                                       attention_resolutions="8"))
        m.add_classes([4])
        torch.manual_seed(0)
        with torch.no_grad():
            for key, p in m.class_params["4"].layers.items():
                p["B"].add_(torch.randn_like(p["B"]) * 0.5)
                p["A"].add_(torch.randn_like(p["A"]) * 0.5)
                if "gamma" in p:
                    p["gamma"].add_(torch.randn_like(p["gamma"]) * 0.3)
        ranks[name] = [r["rank"] for r in analysis.modulation_rank(m)]
    assert set(ranks["vanilla_mul"]) == {1}          # a rank-1 product stays rank 1 (float64 from float32 factors)
    assert min(ranks["funlora"]) > 1 and max(ranks["funlora"]) > 10  # the cosine raises the rank, past K=10
