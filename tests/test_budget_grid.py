"""Table III at two adapter budgets: the grids' settings axis, its table and its claim verdicts."""
import json

from bench import grids
from bench.report.cli import main as report_main

from .test_report import make_record


def test_the_settings_axis_sets_cell_keys_and_names_the_cells():
    cells = grids.expand("table3_budget", {"scale": "cpu", "seeds": [0]})
    assert len(cells) == 6
    steps = {c.label: c.config["generator"]["adapter"]["max_steps"] for c in cells}
    assert steps["fashion_mnist_2-2_vanilla_mul_midpoint6_s0"] == 150          # the preset
    assert steps["fashion_mnist_2-2_vanilla_mul_midpoint6_generator.adapter.max_steps=600_s0"] == 600
    assert all(c.config["tune"]["name"] == "lr" for c in cells)
    other = cells[1].config["generator"]["adapter"]
    assert other["batch_size"] == cells[0].config["generator"]["adapter"]["batch_size"]   # only the key it sets


def _budget_record(store, method, seed, la, steps):
    path = make_record(store, "table3_budget", "fashion_mnist", "2-2", method, seed, la, la + 5, 2432,
                       label=f"{method}_{steps}_s{seed}")
    obj = json.loads(path.read_text())
    obj["cell"]["scale"] = "cpu"
    obj["config"]["generator"] = {"adapter": {"max_steps": steps}}
    path.write_text(json.dumps(obj))


def test_the_report_has_a_table_and_a_verdict_per_budget(tmp_path, capsys):
    for seed in range(3):
        for steps, add in ((150, 40.0), (600, 30.0)):
            _budget_record(tmp_path, "vanilla_add", seed, add + seed, steps)
            _budget_record(tmp_path, "vanilla_mul", seed, 60.0 + seed * 0.5, steps)
    assert report_main([f"store={tmp_path}", "format=all", "figures=false", "compare=paper"]) == 0
    # the tidy rows keep the budgets apart: n = 3 seeds each, add's mean 41 at 150 and 31 at 600
    rows = [r for r in json.loads((tmp_path / "report" / "table3_budget.json").read_text()) if r["metric"] == "la"]
    add = {r["adapter_steps"]: r for r in rows if r["method"] == "vanilla_add"}
    assert {s: (r["n"], round(r["mean"], 6)) for s, r in add.items()} == {"150": (3, 41.0), "600": (3, 31.0)}
    md = (tmp_path / "report" / "table3_budget.md").read_text()
    assert "Table III at 150 adapter steps" in md and "Table III at 600 adapter steps" in md
    # the time table too: a row per method and budget, budgets in increasing order (it pooled them)
    time_rows = [ln.split("|")[1].strip() for ln in md.split("### Supplementary: time")[1].split("###")[0].splitlines()
                 if ln.startswith("| V")]
    assert time_rows == [f"Vanilla {m} (fashion_mnist 2-2, {s} adapter steps)" for m in ("add", "mul") for s in (150, 600)]
    # the grid's own page says whether mul beats add at each budget (and the gap's growth where checked)
    claims_md = md.split("### The paper's claims on these records")[1].split("###")[0]
    assert claims_md.count("| The multiplicative adapter beats the additive one at each adapter budget") == 2
    assert "fashion_mnist 2-2 150 adapter steps" in claims_md and "| holds " in claims_md
    claims = json.loads((tmp_path / "report" / "claims.json").read_text())
    mine = [c for c in claims if c["claim"] == "mul_beats_add_per_budget"]
    assert sorted(c["setting"] for c in mine) == ["fashion_mnist 2-2 150 adapter steps",
                                                 "fashion_mnist 2-2 600 adapter steps"]
    assert all(c["verdict"] == "holds" for c in mine)
    from bench.report.headline import claim_line   # README's line: the budget, the reason and the grid's page

    line = claim_line(next(c for c in mine if "600" in c["setting"]), "results/cpu/report/table3_budget.md")
    assert line.startswith("- The multiplicative adapter beats the additive one at each adapter budget (mul >> add) "
                           "(vanilla_mul vs vanilla_add, fashion_mnist 2-2 600 adapter steps; "
                           "[table3_budget](results/cpu/report/table3_budget.md)): **holds** (vanilla_mul − vanilla_add: ")
    assert line.endswith(", n = 3; CI above 0)")


def test_the_gap_growth_is_checked_per_seed(tmp_path):
    """mul - add is 20 - seed / 2 at 150 steps and 30 - seed / 2 + noise at 600: it grows, paired by
    seed; where it shrinks the claim is contradicted."""
    for seed, noise in zip(range(3), (0.0, 0.5, -0.5)):
        for steps, add in ((150, 40.0), (600, 30.0 + noise)):
            _budget_record(tmp_path, "vanilla_add", seed, add + seed, steps)
            _budget_record(tmp_path, "vanilla_mul", seed, 60.0 + seed * 0.5, steps)
    assert report_main([f"store={tmp_path}", "format=md", "figures=false", "compare=paper"]) == 0
    claims = json.loads((tmp_path / "report" / "claims.json").read_text())
    (gap,) = [c for c in claims if c["claim"] == "mul_add_gap_grows_with_budget"]
    assert gap["setting"] == "fashion_mnist 2-2 adapter_steps 150 -> 600"
    assert gap["verdict"] == "holds" and abs(gap["diff"] - 10.0) < 1e-9 and gap["n"] == 3
    page = (tmp_path / "report" / "table3_budget.md").read_text()
    (row,) = [[c.strip() for c in ln.split("|")[1:-1]] for ln in page.splitlines() if ln.startswith("| The gap")]
    assert row[1:4] == ["fashion_mnist 2-2 adapter_steps 150 -> 600",
                        "la: (vanilla_mul - vanilla_add) at 600 vs at 150", "holds"] and row[4].startswith("+10.00 ± ")
    assert "mul_add_gap_grows_with_budget" not in {c["claim"] for c in claims if "adapter steps" in c["setting"]}
    for seed in range(3):   # the gap shrinks by 10 instead
        _budget_record(tmp_path, "vanilla_add", seed, 50.0 + seed, 600)
    assert report_main([f"store={tmp_path}", "format=md", "figures=false", "compare=paper"]) == 0
    claims = json.loads((tmp_path / "report" / "claims.json").read_text())
    (gap,) = [c for c in claims if c["claim"] == "mul_add_gap_grows_with_budget"]
    assert gap["verdict"] == "contradicted" and abs(gap["diff"] + 10.0) < 1e-9
