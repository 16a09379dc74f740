"""The published store results/cpu: its records load, its report is what bench.report makes
of them today, and no published record is one a sweep would recompute (a change to a grid,
a preset or a stage key that makes the records stale fails here, naming the grid).

Published: the records of the seeds ``computed.json`` lists. A seed still being computed
(its records in the working tree, not yet committed) is left out, so these tests also pass
beside a running publication; committed records of an unfinished seed are not published."""
import filecmp
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.record import Record

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "results" / "cpu"
COMPUTED = json.loads((STORE / "computed.json").read_text()) if (STORE / "computed.json").exists() else {}
RECORDS = sorted(p for p in (STORE / "records").glob("*/*.json")
                 if str(json.loads(p.read_text())["cell"]["seed"]) in COMPUTED.get(p.parent.name, {}))

pytestmark = pytest.mark.skipif(not RECORDS, reason="no published records in results/cpu")


def published() -> dict[str, list[int]]:
    """Grid -> the seeds it has records of."""
    out: dict[str, set[int]] = {}
    for path in RECORDS:
        rec = Record.load(path)
        out.setdefault(path.parent.name, set()).add(rec.cell.seed)
    return {g: sorted(s) for g, s in out.items()}


def committed_records() -> list[Path]:
    """The records git tracks (all of them where this is no git checkout)."""
    res = subprocess.run(["git", "ls-files", "-z", "results/cpu/records"], cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        return sorted((STORE / "records").glob("*/*.json"))
    return [ROOT / p for p in res.stdout.split("\0") if p.endswith(".json")]


def test_every_published_record_loads_and_names_its_hardware():
    for path in RECORDS:
        rec = Record.load(path)
        assert rec.grid == path.parent.name and rec.label == path.stem, path
        assert rec.hardware, f"{path}: no hardware named"


def test_the_committed_report_is_what_bench_report_makes_of_the_records(tmp_path):
    store, out = tmp_path / "store", tmp_path / "report"
    for path in RECORDS:   # the published records alone
        (store / "records" / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, store / "records" / path.parent.name / path.name)
    res = subprocess.run([sys.executable, "-m", "bench.report", f"store={store}", "compare=paper", f"out={out}",
                          "format=all", "figures=false"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    committed = STORE / "report"
    names = sorted(p.name for p in committed.iterdir() if p.suffix in (".md", ".json"))
    assert names, "no committed report"
    differ = [n for n in names if not (out / n).exists() or not filecmp.cmp(out / n, committed / n, shallow=False)]
    assert not differ, f"bench.report now writes other numbers than the committed report: {differ}"


def numerics_modes(grid: str) -> dict[str, list[int]]:
    """Numerics mode -> the grid's published seeds computed in it (computed.json; a seed noted
    before the field existed was computed natively)."""
    out: dict[str, list[int]] = {}
    for seed in published()[grid]:
        cls = COMPUTED[grid][str(seed)].get("numerics", "native")
        out.setdefault("portable" if cls.startswith("portable") else "native", []).append(seed)
    return out


@pytest.mark.parametrize("grid", sorted(published()))
def test_no_published_record_is_stale_under_todays_code(grid):
    """A dry run of the grid's published seeds, in the numerics mode each was computed in: every
    cell with a record is done (not stale, corrupt or incomplete); cells of a seed still being
    computed may be missing."""
    cells = []
    for mode, seeds in numerics_modes(grid).items():
        res = subprocess.run([sys.executable, "-m", "bench.sweep", f"grid={grid}", "scale=cpu", f"store={STORE}",
                              f"seeds=[{','.join(map(str, seeds))}]", f"numerics={mode}", "dry_run=true"],
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
        cells += [ln.strip() for ln in res.stdout.splitlines() if ln.startswith("  [")]
    assert cells, res.stdout[-1000:]
    bad = [ln for ln in cells if not ln.startswith(("[    done]", "[ missing]"))]
    assert not bad, f"published grid {grid}: records a sweep would recompute under today's code: {bad}"
    labels = {ln.split("]", 1)[1].split()[0] for ln in cells if ln.startswith("[    done]")}
    assert labels == {p.stem for p in RECORDS if p.parent.name == grid}, "records of cells the grid lacks"


def test_one_answer_per_cell_in_the_published_store():
    """Two published records of one cell (the same config, a budget as the size it resolves to,
    in one numerics class) hold the same numbers to the bit (bench/report/consistency.py)."""
    from bench.report.consistency import disagreements

    found = disagreements(RECORDS)
    assert not found, "one cell with two answers in the published store:\n" + "\n".join(found)


def test_the_readme_headline_is_what_the_store_gives():
    """README.md's results section is written by bench.report.headline from the committed report."""
    res = subprocess.run([sys.executable, "-m", "bench.report.headline", f"store={STORE}",
                          f"readme={ROOT / 'README.md'}", "check=true"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]


def test_computed_json_says_which_commit_and_cpu_computed_each_published_seed():
    for grid, seeds in published().items():
        assert sorted(int(s) for s in COMPUTED.get(grid, {})) == seeds, grid
        assert all(v["commit"] and v["hardware"] for v in COMPUTED[grid].values())


def test_committed_records_of_a_seed_still_computing_load_and_stay_out_of_the_report():
    """A seed's finished cells are committed before the seed completes (so a new machine does not
    recompute them); computed.json does not list that seed yet, so it is not published: such records
    must still load (the report test above renders only the published ones)."""
    for path in (p for p in committed_records() if p not in RECORDS):
        rec = Record.load(path)
        assert path.stem.endswith(f"_s{rec.cell.seed}"), path


def test_headline_refuses_a_readme_without_its_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    res = subprocess.run([sys.executable, "-m", "bench.report.headline", f"store={STORE}", f"readme={readme}"],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "results:begin" in res.stderr


def test_published_true_leaves_out_the_seeds_computed_json_does_not_list(tmp_path):
    """The report publish-results.sh renders while the next seed computes: only listed seeds count,
    and a store without computed.json is one error line."""
    grid = sorted(published())[0]
    store = tmp_path / "store"
    (store / "records").mkdir(parents=True)
    shutil.copytree(STORE / "records" / grid, store / "records" / grid)
    keep = published()[grid][:2]
    args = [sys.executable, "-m", "bench.report", f"store={store}", f"grid={grid}", "format=json", "figures=false",
            "published=true"]
    res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "computed.json" in res.stderr, res.stderr
    (store / "computed.json").write_text(json.dumps({grid: {str(s): {} for s in keep}}))
    res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads((store / "report" / f"{grid}.json").read_text())
    assert rows and {r["n"] for r in rows} == {len(keep)}


def test_every_published_record_names_the_stage_keys_todays_code_computes():
    """A published record keeps no stage outputs, only the paths of its sample grids, which
    carry its evaluation key (generators, backbone, solver, classifier and numerics): today's
    code must compute the same key from the record's config, or a rerun would not share the
    published stages (a changed key would pass a dry run unnoticed)."""
    from bench.record import with_added_keys
    from bench.stages import evaluation_key

    checked, wrong = 0, []
    for path in RECORDS:
        rec = Record.load(path)
        keys = {Path(g).parent.name for g in rec.sample_grids or [] if g}
        if not keys:
            continue
        checked += 1
        key = evaluation_key(with_added_keys(rec.config))
        if keys != {key}:
            wrong.append(f"{path.name}: names {sorted(keys)}, today's code computes {key}")
    assert checked and not wrong, wrong
