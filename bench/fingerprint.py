"""Numerics fingerprint: hashes of a small piece of every kind of arithmetic a cell does.

    python -m bench.fingerprint [methods=[funlora,dora,...]] [out=PATH]

Runs, on the CPU with one thread and seeded, a tiny U-Net's training steps (Adam, gradient
clipping, EMA), a few training steps of each method's per-class adapters on it, the ODE
sampler (midpoint and dopri5), and a ResNet18's training steps (SGD, batch norm,
augmentation) and predictions, and prints the sha256 of each piece's output tensors as
JSON, beside the process's numerics (``bench.numerics.describe``). Two CPUs compute the
same bits for a cell exactly when they print the same hashes; ``scripts/numerics-check.sh``
runs it natively and as emulated CPUs (qemu-user) and compares. Small on purpose: under
emulation it runs about 100x slower.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

# The adapters the check trains by default: one of each kind of arithmetic the methods use
# (FunLoRA's cosines, products and sums of factors, Kronecker products, weight norms,
# orthogonal Cayley / butterfly transforms, shared random projections, per-channel scales).
DEFAULT_METHODS = ("funlora", "vanilla_mul", "lora_attention", "loha", "lokr", "dora", "oft", "boft", "vera", "ia3")
HELP = __doc__ + f"""
Keys:
  methods   the adapters to train (default: {', '.join(DEFAULT_METHODS)})
  out       also write the JSON here
  numerics  portable | native (default: this process's; see bench/numerics.py)
  solvers   the sampling solves to hash (default: [midpoint,dopri5]; [] for none)
  classifier  false: leave out the ResNet18's training and prediction
  quick     true: the U-Net, FunLoRA's adapters, the midpoint solver and the classifier only
            (every kind of op but the other adapters' and dopri5's; about 4x faster)
  compare   [a.json,b.json,...]: compare runs written with out=; exit 1 if any piece differs
"""


def _hash(*tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def pieces(method_names=DEFAULT_METHODS, progress=None, solvers=("midpoint", "dopri5"),
           classifier: bool = True) -> dict[str, str]:
    """Hash of each piece, computed on the CPU with one thread: the U-Net's training, each of
    ``method_names``' adapters, a sampling solve with each of ``solvers``, the classifier."""
    import torch

    import methods

    from .classifier import predict, train_classifier
    from .flow import SolverConfig, sample
    from .seeding import seed_all
    from .trainer import Schedule, train_flow
    from .unet import build_unet

    torch.set_num_threads(1)
    say = progress or (lambda *_: None)
    cpu = torch.device("cpu")
    out: dict[str, str] = {}
    seed_all(1)
    classes = 4
    x = torch.rand(32, 1, 8, 8) * 2 - 1
    y = torch.arange(32) % 2
    unet = build_unet("tiny", image_size=8, in_channels=1, num_classes=classes)
    backbone = Schedule(max_steps=3, lr=2e-3, batch_size=16, warmup_steps=2, grad_clip=1.0, ema_decay=0.9,
                        ema_start_epoch=0, ckpt_every=0)
    params = [p for p in unet.parameters()]
    train_flow(unet, params, x, y, backbone, seed=2, device=cpu, progress=False, module=unet)
    out["unet_train"] = _hash(*unet.state_dict().values())
    say("unet_train")
    state = {k: v.clone() for k, v in unet.state_dict().items()}
    new = torch.rand(16, 1, 8, 8) * 2 - 1
    new_y = 2 + torch.arange(16) % 2
    adapter_schedule = Schedule(max_steps=2, lr=1e-2, batch_size=16, warmup_steps=1, grad_clip=1.0,
                                ema_decay=0.9, ema_start_epoch=0, ckpt_every=0)
    for name in method_names:
        base = build_unet("tiny", image_size=8, in_channels=1, num_classes=classes)   # attach changes it
        base.load_state_dict(state)
        for p in base.parameters():
            p.requires_grad_(False)
        seed_all(3)
        options = {"kernel": "function"} if name.startswith("funlora") else {}
        adapter = methods.build(name, **options).attach(base)
        adapter.add_classes([2, 3])
        train_flow(adapter, adapter.trainable_parameters(), new, new_y, adapter_schedule, seed=4, device=cpu,
                   progress=False, module=adapter)
        adapter.eval()
        with torch.no_grad():
            v = adapter(torch.full((4,), 0.5), new[:4], new_y[:4])
        out[f"adapter_{name}"] = _hash(*adapter.trainable_parameters(), v)
        say(f"adapter_{name}")
    unet.eval()
    labels = torch.tensor([0, 1, 0, 1])
    configs = {"midpoint": SolverConfig("midpoint", steps=3), "dopri5": SolverConfig("dopri5", atol=1e-3, rtol=1e-3)}
    for solver in (configs[name] for name in solvers):
        g = torch.Generator().manual_seed(5)
        xs, nfe = sample(unet, labels, (1, 8, 8), solver, generator=g, device=cpu)
        out[f"sampler_{solver.name}"] = _hash(xs, torch.tensor(nfe))
        say(f"sampler_{solver.name}")
    if not classifier:
        return out
    cfg = {"width": 8, "epochs": 1, "batch_size": 16, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
           "augment": True}
    net, _ = train_classifier(x, y, [0, 1], cfg, seed=6, device=cpu, progress=False)
    out["classifier_train"] = _hash(*net.state_dict().values())
    out["classifier_predict"] = _hash(predict(net, x, cpu), net(x.contiguous(memory_format=torch.channels_last)))
    say("classifier")
    return out


def controls() -> dict[str, str]:
    """Hashes that are meant to differ between CPUs: torch's own float32 square root (``pow(0.5)``
    takes it; the portable mode routes only ``sqrt``), misrounded in CPU-dependent places. A check
    whose CPUs agree here too did not run on different CPUs (or the emulation hid the difference)."""
    import torch

    x = torch.rand(1000, generator=torch.Generator().manual_seed(7)) + 0.1
    return {"torch_pow_half": _hash(x.pow(0.5))}


def compare(paths) -> int:
    """``compare=[a.json,b.json,...]``: one line per piece, the runs' hashes side by side; exit 1
    when any piece differs between the runs (each file: a run's JSON, as ``out=`` writes it)."""
    from .errors import BenchError

    paths = [paths] if isinstance(paths, str) else list(paths)
    runs = {}
    for p in paths:
        try:
            runs[p] = json.loads(Path(p).read_text())
        except (OSError, ValueError) as exc:
            raise BenchError(f"compare: {p} is not a fingerprint written by out= ({type(exc).__name__})") from None
    names = sorted({k for r in runs.values() for k in r.get("pieces", {})})
    differ = []
    print("piece".ljust(24) + "".join(Path(p).stem[:18].ljust(20) for p in paths))
    for name in names:
        values = [r.get("pieces", {}).get(name, "-") for r in runs.values()]
        mark = "" if len(set(values)) == 1 else "   <- differs"
        if mark:
            differ.append(name)
        print(name.ljust(24) + "".join(v.ljust(20) for v in values) + mark)
    for name in sorted({k for r in runs.values() for k in r.get("controls", {})}):
        values = [r.get("controls", {}).get(name, "-") for r in runs.values()]
        print(f"control {name} (differs between CPUs unless routed): " + " ".join(values))
    for p, r in runs.items():
        n = r.get("numerics", {})
        print(f"{Path(p).stem}: {n.get('class')} ({n.get('cpu', {}).get('model')}, ATen {n.get('aten_capability')}, "
              f"sqrt {n.get('sqrt')}), {r.get('seconds')} s")
    print(f"{len(names) - len(differ)} of {len(names)} pieces identical across {len(paths)} runs"
          + (f"; differ: {', '.join(differ)}" if differ else ""))
    return 1 if differ else 0


def main(argv: list[str] | None = None) -> int:
    from .errors import BenchError, cli

    @cli
    def run(args: list[str]) -> int:
        if any(a in ("-h", "--help", "help") for a in args):
            print(HELP)
            return 0
        from . import numerics
        from .config import parse_known

        opts = parse_known(args, ("methods", "out", "numerics", "compare", "quick", "solvers", "classifier"))
        if opts.get("compare"):
            return compare(opts["compare"])
        mode = opts.get("numerics") or numerics.process_mode() or numerics.DEFAULT
        numerics.require(numerics.check_mode(mode), restart=True)
        names = opts.get("methods")
        names = list(DEFAULT_METHODS) if names is None else [names] if isinstance(names, str) else list(names)
        quick = bool(opts.get("quick"))
        if quick and opts.get("methods") is None:
            names = ["funlora"]
        solvers = opts.get("solvers")
        solvers = (["midpoint"] if quick else ["midpoint", "dopri5"]) if solvers is None else \
            [solvers] if isinstance(solvers, str) else list(solvers)
        bad = [s for s in solvers if s not in ("midpoint", "dopri5")]
        if bad:
            raise BenchError(f"solvers= takes midpoint and dopri5, got {bad[0]!r}")
        import methods

        for name in names:
            if name not in methods.available():
                raise BenchError(f"unknown method {name!r} in methods=; methods: {', '.join(methods.available())}")
        t0 = time.perf_counter()
        hashes = pieces(names, progress=lambda what: print(f"  {what} ({time.perf_counter() - t0:.0f} s)",
                                                            file=sys.stderr, flush=True),
                        solvers=solvers, classifier=opts.get("classifier", True) is not False)
        result = {"numerics": numerics.describe(), "pieces": hashes, "controls": controls(),
                  "digest": hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:16],
                  "seconds": round(time.perf_counter() - t0, 1)}
        text = json.dumps(result, indent=2, sort_keys=True)
        print(text)
        if opts.get("out"):
            Path(opts["out"]).write_text(text + "\n")
        return 0

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
