"""The PEFT zoo (methods/lycoris_zoo.py, methods/scaling_vectors.py), budgets and the Pareto front."""
import json

import pytest
import torch

import methods
from bench.unet import build_unet
from bench.report.cli import main as report_main
from bench.report.pareto import Point, front
from bench.report.tables import Stat
from methods.targets import MethodError

from .conftest import randomized_unet
from .test_report import make_record

ZOO = ["locon", "loha", "lokr", "dora", "oft", "boft", "ia3", "vera"]


def meta_unet(name="cifar10"):
    with torch.device("meta"):
        return build_unet(name)


# ---- exact counts on the CIFAR10 U-Net, layers 40-54 (the numbers) ---------------------
@pytest.mark.parametrize("name,options,ppc", [
    ("ia3", {}, 3_840), ("vera", {}, 7_680), ("locon", {}, 37_376), ("loha", {}, 74_752), ("dora", {}, 41_216),
    ("locon", {"rank": 2}, 74_752), ("oft", {}, 15_360), ("oft", {"block_size": 8}, 30_720),
    ("boft", {"block_size": 4, "butterfly_factor": 1}, 15_360), ("boft", {"block_size": 4}, 7 * 15_360),
])
def test_zoo_ppc_on_cifar10(name, options, ppc):
    m = methods.build(name, **options).attach(meta_unet())
    assert m.ppc() == ppc
    m.add_classes([9])
    assert sum(p.numel() for p in m.class_params["9"].layers.parameters()) == ppc


def test_vera_shares_one_frozen_pair_per_layer_reported_apart():
    m = methods.build("vera").attach(meta_unet())
    # A (256, c_in k k) and B (c_out, 256) for each of the 15 layers; none of them per class.
    expected = sum(256 * (info["in_channels"] * info["kernel_size"] ** 2) + info["out_channels"] * 256
                   for info in m.layer_info.values())
    assert m.shared_params() == expected
    assert all(not b.requires_grad for b in m.shared.buffers())
    one = methods.build("vera", layers="all").attach(randomized_unet(image_size=8, in_channels=1, num_classes=6))
    two = methods.build("vera", layers="all").attach(randomized_unet(image_size=8, in_channels=1, num_classes=6))
    other = methods.build("vera", layers="all", seed=1).attach(randomized_unet(image_size=8, in_channels=1, num_classes=6))
    key = next(iter(one.layer_info))
    assert torch.equal(getattr(one.shared, f"{key}_A"), getattr(two.shared, f"{key}_A"))
    assert not torch.equal(getattr(one.shared, f"{key}_A"), getattr(other.shared, f"{key}_A"))


# ---- the delta-weight mathematics ---------------------------------------------------------------
def _adapted(name, **options):
    """One class's W' for every layer of a tiny U-Net, after a random move of its parameters."""
    torch.manual_seed(0)
    m = methods.build(name, **options).attach(randomized_unet(image_size=8, in_channels=1, num_classes=6))
    m.add_classes([5])
    with torch.no_grad():
        for p in m.class_params.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    params = m.class_params["5"].layers
    return m, [(m._layer(k).base.weight, m.adapted_weight(k, m._layer(k).base.weight, params[k]), params[k])
               for k in m.layer_info]


def test_locon_and_loha_deltas_are_the_low_rank_products():
    _, layers = _adapted("locon", rank=2)
    for w, w2, p in layers:
        torch.testing.assert_close(w2 - w, (p["up"] @ p["down"]).view(w.shape))
    _, layers = _adapted("loha")
    for w, w2, p in layers:
        torch.testing.assert_close(w2 - w, ((p["w1u"] @ p["w1d"]) * (p["w2u"] @ p["w2d"])).view(w.shape))


def test_lokr_delta_is_a_kronecker_product():
    _, layers = _adapted("lokr")
    for w, w2, p in layers:
        w1 = p["w1"]
        w2f = p["w2"] if "w2" in p else (p["w2a"] @ p["w2b"].flatten(1)).view(-1, *p["w2b"].shape[1:])
        kron = torch.kron(w1.view(*w1.shape, *([1] * (w2f.dim() - 2))), w2f)
        torch.testing.assert_close(w2 - w, kron.view(w.shape))


@pytest.mark.parametrize("name,options", [("oft", {"block_size": 2}), ("boft", {"block_size": 2})])
def test_orthogonal_methods_preserve_the_gram_matrix(name, options):
    """W' = R W with R orthogonal on the output channels, so W'^T W' = W^T W."""
    _, layers = _adapted(name, **options)
    for w, w2, _ in layers:
        a, b = w.reshape(w.shape[0], -1), w2.reshape(w.shape[0], -1)
        assert not torch.allclose(a, b)
        torch.testing.assert_close(b.T @ b, a.T @ a, atol=1e-5, rtol=1e-4)


