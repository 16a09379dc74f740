"""bench.report: golden tables, LaTeX well-formedness, bad input."""
import json
import re
from pathlib import Path

import pytest

from bench import grids
from bench.record import NFE, CellInfo, Record, Seconds
from bench.report.cli import main as report_main


def make_record(store: Path, grid: str, dataset: str, split: str, method: str, seed: int, la: float,
                aia: float, ppc: int, options: dict | None = None, label: str | None = None,
                created: str = "now", **extra) -> Path:
    options = options or {}
    solver = {"name": "dopri5", "atol": 1e-4, "rtol": 1e-4, "steps": 100}
    rec = Record(
        cell=CellInfo(dataset, split, method, options, "paper", seed, solver), tasks=[[0, 1], [2, 3]],
        accuracy=[[min(la + 10, 100.0), None], [la, la]], avg_accuracy=[min(la + 10, 100.0), la], la=la, aia=aia,
        ppc=ppc,
        embedding_params_per_class=512, trainable_per_task=[100, 10],
        nfe=[NFE("dopri5", 0, 0), NFE("dopri5", 2, 40, 20.0, 20, 20)],
        seconds=Seconds([10.0, 2.0], [0.0, 1.0], [3.0, 3.0], 19.0),
        config={"method": {"name": method, **options}}, device="cpu", torch="test", created=created,
        grid=grid, label=label or f"{dataset}_{split}_{method}_{seed}_{len(options)}", **extra)
    path = store / "records" / grid / f"{rec.label}.json"
    rec.write(path)
    return path


TABLE3_GOLDEN = """### Table III: operation (LA)

| Operation   | cifar10 2-2   | cifar100 20-20   |
|:------------|:--------------|:-----------------|
| Add         | 19.00 ± 12.71 | 14.50            |
| Mul-Add     | 84.00         | -                |
| Mul         | **85.00**     | **60.07**        |

_Note: 1 cell(s) without a record are shown as a dash._
_Note: mean ± half-width of the 95% confidence interval (Student t) over seeds, n = 1 to 2._
"""


def test_table3_golden_markdown(tmp_path, capsys):
    for seed, la in ((0, 18.0), (1, 20.0)):
        make_record(tmp_path, "table3", "cifar10", "2-2", "vanilla_add", seed, la, la, 9728)
    make_record(tmp_path, "table3", "cifar10", "2-2", "mul_add", 0, 84.0, 85.0, 19456)
    make_record(tmp_path, "table3", "cifar10", "2-2", "vanilla_mul", 0, 85.0, 86.0, 9728)
    make_record(tmp_path, "table3", "cifar100", "20-20", "vanilla_add", 0, 14.5, 20.0, 9728)
    make_record(tmp_path, "table3", "cifar100", "20-20", "vanilla_mul", 0, 60.07, 70.0, 9728)
    assert report_main([f"store={tmp_path}", "grid=table3", "figures=false"]) == 0
    md = (tmp_path / "report" / "table3.md").read_text()
    assert TABLE3_GOLDEN in md
    assert TABLE3_GOLDEN in capsys.readouterr().out


def test_table5_golden_rows(tmp_path):
    make_record(tmp_path, "table5", "cifar10", "2-2", "multitask_classifier", 0, 95.0, 96.0, 0)
    for seed, la in ((0, 80.0), (1, 82.0), (2, 84.0)):
        make_record(tmp_path, "table5", "cifar10", "2-2", "funlora", seed, la, la + 5, 10028)
    make_record(tmp_path, "table5", "cifar100", "20-20", "funlora", 0, 60.0, 70.0, 10028)
    make_record(tmp_path, "table5", "cifar100", "20-20", "scale_shift", 0, 61.0, 65.0, 11776)
    assert report_main([f"store={tmp_path}", "grid=table5", "figures=false"]) == 0
    md = (tmp_path / "report" / "table5.md").read_text()
    lines = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]] for ln in md.splitlines()
             if ln.startswith("| ") and not ln.startswith("| Method")}
    assert lines["Classifier Multitask"][:3] == ["**95.00**", "**96.00**", "0"]
    assert lines["FunLoRA"][:6] == ["82.00 ± 4.97", "87.00 ± 4.97", "10,028", "60.00", "**70.00**", "10,028"]
    assert lines["Scale and shift (Conv2d)"][3:6] == ["**61.00**", "65.00", "11,776"]
    assert lines["LoRA attention layers"] == ["-"] * 9
    assert "cell(s) without a record are shown as a dash" in md


