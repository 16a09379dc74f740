"""Speed benchmark: ratios against baselines measured in the same run (never asserted in tests).

    python benchmarks/perf.py                      # backbone + classifier numbers
    python benchmarks/perf.py --methods all        # + every method against the frozen base
    python benchmarks/perf.py --models small --methods funlora,vanilla_mul --repeats 5
    python benchmarks/perf.py --json [--methods all]   # ratios as one JSON object (run against run)
    python benchmarks/perf.py --device cuda --precision bf16 --json --methods all   # on a GPU

Backbone section: generator training step (batch 64 and 8), sampling time per NFE
(one forward at the sampling batch), ResNet18 step. Methods section: a training step
with a mixed-label batch (the paper's mix: 2 new classes in a batch of 32; worst case: 8
in a batch of 16) over the frozen base model's step on
the same batch (``conditioning_only``: the same backward through the frozen U-Net, only
embedding rows trained), and the forwards of one sampling solve (``SOLVE_NFE``) with one
class per batch over the frozen U-Net's. Medians over ``--repeats`` after one warm-up.
``--device cuda`` times on the GPU (synchronised), where the paper's mix is a batch of 128
(the paper's batch size) holding 2 new classes; ``--precision bf16`` runs every step and
forward under bfloat16 autocast, as ``precision=bf16`` does in a cell.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench  # noqa: E402,F401 - first: it fixes the numerics mode before torch loads
import torch  # noqa: E402


import methods  # noqa: E402
from methods import cosine_kernel  # noqa: E402
from bench.classifier import build_resnet18  # noqa: E402
from bench import precision  # noqa: E402
from bench.flow import cfm_loss  # noqa: E402
from bench.unet import build_unet  # noqa: E402

MODELS = {"tiny": dict(image_size=8, in_channels=1, num_classes=20),     # the code paths only (tests)
          "small": dict(image_size=16, in_channels=1, attention_resolutions="8", num_classes=20),
          "cifar10": dict(num_classes=20)}
CHANNELS = {"tiny": 1, "small": 1, "cifar10": 3}
SOLVE_NFE = 12   # forwards of one sampling solve at scale=cpu (midpoint, 6 steps)
DEVICE = torch.device("cpu")      # set by --device
PRECISION = "fp32"                # set by --precision


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def autocast():
    """bfloat16 autocast under --precision bf16, exactly as a cell's precision=bf16 (bench/precision.py)."""
    return precision.autocast(DEVICE, PRECISION)


def median_time(fn, repeats: int) -> float:
    fn()
    return statistics.median(_timed(fn) for _ in range(repeats))


def batch(model: str, n: int, classes: list[int]):
    size = MODELS[model].get("image_size", 32)
    x = torch.randn(n, CHANNELS[model], size, size).to(DEVICE)
    y = torch.tensor([classes[i % len(classes)] for i in range(n)]).to(DEVICE)
    return x, y


def train_step_fn(net, params, x, y):
    opt = torch.optim.Adam(params, lr=1e-4)

    def step():
        with autocast():
            loss = cfm_loss(net, x, y)
        opt.zero_grad(set_to_none=True)
        precision.backward(loss)
        opt.step()

    return step


def backbone_section(model: str, repeats: int, sample_batch: int) -> None:
    torch.manual_seed(0)
    unet = build_unet(model, **MODELS[model]).to(DEVICE).train()
    for n in (64, 8):
        x, y = batch(model, n, list(range(10)))
        t = median_time(train_step_fn(unet, list(unet.parameters()), x, y), repeats)
        print(f"{model:8s} generator train step, batch {n:3d}: {t * 1000:9.1f} ms")
    unet.eval()
    x, y = batch(model, sample_batch, [0])
    with torch.no_grad():
        t = median_time(lambda: unet(torch.full((sample_batch,), 0.5, device=DEVICE), x, y), repeats)
    print(f"{model:8s} sampling, one NFE at batch {sample_batch}: {t * 1000:9.1f} ms "
          f"({t / sample_batch * 1000:.2f} ms per image per NFE)")


def classifier_section(repeats: int) -> None:
    for ch, size in ((1, 16), (1, 28), (3, 32)):
        net = build_resnet18(ch, 10).to(DEVICE).train()
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        x, y = torch.randn(128, ch, size, size, device=DEVICE), torch.randint(0, 10, (128,), device=DEVICE)

        def step():
            with autocast():
                loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            precision.backward(loss)
            opt.step()

        print(f"resnet18 train step, batch 128 at {ch}x{size}x{size}: {median_time(step, repeats) * 1000:9.1f} ms")


