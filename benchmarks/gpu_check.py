"""Paper scale on a GPU: time each stage's unit of work, project the CIFAR10 2-2 protocol.

    python benchmarks/gpu_check.py                  # CUDA, fp32 and bf16, under 5 minutes
    python benchmarks/gpu_check.py --json           # one JSON object
    python benchmarks/gpu_check.py --smoke --device cpu   # the code paths on a tiny model (tests)

On the CIFAR10 U-Net (35.7M parameters, 32 x 32): the task-1 training step (whole U-Net,
batch 128, Adam), a FunLoRA adapter step (batch 128 holding the task's 2 new classes),
one dopri5 solve (atol = rtol = 1e-4) of a batch of 500 with its NFE counted, and a
ResNet18 step (batch 100), each in fp32 and in bf16 autocast (medians after a warm-up).
It then projects the paper's CIFAR10 2-2 protocol (METHOD.md section 1: 500 task-1
epochs and 300 per later task on 5,000 images per class, every seen class sampled at
5,000 images per task, 30 classifier epochs per task) in GPU-hours per stage, next to
the paper's 3.5 h (generator) / 1.4 h (sampling) / 0.2 h (classifier) (its supplementary
Table "Training and sampling time"). The NFE of dopri5 is measured on an untrained
U-Net unless ``--nfe`` gives the value of a trained one (a trained field is stiffer).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench  # noqa: E402,F401 - first: it fixes the numerics mode before torch loads
import torch  # noqa: E402


import methods  # noqa: E402
from bench.classifier import build_resnet18  # noqa: E402
from bench.config import SolverConfig  # noqa: E402
from bench.flow import cfm_loss, sample  # noqa: E402
from bench.unet import build_unet  # noqa: E402

PAPER_HOURS = {"generator": 3.5, "sampling": 1.4, "classifier": 0.2}
PER_CLASS, TASKS, CLASSES_PER_TASK = 5000, 5, 2


def protocol_counts(batch: int = 128, classifier_batch: int = 100, sample_batch: int = 500) -> dict:
    """Steps and solves of CIFAR10 2-2 at the paper's schedules."""
    per_task_steps = math.ceil(CLASSES_PER_TASK * PER_CLASS / batch)
    seen = [CLASSES_PER_TASK * t for t in range(1, TASKS + 1)]
    return {
        "task1_steps": 500 * per_task_steps,
        "adapter_steps": (TASKS - 1) * 300 * per_task_steps,
        # the paper: every seen class sampled again at every task > 1
        "solves_paper": sum(math.ceil(n * PER_CLASS / sample_batch) for n in seen[1:]),
        # this suite (adapters): each task's classes sampled once and reused
        "solves_reused": math.ceil(seen[-1] * PER_CLASS / sample_batch),
        "classifier_steps": 30 * sum(math.ceil(n * PER_CLASS / classifier_batch) for n in seen),
    }


