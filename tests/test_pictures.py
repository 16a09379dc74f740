"""What a person looks at: sample grids, per-class accuracy, the HTML report in a real
browser (headless Chromium) and LaTeX compiled by pdflatex."""
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import config
from bench.pictures import LABEL_WIDTH
from bench.protocol import run_cell
from bench.report.cli import main as report_main

from .test_report import make_record

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PDFLATEX = shutil.which("pdflatex")
need_browser = pytest.mark.skipif(not CHROMIUM and not os.environ.get("FUNLORA_REQUIRE_BROWSER"),
                                  reason="no chromium here (CI installs it and sets FUNLORA_REQUIRE_BROWSER)")
need_tex = pytest.mark.skipif(not PDFLATEX and not os.environ.get("FUNLORA_REQUIRE_TEX"),
                              reason="no pdflatex here (CI installs it and sets FUNLORA_REQUIRE_TEX)")


def _cell(method, tmp_path):
    cfg = config.resolve({"dataset": "digits", "split": "4-2", "method": {"name": method}, "scale": "smoke",
                          "seed": 0, "progress": False, "workdir": str(tmp_path / "art"), "sample_grid": 4})
    return run_cell(cfg, log=lambda *_: None)


def _row(path, i, rows):
    """Pixels of class row ``i`` (images only, no label) of a grid with ``rows`` rows."""
    img = np.asarray(Image.open(path).convert("L"))
    top = 18
    h = (img.shape[0] - top) // rows
    return img[top + i * h: top + (i + 1) * h, LABEL_WIDTH:]


@pytest.mark.parametrize("method,frozen", [("vanilla_mul", True), ("finetune", False)])
def test_sample_grids_keep_old_classes_under_adapters_only(method, frozen, tmp_path):
    rec = _cell(method, tmp_path)
    assert len(rec.sample_grids) == 4 and all(Path(p).exists() for p in rec.sample_grids)
    seen = [4, 6, 8, 10]
    for t in range(3):   # the first task's four classes, after task t+1 and after task t+2
        same = [np.array_equal(_row(rec.sample_grids[t], i, seen[t]), _row(rec.sample_grids[t + 1], i, seen[t + 1]))
                for i in range(4)]
        assert all(same) if frozen else not any(same), (t, same)


def test_per_class_accuracy_agrees_with_the_task_accuracy(tmp_path):
    from bench import data
    from bench.protocol import prepare_data

    rec = _cell("vanilla_mul", tmp_path)
    test_y = prepare_data(rec.config, data.load("digits", "unused"), 8).test_y   # the cell's own test images
    counts = {c: int((test_y == c).sum()) for c in range(10)}
    assert [sorted(map(int, pc)) for pc in rec.per_class_accuracy] == [list(range(n)) for n in (4, 6, 8, 10)]
    for row, pcs in zip(rec.accuracy, rec.per_class_accuracy):
        for task, acc in zip(rec.tasks, row):     # a task's accuracy = the count-weighted mean over its classes
            if acc is not None:
                weighted = sum(pcs[str(c)] * counts[c] for c in task) / sum(counts[c] for c in task)
                assert weighted == pytest.approx(acc, abs=1e-3)


def _store(tmp_path):
    grid = tmp_path / "grid.png"
    Image.fromarray((np.random.default_rng(0).random((60, 200)) * 255).astype(np.uint8)).save(grid)
    for seed, la in ((0, 80.0), (1, 82.0)):
        make_record(tmp_path, "table5", "cifar10", "2-2", "funlora", seed, la, la + 5, 10028,
                    sample_grids=[str(grid), str(grid)], per_class_accuracy=[{"0": 90.0, "1": 70.0},
                                                                            {"0": 80.0, "1": 60.0, "2": 50.0}])
        make_record(tmp_path, "table5", "cifar10", "2-2", "vanilla_mul", seed, la - 3, la, 9728)
    make_record(tmp_path, "table5", "cifar100", "20-20", "scale_shift", 0, 40.0, 50.0, 11776)
    assert report_main([f"store={tmp_path}", "grid=table5", "compare=paper"]) == 0
    return tmp_path / "report"


class _Rows(HTMLParser):
    """Counts the rows of every results table in a DOM dump."""

    def __init__(self):
        super().__init__()
        self.tables, self.inside = [], False

    def handle_starttag(self, tag, attrs):
        if tag == "table" and ("class", "results") in attrs:
            self.tables.append(0)
            self.inside = True
        elif tag == "tr" and self.inside:
            self.tables[-1] += 1

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False


