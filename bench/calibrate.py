"""Seconds per unit of work on this machine: the timed half of ``bench.estimate``.

A unit is one generator training step, one U-Net evaluation at a batch size (sampling),
one classifier training step, or one test image predicted. Each is timed with the code
the cells run (``train_flow``, the adapted U-Net, ``train_classifier``, ``predict``) for a
few steps after one step of warm-up, in ``jobs`` processes at once with the threads each
local job gets, so that two jobs sharing the memory bus are in the numbers.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
import multiprocessing

_STARTED = False       # this worker process has answered once (its start is then measured)
_DATA: dict = {}       # model signature -> the cell data, in this worker
TIMED_STEPS = 3        # steps timed per training unit, after one of warm-up
FORWARD_BATCH = 128    # largest batch a forward is timed at; larger batches scale linearly


@dataclass(frozen=True)
class Unit:
    """One kind of work: ``kind`` train | forward | classifier | predict; ``model`` the cell's
    model signature (``model_signature``); ``what`` ``unet`` or a method's JSON (train,
    forward) or the classifier's width; ``batch`` its batch size (1 for predict: per image)."""

    kind: str
    model: str
    what: str
    batch: int


def model_signature(cfg: dict) -> str:
    """What a unit's speed depends on besides its kind: data, U-Net, device, precision."""
    return json.dumps({k: cfg.get(k) for k in ("dataset", "data_root", "model", "image_size", "device",
                                               "precision", "scale")}, sort_keys=True)


def method_what(cfg: dict) -> str:
    return json.dumps(cfg["method"], sort_keys=True)


def _time_model_units(cfg: dict, units: list[Unit], threads: int | None, started: float) -> dict:
    """Worker: build ``cfg``'s data and U-Net once, time each of ``units`` (seconds per unit)."""
    global _STARTED
    import torch

    import methods  # noqa: F401 - imported as a job imports it, inside its start time

    from . import data as data_mod
    from . import precision
    from .protocol import model_for, prepare_data, resolve_device

    ready = None if _STARTED else time.time() - started   # process start and imports: a job's fixed cost
    _STARTED = True
    from . import numerics

    numerics.require(cfg.get("numerics", "native"))   # timed in the mode the cells compute in
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(cfg["device"])
    key, load = model_signature(cfg), None
    if key not in _DATA:   # loaded once per worker; its time is each cell's fixed cost
        t0 = time.perf_counter()
        dataset = data_mod.load(cfg["dataset"], cfg["data_root"])
        _DATA[key] = prepare_data(cfg, dataset, model_for(cfg, dataset.name)[1])
        load = time.perf_counter() - t0
    cell_data = _DATA[key]
    out = {"_start": ready, "_load": load}
    with precision.autocast(device, cfg.get("precision", "fp32")):
        for unit in units:
            out[unit] = _time_unit(unit, cfg, cell_data, device)
    return out


def _time_unit(unit: Unit, cfg: dict, d, device) -> float:
    import torch

    import methods

    from .classifier import build_resnet18, predict, train_classifier
    from .protocol import model_for
    from .trainer import Schedule, train_flow

    classes = d.tasks[1] if len(d.tasks) > 1 else d.tasks[0]
    x = d.train_x[torch.isin(d.train_y, torch.tensor(classes))]
    y = d.train_y[torch.isin(d.train_y, torch.tensor(classes))]
    if unit.kind in ("train", "forward"):
        torch.manual_seed(0)
        unet, _ = model_for(cfg, cfg["dataset"])
        unet.to(device)
        model, params = unet, list(unet.parameters())
        if unit.what != "unet":
            spec = json.loads(unit.what)
            model = methods.build(spec["name"], **{k: v for k, v in spec.items() if k != "name"}).attach(unet)
            model.add_classes(classes)
            params = model.trainable_parameters()
        if unit.kind == "train":
            n = unit.batch * (TIMED_STEPS + 1)
            xs, ys = x.repeat(-(-n // len(x)), 1, 1, 1)[:n], y.repeat(-(-n // len(y)))[:n]

            def steps(k: int) -> float:
                schedule = Schedule(epochs=1, max_steps=k, batch_size=unit.batch, warmup_steps=1, ckpt_every=0)
                return train_flow(model, params, xs, ys, schedule, seed=0, device=device, progress=False).seconds

            steps(1)
            return steps(TIMED_STEPS) / TIMED_STEPS
        b = min(unit.batch, FORWARD_BATCH)
        labels = torch.tensor(classes).repeat(-(-b // len(classes)))[:b].to(device)
        xb, tb = torch.randn(b, *x.shape[1:], device=device), torch.rand(b, device=device)
        model.eval()
        with torch.no_grad():
            model(tb, xb, labels)
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(TIMED_STEPS):
                model(tb, xb, labels)
            _sync(device)
        return (time.perf_counter() - t0) / TIMED_STEPS * unit.batch / b
    width = int(unit.what)
    if unit.kind == "classifier":
        ccfg = {**cfg["classifier"], "epochs": 1, "batch_size": unit.batch}
        n = unit.batch * TIMED_STEPS
        xs, ys = x.repeat(-(-n // len(x)), 1, 1, 1)[:n], y.repeat(-(-n // len(y)))[:n]
        train_classifier(xs[:unit.batch], ys[:unit.batch], classes, ccfg, 0, device, progress=False)
        _, seconds = train_classifier(xs, ys, classes, ccfg, 0, device, progress=False)
        return seconds / TIMED_STEPS
    net = build_resnet18(x.shape[1], len(classes), width).to(device, memory_format=torch.channels_last).eval()
    net.classes = list(classes)
    test = d.test_x[:500]
    predict(net, test[:50], device)
    t0 = time.perf_counter()
    predict(net, test, device)
    _sync(device)
    return (time.perf_counter() - t0) / len(test)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Calibration:
    """Seconds per unit, a local job's fixed cost (process start, imports) and a cell's (data)."""

    seconds: dict
    job_start: float
    cell_start: float
    wall: float          # how long the timing itself took


def measure(units: list[Unit], configs: dict[str, dict], jobs: int, threads: int | None) -> Calibration:
    """Seconds per unit of each of ``units`` (``configs``: a cell config per model signature),
    timed in ``jobs`` processes at once."""
    t0 = time.perf_counter()
    by_model: dict[str, list[Unit]] = {}
    for unit in units:
        by_model.setdefault(unit.model, []).append(unit)
    # Spread each model's units over the workers so that every worker is busy until the end.
    chunks: list[tuple[dict, list[Unit]]] = []
    for model, todo in by_model.items():
        n = max(1, min(jobs, len(todo)))
        chunks += [(configs[model], todo[i::n]) for i in range(n)]
    seconds: dict[Unit, float] = {}
    starts: list[float] = []
    loads: list[float] = []
    env = os.environ.copy()
    ctx = multiprocessing.get_context("spawn")
    try:
        if threads:
            os.environ["OMP_NUM_THREADS"] = str(threads)
        with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=ctx) as pool:
            futures = [pool.submit(_time_model_units, cfg, todo, threads, time.time()) for cfg, todo in chunks]
            for future in futures:
                result = future.result()
                start, load = result.pop("_start"), result.pop("_load")
                starts += [start] if start is not None else []
                loads += [load] if load is not None else []
                seconds.update(result)
    finally:
        os.environ.clear()
        os.environ.update(env)
    mean = lambda xs: sum(xs) / len(xs) if xs else 0.0   # noqa: E731
    return Calibration(seconds, mean(starts), mean(loads), time.perf_counter() - t0)
