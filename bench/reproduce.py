"""Rerun one published cell here and say whether it gives the published numbers.

    python -m bench.reproduce grid=table5 method=funlora seed=0
    bash scripts/reproduce.sh table5 funlora 0

Finds the record in the published store (``store=results/cpu``; ``method=`` is a method
name or a record's label), reruns its cell from scratch with the record's own config,
numerics mode and thread count (stage outputs in ``workdir``, never in the published store),
and prints ``identical`` or how far the LA is off, naming the fields of the two numerics
fingerprints that differ (``bench/numerics.py``). Exit 0 when identical, 1 when not.
A Table V cell takes about 25 minutes on one core; ``dry_run=true`` says what would run.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from .errors import BenchError, cli

KEYS = ("grid", "method", "seed", "store", "workdir", "out", "dry_run")
HELP = __doc__ + """
Keys:
  grid      a published grid (results/cpu/records/GRID)
  method    a method name (funlora) or a record's label (its file name without .json)
  seed      a published seed
  store     the published store [results/cpu]
  workdir   where the rerun's stage outputs go [a new temporary folder]
  out       the rerun's record [WORKDIR/LABEL.json]
  dry_run   true: find the record and say what would run, run nothing
"""


def find_record(store: Path, grid: str, method: str, seed: int) -> Path:
    """The published record of ``method`` (name or label) and ``seed`` in ``grid``: one line if none or several."""
    from .record import Record

    folder = store / "records" / grid
    if not folder.is_dir():
        grids = sorted(p.name for p in (store / "records").glob("*") if p.is_dir())
        raise BenchError(f"grid {grid!r} has no records in {store}; published grids: {', '.join(grids) or 'none'}")
    by_label = folder / f"{method}.json"
    if by_label.is_file():
        return by_label
    hits, methods, seeds = [], set(), set()
    for path in sorted(folder.glob("*.json")):
        rec = Record.load(path)
        methods.add(rec.cell.method)
        seeds.add(rec.cell.seed)
        if rec.cell.method == method and rec.cell.seed == seed:
            hits.append(path)
    if method not in methods:
        raise BenchError(f"no method {method!r} in grid {grid}; methods: {', '.join(sorted(methods))}")
    if not hits:
        raise BenchError(f"grid {grid} has no record of {method} for seed {seed}; seeds: "
                         f"{', '.join(map(str, sorted(seeds)))}")
    if len(hits) > 1:
        labels = ", ".join(p.stem for p in hits)
        raise BenchError(f"grid {grid} has {len(hits)} records of {method} for seed {seed}: give one label as "
                         f"method=: {labels}")
    return hits[0]


def fingerprint_of(rec) -> dict:
    """A record's numerics fingerprint; a record older than the field says only its CPU line."""
    from .numerics import class_of_record

    if rec.numerics:
        return rec.numerics
    return {"mode": "native", "class": class_of_record(None, rec.hardware, rec.device), "hardware": rec.hardware,
            "torch": rec.torch}


def differing_fields(published: dict, here: dict) -> list[str]:
    """``field: published -> here`` for every numerics field the two fingerprints disagree on."""
    out = []
    for key in sorted(set(published) | set(here)):
        if key in ("threads", "interop_threads", "hardware"):
            continue
        a, b = published.get(key, "(not recorded)"), here.get(key, "(not recorded)")
        if a != b and "(not recorded)" not in (a, b):
            out.append(f"{key}: {a} -> {b}")
    return out


def compare(published, rerun) -> tuple[bool, str]:
    """(identical, one line): the two records' accuracy matrices and PPC, to the bit."""
    same = published.accuracy == rerun.accuracy and published.ppc == rerun.ppc
    if same:
        return True, f"identical: LA {rerun.la:.2f}, AIA {rerun.aia:.2f} and every accuracy to the bit"
    return False, (f"differs: LA {rerun.la:.2f} here against {published.la:.2f} published "
                   f"({rerun.la - published.la:+.2f}), AIA {rerun.aia:.2f} against {published.aia:.2f}")


@cli
def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help", "help") for a in argv):
        print(HELP)
        return 0
    from .config import parse_known
    from .record import Record, with_added_keys

    opts = parse_known(argv, KEYS)
    if isinstance(opts.get("method"), dict):   # method=NAME parses as the method group's name
        opts["method"] = opts["method"].get("name")
    for key in ("grid", "method", "seed"):
        if opts.get(key) is None:
            raise BenchError(f"give {key}=: python -m bench.reproduce grid=table5 method=funlora seed=0")
    seed = opts["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise BenchError(f"seed must be a non-negative integer, got {seed!r}")
    store = Path(opts.get("store") or "results/cpu")
    path = find_record(store, str(opts["grid"]), str(opts["method"]), seed)
    published = Record.load(path)
    cfg = with_added_keys(published.config)
    from . import numerics

    numerics.require(cfg["numerics"], restart=True)   # the record's own mode, before any work
    if opts.get("workdir"):
        workdir = Path(opts["workdir"])
    else:
        workdir = Path(tempfile.gettempdir()) / "funlora-reproduce" if opts.get("dry_run") else \
            Path(tempfile.mkdtemp(prefix="funlora-reproduce-"))
    if workdir.resolve().is_relative_to(store.resolve()):
        raise BenchError(f"workdir={workdir} is inside the published store {store}: give another folder")
    out = Path(opts.get("out") or workdir / f"{path.stem}.json")
    from .config import default_data_root

    threads = published.threads or 1
    here = numerics.numerics_class(numerics.process_mode())
    cfg.update(workdir=str(workdir), out=str(out), data_root=default_data_root(), threads=threads, progress=True)
    print(f"reproducing {path} ({published.cell.method}, seed {published.cell.seed}, LA {published.la:.2f}), "
          f"computed on {published.hardware or 'an unnamed CPU'} in {fingerprint_of(published)['class']} numerics; "
          f"rerun here in {here} numerics with {threads} thread(s); stage outputs in {workdir}", flush=True)
    if here != fingerprint_of(published)["class"]:
        print(f"note: another numerics class than the record's: expect other bits (about one LA point, the spread "
              f"between seeds); the same class gives the same bits", flush=True)
    if opts.get("dry_run"):
        return 0
    from .data import ensure_available
    from .protocol import dry_build, run_cell

    ensure_available(cfg["dataset"], cfg["data_root"])
    dry_build(cfg)
    rerun = run_cell(cfg, workdir)
    rerun.grid, rerun.label = published.grid, published.label
    rerun.write(out)
    same, line = compare(published, rerun)
    print(line)
    if not same:
        diffs = differing_fields(fingerprint_of(published), rerun.numerics or {})
        print("numerics fingerprints differ in: " + ("; ".join(diffs) if diffs else "nothing recorded "
              "(same numerics: a change of code or library since the record was computed)"))
    print(f"record of the rerun: {out}")
    print(json.dumps({"identical": same, "published": str(path), "rerun": str(out)}))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