def timed(fn, repeats: int, sync) -> float:
    fn()
    sync()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def measure(device: torch.device, precision: str, smoke: bool, repeats: int) -> dict:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    model, size, ch = ("tiny", 8, 1) if smoke else ("cifar10", 32, 3)
    batch, sample_batch, cls_batch = (4, 4, 4) if smoke else (128, 500, 100)
    kw = dict(image_size=size, in_channels=ch, num_classes=10)
    if smoke:
        kw["attention_resolutions"] = "4"
    torch.manual_seed(0)
    unet = build_unet(model, **kw).to(device)
    x = torch.randn(batch, ch, size, size, device=device)
    y = torch.tensor([i % 2 for i in range(batch)], device=device)
    opt = torch.optim.Adam(unet.parameters(), lr=2e-4)

    def step(net, o, labels):
        def run():
            with amp:
                loss = cfm_loss(net, x, labels)
            o.zero_grad(set_to_none=True)
            loss.backward()
            o.step()
        return run

    res = {"task1_step_s": timed(step(unet, opt, y), repeats, sync)}
    adapter = methods.build("funlora").attach(unet)
    adapter.add_classes([8, 9])
    new = torch.tensor([8 + i % 2 for i in range(batch)], device=device)
    res["adapter_step_s"] = timed(step(adapter, torch.optim.Adam(adapter.trainable_parameters(), lr=1e-3), new),
                                  repeats, sync)
    adapter.eval()
    labels = torch.full((sample_batch,), 9, device=device)
    solver = SolverConfig.from_dict({"name": "dopri5", "atol": 1e-4, "rtol": 1e-4, "steps": 100})
    nfe = {}

    def solve():
        with torch.no_grad(), amp:
            _, nfe["n"] = sample(adapter, labels, (ch, size, size), solver, device=device)

    res["sampling_solve_s"] = timed(solve, max(1, repeats // 2), sync)
    res["sampling_nfe"] = nfe["n"]
    net = build_resnet18(ch, 10).to(device)
    copt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    cx = torch.randn(cls_batch, ch, size, size, device=device)
    cy = torch.randint(0, 10, (cls_batch,), device=device)

    def cstep():
        with amp:
            loss = torch.nn.functional.cross_entropy(net(cx), cy)
        copt.zero_grad(set_to_none=True)
        loss.backward()
        copt.step()

    res["classifier_step_s"] = timed(cstep, repeats, sync)
    return res


def project(r: dict, counts: dict, nfe: int | None) -> dict:
    solve = r["sampling_solve_s"] * ((nfe / r["sampling_nfe"]) if nfe else 1.0)
    return {
        "generator_h": (counts["task1_steps"] * r["task1_step_s"] + counts["adapter_steps"] * r["adapter_step_s"]) / 3600,
        "sampling_paper_h": counts["solves_paper"] * solve / 3600,
        "sampling_reused_h": counts["solves_reused"] * solve / 3600,
        "classifier_h": counts["classifier_steps"] * r["classifier_step_s"] / 3600,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--nfe", type=int, default=None, help="dopri5 NFE of a trained U-Net for the projection")
    ap.add_argument("--smoke", action="store_true", help="tiny model and batches: the code paths only")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; this check is for a GPU machine (--device cpu --smoke runs the code paths)",
              file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    counts = protocol_counts()
    out = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "torch": torch.__version__, "smoke": args.smoke, "counts": counts, "paper_hours": PAPER_HOURS,
           "results": {}}
    for precision in [p for p in args.precisions.split(",") if p]:
        if precision not in ("fp32", "bf16"):
            print(f"error: precision must be fp32 or bf16, got {precision!r}", file=sys.stderr)
            return 2
        r = measure(device, precision, args.smoke, args.repeats)
        out["results"][precision] = {**r, "projection": project(r, counts, args.nfe)}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"{out['device']}, torch {out['torch']}{' (smoke: tiny model, numbers mean nothing)' if args.smoke else ''}")
    print(f"CIFAR10 2-2 at the paper's schedules: {counts}")
    for precision, r in out["results"].items():
        p = r["projection"]
        print(f"\n{precision}: task-1 step {r['task1_step_s'] * 1000:.1f} ms, FunLoRA step {r['adapter_step_s'] * 1000:.1f} ms, "
              f"dopri5 solve of 500 {r['sampling_solve_s']:.2f} s (NFE {r['sampling_nfe']}), "
              f"ResNet18 step {r['classifier_step_s'] * 1000:.1f} ms")
        print(f"  projected GPU-hours: generator {p['generator_h']:.2f} (paper {PAPER_HOURS['generator']}), "
              f"sampling {p['sampling_paper_h']:.2f} as the paper / {p['sampling_reused_h']:.2f} reusing old classes "
              f"(paper {PAPER_HOURS['sampling']}), classifier {p['classifier_h']:.2f} (paper {PAPER_HOURS['classifier']})")
    print(f"\n{out['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
