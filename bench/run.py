"""Run one cell from the command line.

    python -m bench.run dataset=fashion_mnist split=2-2 method=vanilla_mul scale=cpu seed=0 out=PATH

Shows progress, prints per-task accuracy and LA / AIA, and writes one JSON record at
``out`` (atomically). ``--help`` lists the keys; bad input is one error line, exit 2.
"""
from __future__ import annotations

import sys
from pathlib import Path

from . import config as config_mod
from .errors import BenchError, cli, ensure_writable_dir

HELP = __doc__ + """
Keys (defaults for scale=cpu in brackets):
  dataset     fashion_mnist | digits | cifar10 | cifar100 | imagenet100   [fashion_mnist]
  split       a-b: first task a classes, then b per task                   [2-2]
  method      an adapter of methods/ or a strategy (see methods below)     [vanilla_mul]
  method.X    an option of the method, e.g. method.K=5 method.layers=0-64
  scale       paper | cpu | smoke                                          [cpu]
  seed, device (auto|cpu|cuda), data_root, out, workdir, class_order (natural|permuted)
  numerics    portable (same bits on every x86-64 AVX2 CPU) | native      [portable]
  solver.name dopri5 | rk4 | euler | midpoint; solver.steps, solver.atol, solver.rtol
  generator.task1.*, generator.adapter.*, sampling.*, classifier.*: schedules of the scale
"""


def default_out(cfg: dict) -> Path:
    return Path("results/runs") / f"{cfg['dataset']}_{cfg['split']}_{cfg['method']['name']}_{cfg['scale']}_s{cfg['seed']}.json"


@cli
def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help", "help") for a in argv):
        import methods

        from . import strategies

        print(HELP + "Methods: " + ", ".join(methods.available()) + "\nStrategies: " + ", ".join(strategies.available()))
        return 0
    cfg = config_mod.resolve(argv)
    from .numerics import require

    require(cfg["numerics"], restart=True)   # before any work: the mode is fixed when torch loads
    from .data import check_dataset, parse_split
    from .protocol import dry_build, run_cell

    parse_split(cfg["split"], check_dataset(cfg["dataset"]))
    dry_build(cfg)  # layer ranges and targets are checked on the meta device, before any work
    out = Path(cfg["out"]) if cfg["out"] else default_out(cfg)
    if out.exists() and out.is_dir():
        raise BenchError(f"out={out} is a directory; give a file path for the JSON record")
    ensure_writable_dir(out.parent, "out (its folder)")
    ensure_writable_dir(cfg["workdir"] or "results/artifacts", "workdir")
    record = run_cell(cfg)
    record.write(out)
    print(f"LA = {record.la:.2f}  AIA = {record.aia:.2f}  PPC = {record.ppc}  "
          f"time = {record.seconds.total:.0f} s")
    print(f"record: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
