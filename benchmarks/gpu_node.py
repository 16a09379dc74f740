"""Check a GPU node: the suite's paths run on CUDA, resume exactly, are deterministic, and how fast.

    bash scripts/gpu-check.sh [--bundle DIR]        # what users run (installs from an offline bundle)
    python benchmarks/gpu_node.py --device cuda --out results/gpu
    python benchmarks/gpu_node.py --device cuda --quick     # smoke sweep, resume, determinism, perf (3 methods)
    python benchmarks/gpu_node.py --device cpu --smoke --skip table5,perf,gpu_check   # the code paths (tests)

Checks, each a pass or a fail with its figures:
  smoke_sweep  ``bench.sweep grid=smoke device=DEV jobs=4``: 4 records computed on DEV, no traceback
  resume       one cell (deterministic=true) killed with SIGKILL in the middle of the backbone,
               rerun, killed in the middle of its task-2 adapter stage, rerun to the end: the
               same record as an uninterrupted run
  determinism  two fresh runs of that cell with deterministic=true: equal records; the seconds of
               a run without it (the cost of deterministic kernels); the three run one at a time,
               alone on the machine, so that the cost is not contention (``--smoke``: side by
               side with the resume sequence, one per core; their seconds then say nothing)
  table5       Table V at scale=cpu, one seed, through ``bench.sweep``: wall time
  perf         ``benchmarks/perf.py --json --methods all`` in fp32 and bf16: FunLoRA's step over
               vanilla_mul's at the paper's mix (target <= 1.05, reported apart from the checks)
  gpu_check    ``benchmarks/gpu_check.py --json``: paper-scale step times and the projection
``--quick`` keeps smoke_sweep, resume, determinism (on a shorter cell) and perf for funlora,
vanilla_mul and conditioning_only: meant to fit 5 minutes on one H200 (an estimate from the
steps it runs; check.json records each check's wall time, so a run says what it took).
Writes OUT/check.json (every figure, a pass and a wall time per check) and OUT/check.md; exits
1 if a check fails.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import config  # noqa: E402
from bench.hardware import usable_cpus  # noqa: E402
from bench.record import Record  # noqa: E402
from bench.stages import StagePaths  # noqa: E402
from bench.trainer import done_marker  # noqa: E402

CHECKS = ("smoke_sweep", "resume", "determinism", "table5", "perf", "gpu_check")
QUICK_SKIPS = {"table5", "gpu_check"}
QUICK_METHODS = "funlora,vanilla_mul,conditioning_only"
# Fields of a record that say where and when, not what was computed.
CIRCUMSTANTIAL = {"created", "seconds", "config", "sample_grids", "implementation"}
KERNEL_TARGET = 1.05   # FunLoRA's training step over vanilla_mul's (the GPU issue)


def cell_args(smoke: bool, quick: bool = False) -> list[str]:
    """The cell of the resume and determinism checks: FunLoRA, stages long enough to be killed
    in the middle, checkpoints often (fashion_mnist 2-2 at scale=cpu, shortened, on a GPU;
    ``quick``: 3 tasks and half the steps)."""
    if smoke:
        return ["dataset=digits", "split=6-2", "method=funlora", "scale=smoke", "sample_grid=2",
                "generator.task1.epochs=60", "generator.task1.max_steps=60", "generator.task1.ckpt_every=4",
                "generator.adapter.epochs=24", "generator.adapter.max_steps=24", "generator.adapter.ckpt_every=4"]
    if quick:
        return ["dataset=fashion_mnist", "split=6-2", "method=funlora", "scale=cpu", "sample_grid=4",
                "generator.task1.max_steps=100", "generator.task1.ckpt_every=10",
                "generator.adapter.max_steps=30", "generator.adapter.ckpt_every=5",
                "classifier.epochs=1", "sampling.per_class=50"]
    return ["dataset=fashion_mnist", "split=2-2", "method=funlora", "scale=cpu", "sample_grid=4",
            "generator.task1.max_steps=200", "generator.task1.ckpt_every=20",
            "generator.adapter.max_steps=60", "generator.adapter.ckpt_every=10",
            "classifier.epochs=2", "sampling.per_class=100"]


class Node:
    """Where and how the checks run: device, data, scratch folder, the environment of subprocesses."""

    def __init__(self, args: argparse.Namespace):
        self.device, self.smoke, self.quick = args.device, args.smoke, args.quick
        self.data = [f"data_root={args.data_root}"] if args.data_root else []
        self.scratch = Path(tempfile.mkdtemp(prefix="gpu-check-", dir=args.scratch))
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if args.smoke:   # several processes on a small CPU machine: one thread each
            self.env["OMP_NUM_THREADS"] = "1"

    def run(self, args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def cell(self, name: str, extra: list[str]) -> list[str]:
        """bench.run arguments of the check cell in its own workdir."""
        return ["-m", "bench.run", *cell_args(self.smoke, self.quick), *self.data, f"device={self.device}", "progress=false",
                f"workdir={self.scratch / name}", f"out={self.scratch / name / 'record.json'}", *extra]


def differences(a: Record, b: Record) -> list[str]:
    """Fields in which two records of the same cell differ (what was computed, not where or when)."""
    ja, jb = a.to_json(), b.to_json()
    out = [k for k in ja if k not in CIRCUMSTANTIAL and ja[k] != jb.get(k)]
    grids = [[Path(p).read_bytes() for p in r.sample_grids or [] if p] for r in (a, b)]
    return out + (["sample_grids (pixels)"] if grids[0] != grids[1] else [])


def _tail(proc: subprocess.CompletedProcess | None, text: str = "") -> str:
    err = (proc.stderr if proc is not None else text) or ""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


# ---- checks -------------------------------------------------------------------------------------
def check_smoke_sweep(node: Node) -> dict:
    store = node.scratch / "smoke-store"
    t0 = time.perf_counter()
    proc = node.run(["-m", "bench.sweep", "grid=smoke", f"device={node.device}", "jobs=4", f"store={store}",
                     *node.data])
    seconds = time.perf_counter() - t0
    records = [Record.load(p) for p in sorted((store / "records" / "smoke").glob("*.json"))]
    want = "cuda" if node.device.startswith("cuda") else node.device
    devices = sorted({r.device for r in records})
    clean = "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    ok = proc.returncode == 0 and len(records) == 4 and all(d.startswith(want) for d in devices) and clean
    return {"pass": ok, "seconds": round(seconds, 1), "records": len(records), "devices": devices,
            "clean_exit": clean, "detail": "" if ok else _tail(proc)}


def _kill_during(node: Node, name: str, ckpt: Path, timeout: float = 600) -> dict:
    """Start the cell, SIGKILL it as soon as ``ckpt`` exists and is not final (mid-stage)."""
    proc = subprocess.Popen([sys.executable, *node.cell(name, ["deterministic=true"])], cwd=ROOT, env=node.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and not done_marker(ckpt).exists():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            import torch

            step = torch.load(ckpt, map_location="cpu", weights_only=True)["step"]
            return {"killed": True, "at_step": int(step)}
        time.sleep(0.02)
    err = proc.communicate()[1] if proc.poll() is not None else ""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    return {"killed": False, "detail": _tail(None, err) or f"{ckpt.name} never appeared mid-stage"}


def check_resume_and_determinism(node: Node) -> tuple[dict, dict]:
    """Reference, a second fresh run (determinism) and a run without deterministic=true (cost),
    one at a time and alone (their seconds are compared); then the kill-and-resume sequence;
    then the records are compared. ``--smoke`` (one thread a process, seconds not compared):
    the four sequences run side by side, one per core."""
    cfg = config.resolve([*cell_args(node.smoke, node.quick), *node.data, f"device={node.device}"])
    paths = StagePaths(cfg, node.scratch / "killed")
    kills: dict = {}

    def killed_sequence() -> subprocess.CompletedProcess:
        kills["backbone"] = _kill_during(node, "killed", paths.backbone)
        if kills["backbone"]["killed"]:
            kills["adapter_task2"] = _kill_during(node, "killed", paths.generator(2))
        return node.run(node.cell("killed", ["deterministic=true"]), timeout=1200)

    sequences = {name: functools.partial(node.run, node.cell(name, extra), timeout=1200)
                 for name, extra in (("reference", ["deterministic=true"]), ("second", ["deterministic=true"]),
                                     ("nondeterministic", ["deterministic=false"]))}
    sequences["killed"] = killed_sequence
    workers = min(len(sequences), usable_cpus()) if node.smoke else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:   # one worker: in this order, alone
        futures = {name: pool.submit(fn) for name, fn in sequences.items()}
        runs = {name: f.result() for name, f in futures.items()}
    rec = {n: _record(node, n, p) for n, p in runs.items()}
    resume: dict = {"kills": kills}
    if rec["reference"] and rec["killed"]:
        resume["differences"] = differences(rec["reference"], rec["killed"])
    resume["pass"] = (all(k.get("killed") for k in kills.values()) and len(kills) == 2
                      and resume.get("differences") == [])
    if not resume["pass"]:
        resume["detail"] = _tail(final) or "; ".join(k.get("detail", "") for k in kills.values() if k.get("detail"))
    det: dict = {"side_by_side": workers > 1}
    if rec["reference"] and rec["second"]:
        det["differences"] = differences(rec["reference"], rec["second"])
        det["la"] = [round(rec["reference"].la, 4), round(rec["second"].la, 4)]
    if rec["nondeterministic"]:
        det["la_nondeterministic"] = rec["nondeterministic"].la
        det["seconds_nondeterministic"] = round(rec["nondeterministic"].seconds.total, 1)
    if rec["reference"] and rec["second"]:
        det["seconds_deterministic"] = round((rec["reference"].seconds.total + rec["second"].seconds.total) / 2, 1)
    if "seconds_deterministic" in det and det.get("seconds_nondeterministic"):
        det["cost_ratio"] = round(det["seconds_deterministic"] / det["seconds_nondeterministic"], 3)
    det["pass"] = det.get("differences") == []
    if not det["pass"]:
        det["detail"] = next((_tail(runs[n]) for n in ("reference", "second", "nondeterministic")
                              if runs[n].returncode), "records differ")
    return resume, det


def _record(node: Node, name: str, proc: subprocess.CompletedProcess) -> Record | None:
    path = node.scratch / name / "record.json"
    return Record.load(path) if proc.returncode == 0 and path.exists() else None


def check_table5(node: Node) -> dict:
    store = node.scratch / "table5-store"
    t0 = time.perf_counter()
    proc = node.run(["-m", "bench.sweep", "grid=table5", "scale=cpu", f"device={node.device}", f"store={store}",
                     *node.data], timeout=3600)
    wall = time.perf_counter() - t0
    records = [Record.load(p) for p in sorted((store / "records" / "table5").glob("*.json"))]
    plan = next((ln for ln in proc.stdout.splitlines() if ln.startswith("jobs=")), "")
    ok = proc.returncode == 0 and len(records) == 9
    return {"pass": ok, "wall_seconds": round(wall, 1), "records": len(records), "jobs": plan,
            "la": {r.cell.method: round(r.la, 2) for r in records}, "detail": "" if ok else _tail(proc)}


def check_perf(node: Node) -> tuple[dict, dict]:
    out: dict = {"pass": True}
    targets = {}
    # bf16 on a CPU without bf16 arithmetic is ten times slower and says nothing: smoke runs fp32 only
    for precision in ("fp32",) if node.smoke else ("fp32", "bf16"):
        args = ["benchmarks/perf.py", "--json", "--device", node.device, "--precision", precision, "--repeats", "3"]
        methods = "vanilla_mul,funlora" if node.smoke else QUICK_METHODS if node.quick else "all"
        args += (["--json-model", "tiny"] if node.smoke else []) + ["--methods", methods]
        proc = node.run(args, timeout=1800)
        if proc.returncode != 0:
            out.update({"pass": False, "detail": f"{precision}: {_tail(proc)}"})
            continue
        res = json.loads(proc.stdout)
        ratio = res["funlora_over_vanilla_mul"]["paper_mix"]
        out[precision] = {"train_ms": res["train_ms"], "train_ratio": res["train_ratio"],
                          "sample_ratio": res["sample_ratio"], "train_batch": res["train_batch"],
                          "funlora_kernel": res["funlora_kernel"], "funlora_over_vanilla_mul": ratio,
                          "worst_case_funlora_over_vanilla_mul": res["funlora_over_vanilla_mul"]["worst_case"]}
        targets[f"funlora_step_{precision}"] = {"value": ratio, "target": KERNEL_TARGET, "met": ratio <= KERNEL_TARGET}
    return out, targets


def check_gpu_check(node: Node) -> dict:
    args = ["benchmarks/gpu_check.py", "--json"] + (["--smoke", "--device", "cpu", "--repeats", "1"] if node.smoke else [])
    t0 = time.perf_counter()
    proc = node.run(args, timeout=1200)
    if proc.returncode != 0:
        return {"pass": False, "detail": _tail(proc)}
    return {"pass": True, "seconds": round(time.perf_counter() - t0, 1), **json.loads(proc.stdout)}


# ---- the report -------------------------------------------------------------------------------
def machine(device: str) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cores": os.cpu_count(),
            "device": device, "host": platform.node()}
    if device.startswith("cuda"):
        info.update(gpu=torch.cuda.get_device_name(0), gpus=torch.cuda.device_count(), cuda=torch.version.cuda)
    return info


def markdown(result: dict) -> str:
    """check.md: what a person reads (check.json has every figure)."""
    m, checks = result["machine"], result["checks"]
    lines = [f"# GPU node check: {'PASS' if result['pass'] else 'FAIL'}", "",
             f"{m.get('gpu', m['device'])}, torch {m['torch']}, Python {m['python']}, {m['cores']} cores; "
             f"{result['started']}, {result['seconds']:.0f} s in all.", "",
             "| check | result | wall | figures |", "| --- | --- | --- | --- |"]
    for name, c in checks.items():
        lines.append(f"| {name} | {'pass' if c.get('pass') else 'FAIL'} | {c.get('wall_seconds_check', '?')} s | "
                     f"{_figures(name, c)} |")
    if result["targets"]:
        lines += ["", "| target | value | goal | met |", "| --- | --- | --- | --- |"]
        for name, t in result["targets"].items():
            lines.append(f"| {name} | {t['value']:.3f} | <= {t['target']} | {'yes' if t['met'] else 'no'} |")
    perf = checks.get("perf", {})
    rows = [(p, perf[p]) for p in ("fp32", "bf16") if p in perf]
    if rows:
        lines += ["", f"Training step, batch {rows[0][1]['train_batch']} with 2 new classes (ms; x frozen backbone):",
                  "", "| method | " + " | ".join(p for p, _ in rows) + " |", "| --- |" + " --- |" * len(rows)]
        for method in rows[0][1]["train_ms"]:
            lines.append(f"| {method} | " + " | ".join(
                f"{r['train_ms'][method]:.1f} ({r['train_ratio'][method]:.2f}x)" for _, r in rows) + " |")
    lines += ["", f"Scratch folder: `{result['scratch']}`."]
    return "\n".join(lines) + "\n"


def _figures(name: str, c: dict) -> str:
    if not c.get("pass") and c.get("detail"):
        return f"error: {c['detail']}"
    if name == "smoke_sweep":
        return f"{c['records']} records on {', '.join(c['devices'])} in {c['seconds']} s"
    if name == "resume":
        k = c["kills"]
        return (f"killed at backbone step {k['backbone'].get('at_step')}, adapter step "
                f"{k.get('adapter_task2', {}).get('at_step')}; differences from an uninterrupted run: "
                f"{c.get('differences') or 'none'}")
    if name == "determinism":
        return (f"LA {c.get('la')}, differences: {c.get('differences') or 'none'}; "
                f"{c.get('seconds_deterministic')} s deterministic vs {c.get('seconds_nondeterministic')} s "
                f"without (x{c.get('cost_ratio')})" + (", side by side" if c.get("side_by_side") else ""))
    if name == "table5":
        return f"{c['records']} records in {c['wall_seconds']} s wall ({c['jobs']}); LA {c['la']}"
    if name == "perf":
        return "; ".join(f"{p}: FunLoRA {c[p]['funlora_over_vanilla_mul']}x vanilla_mul ({c[p]['funlora_kernel']} kernel)"
                         for p in ("fp32", "bf16") if p in c)
    if name == "gpu_check":
        res = c.get("results", {})
        return "; ".join(f"{p}: task-1 step {r['task1_step_s'] * 1000:.1f} ms, FunLoRA step "
                         f"{r['adapter_step_s'] * 1000:.1f} ms, projected GPU-hours "
                         + ", ".join(f"{k} {v:.2f}" for k, v in r["projection"].items())
                         for p, r in res.items())
    return ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="results/gpu")
    ap.add_argument("--data-root", default=None, help="data_root of the cells (e.g. an offline bundle's data/)")
    ap.add_argument("--scratch", default=None, help="folder for the checks' stores and workdirs (default: tmp)")
    ap.add_argument("--smoke", action="store_true", help="tiny cells and models (the tests, on the CPU)")
    ap.add_argument("--skip", default="", help=f"comma list of checks to leave out: {', '.join(CHECKS)}")
    ap.add_argument("--quick", action="store_true",
                    help=f"leave out {', '.join(sorted(QUICK_SKIPS))}, a shorter resume/determinism cell, "
                         f"perf of {QUICK_METHODS} only (about 5 minutes on one H200, estimated)")
    args = ap.parse_args()
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA device here (torch.cuda.is_available() is False); run this on a GPU node",
              file=sys.stderr)
        return 2
    skip = {s.strip() for s in args.skip.split(",") if s.strip()} | (QUICK_SKIPS if args.quick else set())
    if skip - set(CHECKS):
        print(f"error: --skip: unknown check {sorted(skip - set(CHECKS))[0]!r}; checks: {', '.join(CHECKS)}",
              file=sys.stderr)
        return 2
    node = Node(args)
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.perf_counter()
    checks: dict = {}
    targets: dict = {}
    for name in CHECKS:
        if name in skip or name in checks:
            continue
        print(f"== {name}", flush=True)
        began = time.perf_counter()
        if name in ("resume", "determinism"):
            if {"resume", "determinism"} <= skip:
                continue
            checks["resume"], checks["determinism"] = check_resume_and_determinism(node)
            done = ("resume", "determinism")
        elif name == "perf":
            checks["perf"], targets = check_perf(node)
            done = ("perf",)
        else:
            checks[name] = globals()[f"check_{name}"](node)
            done = (name,)
        for n in done:   # resume and determinism share their runs: the wall time of both
            checks[n]["wall_seconds_check"] = round(time.perf_counter() - began, 1)
    checks = {k: v for k, v in checks.items() if k not in skip}
    result = {"pass": all(c.get("pass") for c in checks.values()), "started": started,
              "seconds": round(time.perf_counter() - t0, 1), "machine": machine(args.device), "checks": checks,
              "targets": targets, "scratch": str(node.scratch)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "check.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (out / "check.md").write_text(markdown(result))
    print(markdown(result))
    print(f"written: {out / 'check.json'}, {out / 'check.md'}")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