def measure_methods(model: str, names: list[str], repeats: int, train_batch: int, new_classes: int,
                    sample_batch: int) -> dict:
    """Training-step and sampling-forward times of ``names`` and of the frozen base, interleaved.

    Every method's model is built first; then each repeat times one step of every method
    in turn, so a change in background load hits all of them alike and the ratios (medians
    over repeats) stay comparable within the run. Training: a batch of ``train_batch``
    holding ``new_classes`` new classes, over ``conditioning_only`` (the same backward
    through the frozen U-Net, only embedding rows trained). Sampling: the ``SOLVE_NFE``
    forwards of one solve at ``sample_batch`` with one new class (the first builds the
    class's adapted weights, the others reuse them, as in a real solve), over the same
    wrapped model run with a task-1 class (the frozen U-Net's own path)."""
    new = list(range(10, 10 + new_classes))
    x, y = batch(model, train_batch, new)
    xs, ys = batch(model, sample_batch, [new[0]])
    ts = torch.full((sample_batch,), 0.5, device=DEVICE)
    order = ["conditioning_only"] + [n for n in names if n != "conditioning_only"]
    steps, samples, frozen = {}, {}, {}
    for name in order:
        torch.manual_seed(0)
        m = build_spec(name).attach(build_unet(model, **MODELS[model]).to(DEVICE))
        m.add_classes(new)
        steps[name] = train_step_fn(m, m.trainable_parameters(), x, y)
        samples[name] = (lambda m=m: _solve(m, ts, xs, ys))
        frozen[name] = (lambda m=m: _solve(m, ts, xs, torch.zeros_like(ys)))
        steps[name]()                          # warm-up (and torch.compile of a compiled kernel)
        with torch.no_grad():
            samples[name]()
        if name == "funlora":
            floor = cosine_floor_fn(m, new_classes)
    times = {k: {n: [] for n in order} for k in ("train", "sample", "frozen")}
    floor_times = []
    for _ in range(repeats):
        for name in order:
            times["train"][name].append(_timed(steps[name]))
            with torch.no_grad():
                times["sample"][name].append(_timed(samples[name]))
                times["frozen"][name].append(_timed(frozen[name]))
        if "funlora" in steps:
            floor_times.append(_timed(floor))
    med = {k: {n: statistics.median(v) for n, v in d.items()} for k, d in times.items()}
    base = med["train"]["conditioning_only"]
    extra = {"cosine_floor_ms": round(statistics.median(floor_times) * 1000, 1)} if floor_times else {}
    return {**extra,
        "model": model, "device": str(DEVICE), "precision": PRECISION, "numerics": _numerics_mode(),
        "train_batch": train_batch, "new_classes_per_batch": new_classes,
        "sample_batch": sample_batch, "repeats": repeats,
        "train_ms": {n: round(t * 1000, 1) for n, t in med["train"].items()},
        "train_ratio": {n: round(t / base, 4) for n, t in med["train"].items()},
        "sample_ratio": {n: round(med["sample"][n] / med["frozen"][n], 4) for n in order},
    }


def _solve(m, ts, xs, ys) -> None:
    """The forwards of one sampling solve (no gradient), under the run's precision."""
    with autocast():
        for _ in range(SOLVE_NFE):
            m(ts, xs, ys)


