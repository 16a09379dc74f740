"""The README's results headline, written from a published store (never typed by hand).

    python -m bench.report.headline [store=results/cpu] [readme=README.md] [status=results/README.md]
                                    [check=true]

Between the README's ``<!-- results:begin -->`` and ``<!-- results:end -->`` lines: Table V's
LA and AIA (mean ± half-width of the 95% t interval over the seeds) and PPC per method, from
the store's rendered ``report/table5.json`` and its records, the seeds and the commit and
CPU that computed each (``STORE/computed.json``, written by scripts/publish-results.sh), and
one line per claim verdict of ``report/claims.json`` on a published grid, with its reason; between the same lines of ``status``,
what the store holds per published grid. ``check=true`` writes nothing and exits 1 when a
section is not what the store gives (CI: neither can go stale).
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from ..config import parse_known, typed_merge
from ..errors import BenchError, cli
from ..numerics import class_of_record
from ..strategies import display_name

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
BOUNDS = ("multitask_generator", "multitask_classifier")
PUBLISHED = ("table5", "table3_budget", "zoo")   # the results issue's grids, in priority order


@dataclass
class HeadlineOptions:
    store: str = "results/cpu"
    readme: str = "README.md"
    status: str = "results/README.md"
    check: bool = False


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"{path}: cannot read it ({exc}); render the report first: "
                         f"python -m bench.report store={path.parents[1]} compare=paper") from None


def _mean(row: dict | None) -> str:
    if row is None:
        return "-"
    ci = row.get("ci95")
    return f"{row['mean']:.2f}" + (f" ± {ci:.2f}" if ci is not None else "")


def seeds_line(computed: dict, grid: str, cells: dict[int, int]) -> str:
    """``seeds 0-1 (n = 2), computed at 19a7ee3 (seed 0), 0a8b313 (seed 1) on CPU``; ``cells``:
    records per seed (a seed with fewer than the others is said to be in progress)."""
    done = computed.get(grid, {})
    seeds = sorted(int(s) for s in done if cells.get(int(s)))
    if not seeds:
        return "no seed recorded in computed.json"
    span = f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 1 \
        else ", ".join(map(str, seeds))
    by_commit: dict[str, list[int]] = {}
    for s in seeds:
        by_commit.setdefault(done[str(s)]["commit"], []).append(s)
    commits = ", ".join(f"{c} (seed{'s' if len(ss) > 1 else ''} {', '.join(map(str, ss))})"
                        for c, ss in by_commit.items())
    by_cpu: dict[str, list[int]] = {}
    for s in seeds:   # the CPU, and the numerics class a rerun must share to give the same bits
        entry = done[str(s)]
        numerics = entry.get("numerics") or class_of_record(None, entry["hardware"])
        by_cpu.setdefault(f"{entry['hardware']} in {numerics} numerics", []).append(s)
    cpus = list(by_cpu) if len(by_cpu) == 1 else [
        f"{c} (seed{'s' if len(ss) > 1 else ''} {', '.join(map(str, ss))})" for c, ss in by_cpu.items()]
    full = max(cells.values())
    partial = "".join(f"; seed {s} in progress ({cells[s]} of {full} cells)" for s in seeds if cells[s] < full)
    return (f"seed{'s' if len(seeds) > 1 else ''} {span} (n = {len(seeds)}{partial}), computed at {commits} "
            f"on {'; '.join(cpus)}")


def render(store: Path, readme_dir: Path) -> str:
    """The headline's markdown, links relative to the README's folder."""
    report = store / "report"
    rows = _load(report / "table5.json")
    claims = _load(report / "claims.json")
    computed = _load(store / "computed.json")
    link = lambda p: Path(os.path.relpath(Path(p).resolve(), readme_dir.resolve())).as_posix()   # noqa: E731
    ppc: dict[str, int] = {}
    cells: dict[int, int] = {}
    for path in sorted((store / "records" / "table5").glob("*.json")):
        rec = json.loads(path.read_text())
        ppc[rec["cell"]["method"]] = rec["ppc"]
        cells[rec["cell"]["seed"]] = cells.get(rec["cell"]["seed"], 0) + 1
    stat = {(r["method"], r["metric"]): r for r in rows}
    methods = sorted({r["method"] for r in rows},
                     key=lambda m: (m in BOUNDS, BOUNDS.index(m) if m in BOUNDS else 0,
                                    -stat[(m, "la")]["mean"] if (m, "la") in stat else 0))
    out = [f"Table V at `scale=cpu` ([table5.md]({link(report / 'table5.md')})), "
           f"{seeds_line(computed, 'table5', cells)}; mean ± half-width of the 95% t interval over the seeds:", "",
           "| method | LA (%) | AIA (%) | PPC |", "| --- | --- | --- | --- |"]
    for m in methods:
        out.append(f"| {display_name(m)} | {_mean(stat.get((m, 'la')))} | {_mean(stat.get((m, 'aia')))} | "
                   f"{ppc.get(m, 0):,} |")
    out += ["", f"Claims of the paper checked on the published grids ([claims.md]({link(report / 'claims.md')})):",
            ""]
    out += [claim_line(c, link(report / f"{c['grid']}.md")) for c in claims if c.get("grid") in PUBLISHED]
    return "\n".join(out)


def claim_line(c: dict, page: str) -> str:
    """``- TEXT (vanilla_mul vs vanilla_add, fashion_mnist 2-2 150 adapter steps; [table3_budget](…)):
    **holds** (vanilla_mul − vanilla_add: +4.10 ± 1.20, n = 5; CI above 0)``."""
    ci = f" ± {c['diff_ci95']:.2f}" if c.get("diff_ci95") is not None else ""
    diff = f"{c['a']} − {c['b']}: {c['diff']:+.2f}{ci}, n = {c['n']}; " if c.get("diff") is not None else ""
    return (f"- {c['text']} ({c['a']} vs {c['b']}, {c['setting']}; [{c['grid']}]({page})): "
            f"**{c['verdict']}** ({diff}{c.get('why', '')})")


def status(store: Path) -> str:
    """One line per published grid: its seeds, records, commits and CPUs, or that it is not computed yet."""
    computed = _load(store / "computed.json")
    lines = []
    for grid in PUBLISHED:
        cells: dict[int, int] = {}   # the seeds computed.json lists: a seed still running is not published
        size = 0
        for path in (store / "records" / grid).glob("*.json"):
            seed = json.loads(path.read_text())["cell"]["seed"]
            if str(seed) in computed.get(grid, {}):
                cells[seed] = cells.get(seed, 0) + 1
                size += path.stat().st_size
        if not cells:
            lines.append(f"- `{grid}`: not computed yet")
            continue
        lines.append(f"- `{grid}`: {len(cells)} of its 5 seeds (0-4); {seeds_line(computed, grid, cells)}; "
                     f"{sum(cells.values())} records ({size / 1e6:.1f} MB)")
    return "\n".join(lines)


def splice(text: str, body: str, where: str) -> str:
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise BenchError(f"{where}: needs one '{BEGIN}' line and one '{END}' line after it")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{body}\n{END}{tail}"


@cli
def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help", "help") for a in argv):
        print(__doc__)
        return 0
    opts = typed_merge(HeadlineOptions, parse_known(argv, {f.name for f in fields(HeadlineOptions)}))
    store = Path(opts["store"])
    pages = [(Path(opts["readme"]), lambda page: render(store, page.parent)),
             (Path(opts["status"]), lambda page: status(store))]
    stale = []
    texts = {}
    for page, _ in pages:   # both pages readable and marked before anything is rendered
        try:
            texts[page] = page.read_text()
        except OSError as exc:
            raise BenchError(f"{page}: cannot read it ({exc.strerror})") from None
        splice(texts[page], "", str(page))
    for page, body in pages:
        text = texts[page]
        new = splice(text, body(page), str(page))
        if opts["check"]:
            stale += [page] if new != text else []
        else:
            page.write_text(new)
            print(f"wrote the results section of {page} from {store}")
    if stale:
        print(f"error: the results section of {', '.join(map(str, stale))} is not what {store} gives; run "
              f"python -m bench.report.headline store={store}", file=sys.stderr)
        return 1
    if opts["check"]:
        print(f"{', '.join(str(p) for p, _ in pages)}: the results sections match {store}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