def test_dora_rows_have_the_learned_magnitude_and_ia3_scales_rows():
    _, layers = _adapted("dora")
    for _, w2, p in layers:
        torch.testing.assert_close(w2.reshape(w2.shape[0], -1).norm(dim=1), p["magnitude"], atol=1e-5, rtol=1e-4)
    _, layers = _adapted("ia3")
    for w, w2, p in layers:
        torch.testing.assert_close(w2, w * p["scale"].view(-1, 1, 1, 1))


def test_vera_delta_is_scaled_shared_matrices():
    m, layers = _adapted("vera", rank=4)
    for (w, w2, p), key in zip(layers, m.layer_info):
        a, b = getattr(m.shared, f"{key}_A"), getattr(m.shared, f"{key}_B")
        torch.testing.assert_close(w2 - w, (torch.diag(p["b"]) @ b @ torch.diag(p["d"]) @ a).view(w.shape))


def test_every_zoo_method_is_registered():
    # each then passes the contract kit in tests/test_methods.py (test_every_method_passes_the_contract)
    assert set(ZOO) <= set(methods.available())


# ---- budgets ---------------------------------------------------------------------------------------
def test_budget_picks_the_largest_size_under_the_limit():
    m = methods.build("locon", budget=100_000).attach(meta_unet())
    assert (m.options["rank"], m.ppc()) == (2, 74_752)       # rank 3 would be 112,128
    assert m.budget_choice.met and m.budget_choice.size == 2
    m = methods.build("vera", budget="1x").attach(meta_unet())  # FunLoRA's 10,028: 15 r + 3,840 <= 10,028
    assert (m.options["rank"], m.ppc(), m.budget_choice.limit) == (412, 10_020, 10_028)
    m = methods.build("funlora", budget="0.25x").attach(meta_unet())
    assert (m.options["ratio"], m.ppc()) == (8, 1_516)
    m = methods.build("ia3", budget=5000).attach(meta_unet())
    assert m.budget_choice.option is None and m.budget_choice.met


def test_budget_that_cannot_be_met():
    with pytest.raises(MethodError, match="smallest PPC possible is 37,376 at rank=1"):
        methods.build("locon", budget="1x").attach(meta_unet())
    with pytest.raises(MethodError, match="no size option and its PPC 3,840"):
        methods.build("ia3", budget=1000).attach(meta_unet())
    m = methods.build("dora", budget="1x", budget_strict=False).attach(meta_unet())
    assert (m.options["rank"], m.ppc(), m.budget_choice.met) == (1, 41_216, False)
    for bad in ("abc", 0, "-1x", True):
        with pytest.raises(MethodError, match="method.budget"):
            methods.build("locon", budget=bad)