def _chromium(*args):
    base = [CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    return subprocess.run(base + list(args), capture_output=True, text=True, timeout=120)


@need_browser
def test_html_report_renders_in_headless_chromium(tmp_path):
    report = _store(tmp_path)
    page = report / "table5.html"
    assert (report / "index.html").exists() and "<script" not in page.read_text()
    md_tables = (report / "table5.md").read_text().count("### ")
    shot = tmp_path / "shot.png"
    res = _chromium(f"--user-data-dir={tmp_path / 'ud1'}", "--window-size=1280,1600", f"--screenshot={shot}",
                    page.as_uri())
    assert shot.exists(), res.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.01       # not blank: text, tables, figures drawn
    dom = _chromium(f"--user-data-dir={tmp_path / 'ud2'}", "--dump-dom", page.as_uri()).stdout
    rows = _Rows()
    rows.feed(dom)
    from bench.report import records, tables

    built = tables.build("table5", records.load(tmp_path, "table5").frame)
    assert len(rows.tables) == md_tables
    # every table of the grid is there with its header row(s) and every body row
    expected = [len(t.rows) + 1 + (1 if t.groups else 0) for t in built]
    assert rows.tables[:len(expected)] == expected
    assert len(re.findall(r'<img src="samples/', dom)) == 2                # 1 seed x 2 tasks of sample grids
    assert "FunLoRA" in dom and "80.00" not in dom and "81.00 ± 12.71" in dom


@need_tex
def test_latex_tables_compile_with_pdflatex(tmp_path):
    report = _store(tmp_path)
    tex = report / "table5_tables.tex"
    assert r"\input{table5}" in tex.read_text()
    res = subprocess.run([PDFLATEX or "pdflatex", "-interaction=nonstopmode", "-halt-on-error", tex.name],
                         cwd=report, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-3000:]
    assert (report / "table5_tables.pdf").stat().st_size > 10_000


def test_report_pages_say_what_their_records_are_and_name_methods_by_title(tmp_path):
    """The page of the main job said 'Table V ... on CIFAR10 2-2, CIFAR100 20-20, ImageNet100' above
    whatever records it had; now it says what they are, read from them. Sample-grid rows carry the
    method's title, as the tables do, not the cell's file label."""
    report = _store(tmp_path)
    page = (report / "table5.html").read_text()
    assert "These records: cifar10 2-2, cifar100 20-20 at scale=paper, seeds 0, 1, 3 methods (5 records)" in page
    assert "These records: cifar10 2-2, cifar100 20-20 at scale=paper" in (report / "table5.md").read_text()
    assert "<td>FunLoRA, cifar10 2-2, seed 0</td>" in page and "_s0</td>" not in page
    # one seed's grids per cell (seed 1's are the same cell again), named after the record's label
    assert "<td>FunLoRA, cifar10 2-2, seed 1</td>" not in page
    from bench.record import Record

    label = next(r.label for r in map(Record.load, (tmp_path / "records" / "table5").glob("*.json"))
                 if r.cell.method == "funlora" and r.cell.seed == 0)
    assert sorted(p.name for p in (report / "samples").iterdir()) == [f"table5_{label}_task{t}.png" for t in (1, 2)]


def test_a_truncated_sample_grid_is_left_out_of_the_report_with_a_warning(tmp_path, capsys):
    grid = tmp_path / "grid.png"
    Image.fromarray(np.zeros((40, 120), dtype=np.uint8)).save(grid)
    grid.write_bytes(grid.read_bytes()[:60])     # cut mid-write
    make_record(tmp_path, "table5", "cifar10", "2-2", "funlora", 0, 80.0, 85.0, 10028, sample_grids=[str(grid)] * 2)
    assert report_main([f"store={tmp_path}", "grid=table5", "figures=false"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {grid} is not a readable PNG" in err
    page = (tmp_path / "report" / "table5.html").read_text()
    assert '<img src="samples/' not in page and not list((tmp_path / "report").rglob("samples/*.png"))


def test_a_sample_grid_of_a_label_with_brackets_has_a_valid_url(tmp_path):
    """A zoo cell's label holds its budget ([budget=1x,budget_strict=False]): the file keeps the label,
    the page's src is percent-encoded."""
    grid = tmp_path / "grid.png"
    Image.fromarray(np.zeros((40, 120), dtype=np.uint8)).save(grid)
    label = "cifar10_2-2_funlora[budget=1x,budget_strict=False]_midpoint6_s0"
    make_record(tmp_path, "table5", "cifar10", "2-2", "funlora", 0, 80.0, 85.0, 10028, label=label,
                sample_grids=[str(grid), str(grid)])
    assert report_main([f"store={tmp_path}", "grid=table5", "figures=false"]) == 0
    page = (tmp_path / "report" / "table5.html").read_text()
    assert (tmp_path / "report" / "samples" / f"table5_{label}_task1.png").exists()
    assert ('<img src="samples/table5_cifar10_2-2_funlora%5Bbudget%3D1x%2Cbudget_strict%3DFalse%5D_midpoint6_s0_task1.png"'
            in page)


def test_a_sample_grid_drawn_again_after_its_record_does_not_replace_the_published_copy(tmp_path):
    """Another grid's cell of the same configuration recomputes a stage on another CPU (a published store
    has records, not stage outputs): the grid file the record names is redrawn with other pixels. The
    report keeps the copy of the record's own drawing, and shows no grid rather than the redraw."""
    import time

    grid = tmp_path / "grid.png"
    Image.fromarray(np.zeros((40, 120), dtype=np.uint8)).save(grid)                 # redrawn just now
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    make_record(tmp_path, "table5", "cifar10", "2-2", "funlora", 0, 80.0, 85.0, 10028, label="old",
                created="2026-01-01T00:00:00Z", sample_grids=[str(grid), str(grid)])  # written long before
    make_record(tmp_path, "table5", "cifar10", "2-2", "vanilla_mul", 0, 80.0, 85.0, 9728, label="new",
                created=now, sample_grids=[str(grid), str(grid)])
    samples = tmp_path / "report" / "samples"
    samples.mkdir(parents=True)
    published = samples / "table5_old_task1.png"
    Image.fromarray(np.full((40, 120), 255, dtype=np.uint8)).save(published)
    drawn = published.read_bytes()
    os.utime(published, (0, 0))                                                      # older than the redraw
    assert report_main([f"store={tmp_path}", "grid=table5", "figures=false"]) == 0
    page = (tmp_path / "report" / "table5.html").read_text()
    assert published.read_bytes() == drawn and 'src="samples/table5_old_task1.png"' in page
    assert not (samples / "table5_old_task2.png").exists() and "samples/table5_old_task2.png" not in page
    assert (samples / "table5_new_task1.png").read_bytes() == grid.read_bytes()       # its own drawing: copied