def _balanced(tex: str) -> bool:
    depth = 0
    for ch in re.sub(r"\\[{}]", "", tex):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def test_latex_is_well_formed(tmp_path):
    make_record(tmp_path, "table5", "cifar10", "2-2", "funlora", 0, 80.0, 85.0, 10028)
    make_record(tmp_path, "table5", "cifar10", "2-2", "lora_conv_v1", 0, 70.0, 75.0, 57856)
    assert report_main([f"store={tmp_path}", "grid=table5", "format=latex", "figures=false", "compare=paper"]) == 0
    tex = (tmp_path / "report" / "table5.tex").read_text()
    assert _balanced(tex)
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") >= 2
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}")
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\textbf{80.00}" in tex
    body = re.sub(r"\\[a-zA-Z]+|\\[_%&#$]", "", tex)
    assert "_" not in body and "%" not in body  # every underscore and percent sign escaped


def test_stale_and_broken_records_are_reported_not_mixed(tmp_path, capsys):
    cell = next(c for c in grids.expand("table3") if c.config["method"]["name"] == "vanilla_mul")
    path = make_record(tmp_path, "table3", "cifar10", "2-2", "vanilla_mul", 0, 85.0, 86.0, 9728, label=cell.label)
    rec = json.loads(path.read_text())
    rec["config"] = {**cell.config, "seed": 0, "classifier": {**cell.config["classifier"], "epochs": 1}}
    path.write_text(json.dumps(rec))
    make_record(tmp_path, "table3", "cifar10", "2-2", "mul_add", 0, 84.0, 85.0, 19456)
    (tmp_path / "records" / "table3" / "broken.json").write_text('{"la": 3')
    bad = json.loads(path.read_text())
    del bad["nfe"]
    (tmp_path / "records" / "table3" / "nofield.json").write_text(json.dumps(bad))
    assert report_main([f"store={tmp_path}", "figures=false"]) == 0
    captured = capsys.readouterr()
    assert "stale" in captured.err and "not valid JSON" in captured.err and "field 'nfe' is missing" in captured.err
    md = (tmp_path / "report" / "table3.md").read_text()
    assert "85.00" not in md and "84.00" in md


@pytest.mark.parametrize("args,message", [
    (["grid=table9"], "unknown grid 'table9'"),
    (["format=pdf"], "format must be one of md, latex, json, html, both, all"),
    (["colour=red"], "unknown key 'colour'"),
])
def test_bad_input(args, message, tmp_path, capsys):
    assert report_main([f"store={tmp_path}"] + args) == 2
    assert message in capsys.readouterr().err


def test_empty_store(tmp_path, capsys):
    assert report_main([f"store={tmp_path}"]) == 2
    assert "no records in" in capsys.readouterr().err
    (tmp_path / "records" / "table3").mkdir(parents=True)
    assert report_main([f"store={tmp_path}"]) == 2
    assert "no usable record" in capsys.readouterr().err