def _cos_and_sin(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cos(x), torch.sin(x)


def _cos_plus_sin(x: torch.Tensor) -> torch.Tensor:
    return torch.cos(x) + torch.sin(x)       # compiled: one loop, one output


def cosine_floor_fn(adapter, n_classes: int):
    """cos and sin of K x c_out x c_in values per class and adapted layer: the transcendental
    work a FunLoRA training step cannot avoid (M needs the cosines, its gradient the sines)
    and vanilla_mul does not have; timed beside the steps with the cos and sin of the kernel
    FunLoRA runs (torch's, or Inductor's fused in one loop), it bounds the ratio from below."""
    kernel, _ = cosine_kernel.resolve(adapter.options["kernel"], DEVICE.type)
    fn = torch.compile(_cos_plus_sin, dynamic=True) if kernel == "compiled" else _cos_and_sin
    xs = [torch.rand(adapter.options["K"], adapter._layer(k).base.out_channels * adapter._layer(k).base.in_channels,
                     device=DEVICE) * adapter.options["K"] for k in adapter.layer_info]

    def run():
        with torch.no_grad():
            for _ in range(n_classes):
                for x in xs:
                    fn(x)

    run()                                   # warm-up (compiles the fused loop once)
    return run


def build_spec(spec: str):
    """``name`` or ``name[key=value,...]`` (values parsed as YAML: funlora[kernel=function])."""
    import yaml

    name, _, rest = spec.partition("[")
    options = {}
    for item in filter(None, rest.rstrip("]").split(",")):
        key, _, value = item.partition("=")
        options[key.strip()] = yaml.safe_load(value)
    return methods.build(name, **options)


def _timed(fn) -> float:
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def print_methods(result: dict) -> None:
    print(f"\n{result['model']}: training step, batch {result['train_batch']} with {result['new_classes_per_batch']} "
          f"new classes; sampling forward at batch {result['sample_batch']}, one class")
    print(f"{'method':24s} {'train ms':>9s} {'x base':>7s} {'sample x frozen':>16s}")
    for name, ms in result["train_ms"].items():
        print(f"{name:24s} {ms:9.1f} {result['train_ratio'][name]:7.2f} {result['sample_ratio'][name]:16.2f}")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _numerics_mode() -> str:
    from bench import numerics

    return numerics.process_mode() or "mixed"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="small,cifar10")
    ap.add_argument("--methods", default="", help="comma list (name or name[key=value]), or 'all'")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu", help="cpu, cuda[:N] or auto (CUDA where present)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                    help="bf16: every step and forward under bfloat16 autocast")
    ap.add_argument("--paper-batch", type=int, default=None,
                    help="batch of the paper's mix (2 new classes); default 32 on the CPU, 128 on CUDA")
    ap.add_argument("--skip-backbone", action="store_true")
    ap.add_argument("--json-model", default="cifar10", help=argparse.SUPPRESS)  # tests: a small model
    ap.add_argument("--json", action="store_true",
                    help="one JSON object: train_ratio / sample_ratio per method on the CIFAR10 U-Net at the "
                         "paper's class mix (batch 32, 2 new classes), and under worst_case (batch 16, 8 classes)")
    args = ap.parse_args()
    global DEVICE, PRECISION
    try:
        DEVICE = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                              else "cpu" if args.device == "auto" else args.device)
    except RuntimeError as exc:
        fail(f"--device {args.device}: {exc}")
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        fail(f"--device {args.device}: CUDA is not available here")
    PRECISION = args.precision
    from bench import numerics

    numerics.activate(numerics.process_mode() or "native")   # timed as cells compute (portable: sqrt routed)
    paper_batch = args.paper_batch or (128 if DEVICE.type == "cuda" else 32)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = methods.available() if args.methods == "all" else re.findall(r"[^,\[]+(?:\[[^\]]*\])?", args.methods)
    names = [n.strip() for n in names if n.strip()]
    if args.json:
        names = names or ["vanilla_mul", "funlora"]
        model = args.json_model
        paper = measure_methods(model, names, args.repeats, train_batch=paper_batch, new_classes=2, sample_batch=16)
        worst = measure_methods(model, names, args.repeats, train_batch=16, new_classes=8, sample_batch=16)
        out = {"torch": torch.__version__, "threads": torch.get_num_threads(), **paper, "worst_case": worst}
        if DEVICE.type == "cuda":
            out["gpu"] = torch.cuda.get_device_name(DEVICE)
        if "funlora" in names:
            out["funlora_kernel"] = cosine_kernel.resolve("auto", DEVICE.type)[0]
            # funlora[kernel=function] etc. against the default (run against run: what a kernel buys)
            out["funlora_over_variant"] = {
                n: {key: round(r["train_ms"]["funlora"] / r["train_ms"][n], 4)
                    for key, r in (("paper_mix", paper), ("worst_case", worst))}
                for n in names if n.startswith("funlora[")}
        if "funlora" in names and "vanilla_mul" in names:
            out["funlora_over_vanilla_mul"] = {
                "paper_mix": round(paper["train_ms"]["funlora"] / paper["train_ms"]["vanilla_mul"], 4),
                "worst_case": round(worst["train_ms"]["funlora"] / worst["train_ms"]["vanilla_mul"], 4)}
            # the same ratio if FunLoRA cost nothing but its cosines and sines over vanilla_mul
            out["cosine_floor_over_vanilla_mul"] = {
                key: round(1 + r["cosine_floor_ms"] / r["train_ms"]["vanilla_mul"], 4)
                for key, r in (("paper_mix", paper), ("worst_case", worst))}
        print(json.dumps(out, indent=1))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {DEVICE}, {PRECISION}")
    models = [m for m in args.models.split(",") if m]
    if not args.skip_backbone:
        for model in models:
            backbone_section(model, args.repeats, sample_batch=64 if model == "cifar10" else 256)
        classifier_section(args.repeats)
    for model in models if names else []:
        big = model == "cifar10"
        print_methods(measure_methods(model, names, args.repeats, train_batch=paper_batch if big else 64,
                                      new_classes=2, sample_batch=16 if big else 256))
        print_methods(measure_methods(model, names, args.repeats, train_batch=16 if big else 64,
                                      new_classes=8, sample_batch=16 if big else 256))


if __name__ == "__main__":
    main()