def test_budget_cli_is_one_line(capsys, tmp_path):
    from bench.run import main as run_main

    assert run_main(["method=locon", "method.budget=10", "scale=smoke", f"out={tmp_path / 'r.json'}",
                     f"workdir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "smallest PPC possible" in err[0]


def test_a_budget_keys_the_stages_by_the_size_it_resolves_to(tmp_path):
    """The zoo's vanilla_mul at 1x is rank 1, plain vanilla_mul: it reuses that cell's generators and
    evaluations (nothing trained or written again) and gets its accuracies; at 4x it is its own."""
    from bench import config
    from bench.protocol import run_cell
    from bench.stages import StagePaths, generator_key, method_key

    def cfg(method):
        return config.resolve({"dataset": "digits", "split": "8-2", "method": method, "scale": "smoke", "seed": 0,
                               "progress": False, "workdir": str(tmp_path / "art")})

    plain, at_1x = cfg({"name": "vanilla_mul"}), cfg({"name": "vanilla_mul", "budget": "1x", "budget_strict": False})
    at_4x = cfg({"name": "vanilla_mul", "budget": "4x"})
    assert method_key(at_1x) == method_key(plain) == {"name": "vanilla_mul"}
    assert method_key(at_4x)["rank"] > 1 and generator_key(at_4x) != generator_key(plain)
    assert generator_key(at_1x) == generator_key(plain)
    first = run_cell(plain, log=lambda *_: None)
    stages = [StagePaths(plain, tmp_path / "art").generators, StagePaths(plain, tmp_path / "art").evaluations]
    stamps = {p: p.stat().st_mtime_ns for d in stages for p in d.rglob("*") if ".lock" not in p.name}
    assert stamps
    second = run_cell(at_1x, log=lambda *_: None)
    assert second.accuracy == first.accuracy and second.budget["size"] == 1 and second.budget["met"]
    assert {p: p.stat().st_mtime_ns for d in stages for p in d.rglob("*") if ".lock" not in p.name} == stamps


@pytest.mark.parametrize("grid", ["zoo", "zoo_budget"])
def test_zoo_grids_build_at_paper_scale_within_budget_or_marked(grid):
    from bench import grids
    from bench.protocol import dry_build

    reference = 10_028   # FunLoRA on the CIFAR10 U-Net
    for cell in grids.expand(grid, {"seeds": [0]}):
        info = dry_build(cell.config)
        b = info["budget"]
        factor = float(cell.config["method"]["budget"][:-1])
        assert b["limit"] == int(factor * reference)
        assert b["met"] == (info["ppc"] <= b["limit"]), cell.label
    ia3 = dry_build(next(c for c in grids.expand("zoo") if c.config["method"]["name"] == "ia3").config)
    assert ia3["budget"]["met"] and ia3["ppc"] == 3_840


# ---- the Pareto front --------------------------------------------------------------------------------
def _p(label, ppc, la):
    return Point(label, label, ppc, Stat(la, 0.0, 1), None, "", True)


def test_pareto_front():
    pts = [_p("a", 100, 50.0), _p("b", 200, 60.0), _p("c", 300, 55.0), _p("d", 50, 40.0), _p("e", 200, 58.0)]
    assert [p.label for p in front(pts)] == ["d", "a", "b"]


def test_how_often_each_method_is_on_a_seeds_front():
    """A method on the mean front by a hair is on the front of only the seeds where it wins."""
    import pandas as pd

    from bench.report.pareto import front_frequency

    grid = {"name": "zoo", "axes": {"data": [{"dataset": "cifar10", "split": "2-2"}],
                                    "method": [{"name": "funlora"}, {"name": "ia3"}, {"name": "locon"}]}}
    rows = []
    # funlora (1,000) beats ia3 (1,000) on seeds 0 and 1, loses on seed 2; locon costs more and wins on seed 2 only
    for seed, (f, i, lo) in enumerate([(80, 70, 79), (81, 75, 80), (70, 72, 90)]):
        for m, la, ppc in (("funlora", f, 1_000), ("ia3", i, 1_000), ("locon", lo, 5_000)):
            rows.append({"dataset": "cifar10", "split": "2-2", "method": m, "options": "{}", "seed": seed,
                         "la": float(la), "ppc": ppc})
    often = front_frequency(grid, pd.DataFrame(rows), "cifar10", "2-2")
    assert often == {"FunLoRA": (2, 3), "IA3": (1, 3), "LoCon": (1, 3)}


def test_zoo_report_has_the_front_and_the_figure(tmp_path):
    entry = {"budget": "1x", "budget_strict": False}
    for seed in (0, 1):
        make_record(tmp_path, "zoo", "cifar10", "2-2", "funlora", seed, 80.0 + seed, 85.0, 10_028, dict(entry),
                    budget={"requested": "1x", "limit": 10_028, "option": "ratio", "size": 1, "ppc": 10_028,
                            "met": True})
        make_record(tmp_path, "zoo", "cifar10", "2-2", "ia3", seed, 70.0 + seed, 75.0, 3_840, dict(entry),
                    budget={"requested": "1x", "limit": 10_028, "option": None, "size": None, "ppc": 3_840,
                            "met": True})
        make_record(tmp_path, "zoo", "cifar10", "2-2", "locon", seed, 75.0 + seed, 78.0, 37_376, dict(entry),
                    budget={"requested": "1x", "limit": 10_028, "option": "rank", "size": 1, "ppc": 37_376,
                            "met": False})
    assert report_main([f"store={tmp_path}", "grid=zoo"]) == 0
    md = (tmp_path / "report" / "zoo.md").read_text()
    assert "| LoCon (1x) †" in md and "cannot fit the budget" in md
    # seed 0: LoCon's 75 at 37,376 is beaten by FunLoRA's 80 at 10,028; seed 1: likewise; IA3 and FunLoRA both
    main_table = md.split("### Pareto front")[0]
    rows_md = {ln.split("|")[1].strip(): ln.rstrip(" |") for ln in main_table.splitlines() if ln.startswith("| ")}
    assert rows_md["FunLoRA (1x)"].endswith("2 of 2") and rows_md["LoCon (1x) †"].endswith("0 of 2")
    front_table = md.split("### Pareto front")[1].split("###")[0]
    assert "FunLoRA (1x)" in front_table and "IA3 (1x)" in front_table and "LoCon" not in front_table
    assert (tmp_path / "report" / "figures" / "zoo_pareto_cifar10_2-2.png").stat().st_size > 10_000
    rows = json.loads((tmp_path / "report" / "zoo.json").read_text())
    assert {r["method"] for r in rows} >= {"funlora", "ia3", "locon"}