def test_figures_are_written_as_png_and_pdf(tmp_path):
    importance = [{"layer": l, "name": f"c{l}", "class": c, "importance": 0.1 * l + 0.01 * c}
                  for l in (40, 41, 42) for c in (2, 3)]
    rank = [{"layer": l, "name": f"c{l}", "class": c, "rank": 3, "function": "cosine", "max_rank": 64}
            for l in (40, 41) for c in (2, 3)]
    fparams = [{"layer": l, "class": 2, "j": j, "gamma": 1.0 / j, "omega": float(j)} for l in (40, 41) for j in (1, 2, 3)]
    make_record(tmp_path, "table2", "cifar100", "20-20", "vanilla_mul", 0, 60.0, 70.0, 9728,
                analysis={"importance": importance, "rank": [], "function_parameters": []})
    make_record(tmp_path, "table2", "cifar100", "20-20", "funlora", 0, 62.0, 71.0, 10028,
                analysis={"importance": [], "rank": rank, "function_parameters": fparams})
    assert report_main([f"store={tmp_path}", "grid=table2"]) == 0
    figs = tmp_path / "report" / "figures"
    for name in ("table2_accuracy_per_task", "table2_fig3_importance", "table2_fig4_rank",
                 "table2_fig5_function_parameters"):
        for ext in ("png", "pdf"):
            assert (figs / f"{name}.{ext}").stat().st_size > 1000, name


def test_figures_are_the_same_bytes_from_the_same_records(tmp_path):
    """A committed report must not churn: no bootstrap band drawn afresh, no creation date in a PDF.
    The accuracy-per-task band is the tables' t interval: at three seeds it spans mean +- t * s / sqrt(3)."""
    import hashlib

    from bench.report.figures import t_interval

    for seed, la in enumerate((60.0, 64.0, 71.0)):
        make_record(tmp_path, "table5", "cifar10", "2-2", "funlora", seed, la, la, 10028)
    digests = []
    for _ in range(2):
        assert report_main([f"store={tmp_path}", "grid=table5"]) == 0
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in sorted((tmp_path / "report" / "figures").iterdir())})
    assert digests[0] == digests[1] and any(n.endswith(".pdf") for n in digests[0])
    import pandas as pd

    low, high = t_interval(pd.Series([60.0, 64.0, 71.0]))
    half = 4.3027 * 5.5678 / 3 ** 0.5          # t_{0.975, 2} * s / sqrt(n)
    assert (low + high) / 2 == pytest.approx(65.0) and (high - low) / 2 == pytest.approx(half, rel=1e-4)
    assert t_interval(pd.Series([60.0])) == (60.0, 60.0)


# ---- evidence: intervals, paired tests, tidy JSON, claims -------------------------------------
def _paired_store(tmp_path, diffs=(2.0, 3.0, 4.0), grid="table3", a="vanilla_mul", b="vanilla_add", base=50.0):
    for seed, d in enumerate(diffs):
        make_record(tmp_path, grid, "cifar10", "2-2", b, seed, base + seed, base + seed, 9728)
        make_record(tmp_path, grid, "cifar10", "2-2", a, seed, base + seed + d, base + seed + d, 9728)


def test_json_rows_carry_mean_ci_and_the_paired_test(tmp_path):
    _paired_store(tmp_path)
    assert report_main([f"store={tmp_path}", "grid=table3", "figures=false", "format=json",
                        "reference=vanilla_add"]) == 0
    rows = json.loads((tmp_path / "report" / "table3.json").read_text())
    la = {r["method"]: r for r in rows if r["metric"] == "la"}
    mul = la["vanilla_mul"]
    for key in ("grid", "method", "dataset", "split", "metric", "mean", "std", "ci95", "n", "p_value", "diff",
                "diff_ci95"):
        assert key in mul
    # Hand-computed: LA 52, 54, 56 -> mean 54, std 2, t(0.975, 2) = 4.302653 -> 4.302653 * 2 / sqrt(3)
    assert mul["mean"] == pytest.approx(54.0) and mul["std"] == pytest.approx(2.0)
    assert mul["ci95"] == pytest.approx(4.968275, rel=1e-6) and mul["n"] == 3
    # Differences 2, 3, 4 -> mean 3, std 1, half-width 4.302653 / sqrt(3); t = 3 sqrt(3) with df 2, whose
    # two-sided p is 1 - t / sqrt(t^2 + 2) = 1 - sqrt(27 / 29) = 0.035098
    assert mul["diff"] == pytest.approx(3.0) and mul["diff_ci95"] == pytest.approx(2.484138, rel=1e-6)
    assert mul["p_value"] == pytest.approx(1 - (27 / 29) ** 0.5, rel=1e-6) and mul["significant"] is True
    assert "diff" not in la["vanilla_add"] and la["vanilla_add"]["reference"] == "vanilla_add"
    assert not (tmp_path / "report" / "table3.md").exists()  # format=json writes JSON only


