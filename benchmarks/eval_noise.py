"""How much of a cell's LA is evaluation noise, and how much of it do two methods share?

    python benchmarks/eval_noise.py STORE/records/table5/fashion_mnist_2-2_{funlora,vanilla_mul}_midpoint4_s0.json
    python benchmarks/eval_noise.py REC... --replicates 6 --json

For each record it loads the cell's trained generators (never trains them again when the
store has them) and repeats the last task's evaluation: the synthetic set and the
classifier redrawn with seeds of their own (replicate r > 0), on the same real test images.
Replicate 0 is the record's own draw and must give its LA to the bit on a CPU (checked).

It prints each method's LA per replicate with its spread, and for each pair of methods the
spread of their paired difference. Methods of one seed draw their sets and classifiers
from the same seeds, so when two generators are close their evaluations move together and
that spread is far below either method's own: this is what lets a few seeds tell methods
apart. A cheap preset check: a few minutes instead of an hour of new seeds (measured for
scale=cpu presets in the README's quickstart section).
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench  # noqa: E402,F401 - first: it fixes the numerics mode before torch loads
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from bench.errors import BenchError  # noqa: E402
from bench.protocol import Cell  # noqa: E402
from bench import numerics  # noqa: E402
from bench.record import Record, with_added_keys  # noqa: E402

# The stages an evaluation draws from; a generator's stages are never redrawn.
EVALUATION_STAGES = ("sampling-task", "sampling", "classifier")


class ReplicateCell(Cell):
    """A cell whose evaluation stages draw the seeds of replicate ``replicate`` (0: the cell's own)."""

    replicate = 0

    def stage_seed(self, stage: str, task: int = 0) -> int:
        if self.replicate and stage in EVALUATION_STAGES:
            stage = f"{stage}/replicate-{self.replicate}"
        return super().stage_seed(stage, task)

    def first_group(self):
        if self.replicate:   # the shared task-1 samples are the record's draw: draw this replicate's own
            return self.synthesize(self.strategy.sampler(), self.data.tasks[0], "sampling-task", 1)
        return super().first_group()


def artifacts_of(path: Path, rec: Record) -> Path:
    """Where the record's stages are: its ``workdir``, else the store above records/GRID/."""
    workdir = rec.config.get("workdir")
    return Path(workdir) if workdir else path.resolve().parents[2] / "artifacts"


def final_la(path: Path, replicates: int, artifacts: Path | None = None, progress: bool = True) -> list[float]:
    """LA of the record's cell under evaluation replicates 0..replicates-1 (0 checked against the record)."""
    rec = Record.load(path)
    cfg = copy.deepcopy(rec.config)
    cfg.update(progress=False, fid=False)
    art = artifacts or artifacts_of(path, rec)
    if not art.is_dir():
        raise BenchError(f"{path}: no stage outputs at {art} (give --artifacts)")
    cell = ReplicateCell(cfg, art, log=lambda *a: None)
    bf16 = cfg.get("precision", "fp32") == "bf16"
    out = []
    with torch.autocast(cell.device.type, dtype=torch.bfloat16, enabled=bf16):
        cell.unet.to(cell.device)
        cell.strategy.start()
        for t, classes in enumerate(cell.data.tasks, start=1):
            cell.strategy.train(t, classes)      # loads the stored generator stages
        T = len(cell.data.tasks)
        seen = [c for task in cell.data.tasks for c in task]
        source = cell.strategy.classifier_data(T)
        for r in tqdm(range(replicates), desc=rec.cell.method, leave=False, disable=not progress):
            cell.replicate, cell._groups = r, {}
            accuracy = cell.evaluate(T, seen, source)["accuracy"]
            out.append(sum(accuracy) / T)
    if rec.device == "cpu" and cell.device.type == "cpu" and abs(out[0] - rec.la) > 1e-6:
        raise BenchError(f"{path}: replicate 0 gives LA {out[0]:.4f}, the record says {rec.la:.4f}: its stored "
                         "stages are not the ones it was computed from")
    return out


def _sd(xs: list[float]) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else float("nan")


def summarize(la: dict[str, list[float]]) -> dict:
    """Per method: LA per replicate, mean, SD; per pair: mean and SD of the paired difference."""
    methods = {m: {"la": [round(v, 2) for v in xs], "mean": round(statistics.fmean(xs), 2), "sd": round(_sd(xs), 2)}
               for m, xs in la.items()}
    pairs = {}
    for a, b in itertools.combinations(la, 2):
        d = [x - y for x, y in zip(la[a], la[b])]
        pairs[f"{a} - {b}"] = {"mean": round(statistics.fmean(d), 2), "sd": round(_sd(d), 2)}
    return {"methods": methods, "pairs": pairs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", nargs="+", type=Path, help="records of one dataset x split x seed")
    ap.add_argument("--replicates", type=int, default=4)
    ap.add_argument("--artifacts", type=Path, help="stage outputs (default: the record's workdir or store)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        if args.replicates < 2:
            raise BenchError(f"--replicates must be at least 2 (a spread needs two draws), got {args.replicates}")
        recs = [(p, Record.load(p)) for p in args.records]
        methods = [r.cell.method + (f"[{r.label}]" if [x.cell.method for _, x in recs].count(r.cell.method) > 1
                                    else "") for _, r in recs]
        if len({(r.cell.dataset, r.cell.split, r.cell.seed) for _, r in recs}) > 1:
            raise BenchError("the records must share dataset, split and seed (their evaluations are paired)")
        modes = {with_added_keys(r.config)["numerics"] for _, r in recs}
        if len(modes) > 1:
            raise BenchError("the records were computed in different numerics modes; give records of one")
        numerics.require(modes.pop(), restart=True)   # replicate 0 reproduces the record only in its mode
        la = {m: final_la(p, args.replicates, args.artifacts) for m, (p, _) in zip(methods, recs)}
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = summarize(la)
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    for m, s in summary["methods"].items():
        print(f"{m:32s} LA {' '.join(f'{v:6.2f}' for v in s['la'])}   mean {s['mean']:6.2f}  sd {s['sd']:.2f}")
    for pair, s in summary["pairs"].items():
        print(f"{pair:48s} difference mean {s['mean']:6.2f}  sd {s['sd']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
