"""The HTML report: ``index.html`` and one page per grid, self-contained on disk.

A page holds the grid's tables (the numbers of the markdown and LaTeX files, best values
in bold, CIs where seeds allow), every figure, the sample grids of its cells (one row
per cell, the tasks side by side: old classes' rows stay put under adapters and drift
under fine-tuning), and each cell's config in a ``<details>`` element. Plain HTML and
CSS: no script, no network; images are files beside the pages (``figures/``,
``samples/``), so the folder can be zipped, mailed or opened from disk.
"""
from __future__ import annotations

import calendar
import html
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from .render import DASH, best_rows
from .tables import Stat, Table

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #bbb; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { padding: 4px 10px; text-align: right; border-bottom: 1px solid #ddd; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #444; background: #f4f4f4; }
caption { caption-side: top; text-align: left; font-weight: bold; padding: 4px 0; }
.note { font-size: 12px; color: #555; margin: 0; }
figure { display: inline-block; margin: .5em; vertical-align: top; }
figure img { max-width: 560px; border: 1px solid #ddd; }
.samples td { vertical-align: top; text-align: left; }
.samples img { max-width: 240px; border: 1px solid #ccc; }
.scroll { overflow-x: auto; }
pre { background: #f7f7f7; padding: .6em; font-size: 12px; overflow-x: auto; }
"""


@dataclass
class Page:
    """One grid's content."""

    name: str
    description: str
    records: int
    tables: list[Table]
    figures: list[Path] = field(default_factory=list)
    # (title, label, grid per task, when the record was written: epoch seconds or None)
    samples: list[tuple[str, str, list[str | None], float | None]] = field(default_factory=list)
    configs: list[tuple[str, dict]] = field(default_factory=list)


def table_html(table: Table) -> str:
    best = best_rows(table)
    out = ['<table class="results">', f"<caption>{html.escape(table.title)}</caption>", "<thead>"]
    if table.groups:
        out.append("<tr><th></th>" + "".join(f'<th colspan="{span}">{html.escape(g)}</th>'
                                             for g, span in table.groups) + "</tr>")
    out.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in table.header) + "</tr></thead><tbody>")
    for i, row in enumerate(table.rows):
        cells = []
        for c, v in enumerate(row):
            text = DASH if v is None else (v.text() if isinstance(v, Stat) else str(v))
            text = html.escape(text)
            if c and c in best and i in best[c]:
                text = f"<b>{text}</b>"
            cells.append(f"<td>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    out += [f'<p class="note">{html.escape(n)}</p>' for n in table.footnotes]
    return "\n".join(out)


# How much later than its record a sample grid may be written and still be the record's own drawing: the
# record is written after its last grid; the margin absorbs a file server's clock running ahead.
REDRAWN_AFTER_S = 300.0


def written_at(created: object) -> float | None:
    """A record's `created` stamp (UTC, ISO 8601 with Z) as epoch seconds; None if it is not one."""
    try:
        return calendar.timegm(time.strptime(str(created), "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return None


def _copy(src: str | Path, dest_dir: Path, name: str, record_written: float | None = None) -> str | None:
    """Copy an image next to the pages (so the folder stands alone); its relative path.

    A sample grid written well after the record that names it (RECORD_WRITTEN) is not that record's
    drawing: another grid's cell of the same configuration recomputed the stage later, perhaps on
    another CPU model (a published store keeps records, not stage outputs). Then the copy made from
    the record's own drawing is kept, or the grid is left out if there is none."""
    from ..pictures import readable_png

    src, dest = Path(src), dest_dir / name
    redrawn = (record_written is not None and src.exists()
               and src.stat().st_mtime > record_written + REDRAWN_AFTER_S)
    if not src.exists() or redrawn:   # a published store keeps the copies, not the stage outputs they came from
        return f"{dest_dir.name}/{name}" if dest.exists() else None
    if src.suffix == ".png" and not readable_png(src):
        print(f"warning: {src} is not a readable PNG (truncated or damaged): left out of the HTML report; "
              "rerun its cell to draw it again", file=sys.stderr)
        return None
    dest_dir.mkdir(parents=True, exist_ok=True)
    if not dest.exists() or dest.stat().st_mtime < src.stat().st_mtime:
        shutil.copyfile(src, dest)
    return f"{dest_dir.name}/{name}"


def page_html(page: Page, out: Path) -> str:
    parts = [f"<h1>{html.escape(page.name)}</h1>", f"<p>{html.escape(page.description)} "
             f"({page.records} records)</p>", '<p><a href="index.html">all grids</a></p>', "<h2>Tables</h2>"]
    parts += [table_html(t) for t in page.tables]
    if page.figures:
        parts.append("<h2>Figures</h2>")
        for f in page.figures:
            rel = _copy(f, out / "figures", f.name) if f.parent != out / "figures" else f"figures/{f.name}"
            parts.append(f'<figure><img src="{html.escape(rel)}" alt="{html.escape(f.stem)}">'
                         f"<figcaption>{html.escape(f.stem)}</figcaption></figure>")
    if page.samples:
        parts.append("<h2>Samples after each task</h2><p>Fixed noise per class: under per-class adapters the rows "
                     "of old classes are the same pixels from task to task. One seed per cell: its lowest with "
                     "sample grids.</p>")
        width = max(len(g) for _, _, g, _ in page.samples)
        parts.append('<div class="scroll"><table class="samples"><thead><tr><th>cell</th>' +
                     "".join(f"<th>task {t + 1}</th>" for t in range(width)) + "</tr></thead><tbody>")
        for title, label, grids, record_written in page.samples:
            cells = []
            for t, g in enumerate(grids):
                rel = _copy(g, out / "samples", f"{page.name}_{label}_task{t + 1}.png", record_written) if g else None
                # a label may hold [ ] = , (a zoo cell's budget): percent-encoded, the src is a valid URL
                cells.append(f'<td><img src="{html.escape(quote(rel))}" alt="{html.escape(title)} task {t + 1}"></td>'
                             if rel else "<td>-</td>")
            parts.append(f"<tr><td>{html.escape(title)}</td>{''.join(cells)}</tr>")
        parts.append("</tbody></table></div>")
    if page.configs:
        parts.append("<h2>Cells</h2>")
        for label, cfg in page.configs:
            parts.append(f"<details><summary>{html.escape(label)}</summary>"
                         f"<pre>{html.escape(json.dumps(cfg, indent=1, sort_keys=True, default=str))}</pre></details>")
    return _doc(page.name, "\n".join(parts))


def _doc(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def write_site(out: Path, pages: list[Page], extra: list[tuple[str, str]] | None = None) -> Path:
    """Write every page and ``index.html`` (atomically); returns the index's path."""
    out.mkdir(parents=True, exist_ok=True)
    for page in pages:
        _write(out / f"{page.name}.html", page_html(page, out))
    items = "".join(f'<li><a href="{html.escape(p.name)}.html">{html.escape(p.name)}</a>: '
                    f"{html.escape(p.description)} ({p.records} records, {len(p.tables)} tables)</li>" for p in pages)
    links = "".join(f'<li><a href="{html.escape(href)}">{html.escape(text)}</a></li>' for text, href in extra or [])
    body = (f"<h1>funlora-bench report</h1><h2>Grids</h2><ul>{items}</ul>"
            + (f"<h2>Also</h2><ul>{links}</ul>" if links else ""))
    index = out / "index.html"
    _write(index, _doc("funlora-bench report", body))
    return index


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


__all__ = ["Page", "table_html", "page_html", "write_site"]