def test_holm_correction_and_the_paired_table(tmp_path):
    from bench.report.stats import holm, paired

    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    p = paired({0: 1.0, 1: 2.0, 2: 4.0}, {0: 0.0, 1: 0.0, 2: 1.0})
    # diffs 1, 2, 3: t = 2 sqrt(3), df 2 -> p = 1 - sqrt(12 / 14)
    assert p.diff == pytest.approx(2.0) and p.p_value == pytest.approx(1 - (12 / 14) ** 0.5, rel=1e-6)
    assert p.p_wilcoxon is None
    w = paired({s: float(s + (s % 3)) for s in range(8)}, {s: float(s) for s in range(8)})
    assert w.p_wilcoxon is not None  # from 6 pairs on
    _paired_store(tmp_path)
    assert report_main([f"store={tmp_path}", "grid=table3", "figures=false", "reference=vanilla_add"]) == 0
    md = (tmp_path / "report" / "table3.md").read_text()
    assert "Paired differences to vanilla_add" in md and "+3.00 ± 2.48 (p 0.0351)*" in md


def test_claim_verdicts_on_a_synthetic_store(tmp_path, capsys):
    from bench.report.claims import decide

    assert decide("greater", 3.0, 1.0, 0)[0] == "holds"
    assert decide("greater", 0.5, 1.0, 0)[0] == "not significant"
    assert decide("greater", -3.0, 1.0, 0)[0] == "contradicted"
    assert decide("equivalent", 0.2, 0.5, 2.0)[0] == "holds"
    assert decide("not_worse", -3.0, 0.5, 1.0)[0] == "contradicted"
    _paired_store(tmp_path)  # mul beats add by 3 +- 2.48: holds
    for seed, d in enumerate((-1.0, 1.0, 0.5)):  # mul-add within +-1 of mul, but only 3 noisy seeds
        make_record(tmp_path, "table3", "cifar10", "2-2", "mul_add", seed, 50.0 + seed + 3 + d, 50.0, 19456)
    assert report_main([f"store={tmp_path}", "grid=table3", "figures=false", "compare=paper"]) == 0
    verdicts = {v["claim"]: v for v in json.loads((tmp_path / "report" / "claims.json").read_text())}
    assert verdicts["mul_beats_add"]["verdict"] == "holds" and verdicts["mul_beats_add"]["n"] == 3
    assert verdicts["mul_beats_add"]["diff"] == pytest.approx(3.0)
    assert verdicts["mul_matches_mul_add"]["verdict"] == "not significant"
    assert "**holds**" in (tmp_path / "report" / "claims.md").read_text()
    # Reversed numbers contradict the claim.
    other = tmp_path / "other"
    _paired_store(other, diffs=(-5.0, -6.0, -7.0))
    assert report_main([f"store={other}", "grid=table3", "figures=false", "compare=paper"]) == 0
    v = {v["claim"]: v for v in json.loads((other / "report" / "claims.json").read_text())}
    assert v["mul_beats_add"]["verdict"] == "contradicted"


def test_tuned_learning_rates_are_shown(tmp_path):
    for seed, chosen in ((0, 0.01), (1, 0.003)):
        for method in ("vanilla_mul", "vanilla_add"):
            make_record(tmp_path, "table3", "cifar10", "2-2", method, seed, 60.0 + seed, 61.0, 9728,
                        tuning={"lr": {"candidates": [0.003, 0.01], "scores": [0.5 + seed, 0.4], "chosen": chosen,
                                       "criterion": "loss", "tasks": [2]}})
    assert report_main([f"store={tmp_path}", "grid=table3"]) == 0
    md = (tmp_path / "report" / "table3.md").read_text()
    assert "Tuned adapter learning rates (loss)" in md and "| 0.01, 0.003 " in md
    assert (tmp_path / "report" / "figures" / "table3_tuning.png").stat().st_size > 1000


def test_the_headline_says_which_cpu_computed_which_seeds():
    from bench.report.headline import seeds_line

    epyc, xeon = "AMD EPYC (AVX2), 2 cores", "Intel(R) Xeon(R) Processor (AVX-512), 2 cores"
    computed = {"table5": {"0": {"commit": "aaa", "hardware": epyc}, "1": {"commit": "bbb", "hardware": epyc},
                           "2": {"commit": "bbb", "hardware": xeon},
                           "3": {"commit": "ccc", "hardware": epyc, "numerics": "portable x86-64 AVX2"}}}
    line = seeds_line(computed, "table5", {0: 9, 1: 9, 2: 4, 3: 9})
    # an entry older than its numerics field was computed natively: its class is read from the CPU line
    assert line == (f"seeds 0-3 (n = 4; seed 2 in progress (4 of 9 cells)), computed at aaa (seed 0), bbb (seeds 1, 2), "
                    f"ccc (seed 3) on {epyc} in native AMD AVX2 numerics (seeds 0, 1); {xeon} in native Intel "
                    f"AVX-512 numerics (seed 2); {epyc} in portable x86-64 AVX2 numerics (seed 3)")
    one = {"table5": {"0": computed["table5"]["0"]}}
    assert seeds_line(one, "table5", {0: 9}) == \
        f"seed 0 (n = 1), computed at aaa (seed 0) on {epyc} in native AMD AVX2 numerics"


def test_the_status_lines_count_only_the_seeds_computed_json_lists(tmp_path):
    """results/README.md's list: a seed still computing (records, no computed.json entry) is not counted."""
    from bench.report.headline import status

    for grid, seed in [("table3_budget", 0), ("table3_budget", 0), ("table3_budget", 1)]:
        folder = tmp_path / "records" / grid
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"r{len(list(folder.iterdir()))}.json").write_text(json.dumps({"cell": {"seed": seed}}))
    xeon = "Intel(R) Xeon(R) Processor (AVX-512), 2 cores"
    (tmp_path / "computed.json").write_text(json.dumps({"table3_budget": {"0": {"commit": "ccc", "hardware": xeon}}}))
    lines = status(tmp_path).splitlines()
    assert "- `table5`: not computed yet" in lines
    budget = next(ln for ln in lines if ln.startswith("- `table3_budget`"))
    assert budget.startswith(f"- `table3_budget`: 1 of its 5 seeds (0-4); seed 0 (n = 1), computed at ccc (seed 0) "
                             f"on {xeon} in native Intel AVX-512 numerics; 2 records (")


def test_times_are_median_and_range_so_that_one_stalled_run_does_not_carry_them():
    """Table V's LoRA attention sampled one task of one seed for 4,096 s (a stalled job): as a
    mean ± CI its time read 976.3 ± 2277.5 s; as median [min, max] the stall shows as the max."""
    import pandas as pd

    from bench.report.tables import spread

    assert spread(pd.Series([100.0, 110.0, 4096.0, 120.0, 90.0])) == "110.0 [90.0, 4096.0]"
    assert spread(pd.Series([12.34])) == "12.3" and spread(pd.Series([float("nan")])) is None
