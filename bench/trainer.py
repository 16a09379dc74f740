"""Generator training: Adam, linear warm-up, gradient clipping, EMA with a start epoch,
atomic checkpoints and exact resume in the middle of training.

Everything random is reproducible from the seed and the checkpoint: the epoch order
comes from a generator seeded by (seed, epoch), the flow-matching noise from a
generator whose state is checkpointed, dropout from the global RNG (checkpointed too).
A run killed after a checkpoint and resumed ends with the same weights as one that
was never interrupted (on the same device).
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn
from tqdm.auto import tqdm

from .files import load_tensors, quarantine
from .hardware import describe
from .locks import record_provenance, stage_lock
from .record import write_json_atomic
from .flow import cfm_loss
from .precision import backward


@dataclass
class Schedule:
    """A generator stage's schedule: Adam, linear warm-up, clipping, EMA from a start epoch."""

    epochs: int = 1
    max_steps: Optional[int] = None
    lr: float = 2e-4
    batch_size: int = 128
    warmup_steps: int = 1000
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    ema_start_epoch: int = 0
    ckpt_every: int = 500

    @classmethod
    def from_dict(cls, d: dict) -> "Schedule":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def steps(self, n: int) -> tuple[int, int]:
        """(steps per epoch, total steps) for n training samples."""
        per_epoch = max(1, n // self.batch_size)
        total = per_epoch * self.epochs
        return per_epoch, total if self.max_steps is None else min(total, self.max_steps)


@dataclass
class TrainResult:
    steps: int
    seconds: float
    loss: float
    resumed_from: int
    trained: bool = True       # False when a finished checkpoint was reused as it is
    run_seconds: float = 0.0   # what this run itself spent


# The generator stage running in this process, for submitit's checkpoint() on preemption:
# "save" writes its state, "safe" is True only between two optimisation steps.
_ACTIVE: dict = {"save": None, "safe": False}


def save_active_checkpoint() -> bool:
    """Save the running stage now if it is between two steps (called from a signal handler)."""
    if _ACTIVE["save"] is not None and _ACTIVE["safe"]:
        _ACTIVE["save"]()
        return True
    return False


class Interrupted(RuntimeError):
    """Raised by ``interrupt_at`` (tests): training stopped right after a checkpoint."""


def done_marker(ckpt: Path) -> Path:
    """A small file written once a stage's checkpoint is final (cheap to test for)."""
    return ckpt.with_name(ckpt.name + ".done")


DEFERRED_SIGNALS = ("SIGUSR1", "SIGUSR2", "SIGTERM", "SIGINT")


@contextlib.contextmanager
def signals_deferred():
    """Hold preemption signals (submitit's SIGUSR2, Slurm's SIGTERM, Ctrl-C) until the block ends,
    then deliver them to the handlers that were there. A handler that exits (submitit's
    checkpoint-and-requeue) inside torch.save broke the zip writer, and the job failed instead
    of requeueing. Main thread only (where Python runs signal handlers); elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    # a handler installed outside Python (getsignal: None) could not be put back: left alone
    sigs = [s for s in (getattr(signal, n) for n in DEFERRED_SIGNALS if hasattr(signal, n))
            if signal.getsignal(s) is not None]
    previous = {s: signal.signal(s, lambda signum, frame: held.append(signum)) for s in sigs}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(held):
            signal.raise_signal(s)


def atomic_save(obj: object, path: Path) -> None:
    """torch.save through a unique temporary name, flushed and fsynced, then renamed; a
    preemption signal that arrives meanwhile is handled once the file is complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.{time.time_ns()}")
    with signals_deferred():
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def restore_rng(noise: torch.Generator, state: dict) -> None:
    """Put back the flow-matching noise generator and the global CPU and CUDA generators
    (dropout) of a checkpoint; every state is a CPU ByteTensor, whatever device trained."""
    noise.set_state(state["noise"].cpu())
    torch.set_rng_state(state["rng"].cpu())
    cuda_rng = state.get("cuda_rng")
    if cuda_rng is not None and torch.cuda.is_available():
        n = min(len(cuda_rng), torch.cuda.device_count())
        for i in range(n):   # a node with fewer GPUs than the one that saved: the ones it has
            torch.cuda.set_rng_state(cuda_rng[i].cpu(), i)


def train_flow(model: Callable, params: list[nn.Parameter], x: torch.Tensor, y: torch.Tensor,
               schedule: Schedule, seed: int, device: torch.device, ckpt: Path | None = None,
               progress: bool = True, desc: str = "generator", module: nn.Module | None = None,
               interrupt_at: int | None = None, key: str | None = None) -> TrainResult:
    """Train ``params`` of the vector field ``model`` on (x, y) with the CFM loss.

    ``x`` is in model space (float, [-1, 1]); ``module`` is put in train mode. The EMA
    weights are copied into ``params`` at the end (the EMA model is the one sampled).
    With a checkpoint, the stage is locked while it trains (a second process waits, then
    reuses it) and each run that trains it is appended to its provenance sidecar.
    """
    if ckpt is None:
        return _train_flow(model, params, x, y, schedule, seed, device, None, progress, desc, module, interrupt_at)
    with stage_lock(ckpt):
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        res = _train_flow(model, params, x, y, schedule, seed, device, ckpt, progress, desc, module, interrupt_at)
        if res.trained:
            record_provenance(ckpt, key=key or ckpt.stem, start=started, seconds=res.run_seconds,
                              resumed_from=res.resumed_from, steps=res.steps, hardware=describe(device))
        return res


def _train_flow(model, params, x, y, schedule, seed, device, ckpt, progress, desc, module, interrupt_at) -> TrainResult:
    n = x.shape[0]
    per_epoch, total = schedule.steps(n)
    opt = torch.optim.Adam(params, lr=schedule.lr)
    warm = max(1, schedule.warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    noise = torch.Generator(device="cpu").manual_seed(seed)
    ema = [p.detach().clone() for p in params]
    step, start, before = 0, 0, 0.0   # before: the seconds of the runs this one resumes
    # Loaded on the CPU whatever the device: the random states are CPU ByteTensors (a GPU copy
    # of one is refused by set_state); parameters and optimizer state are moved to theirs below.
    state = load_tensors(ckpt, map_location="cpu") if ckpt is not None else None
    if state is not None and (not isinstance(state, dict) or "params" not in state
                              or [tuple(t.shape) for t in state["params"]] != [tuple(p.shape) for p in params]):
        quarantine(ckpt, "not a checkpoint of the parameters being trained")
        state = None
    if state is not None:
        with torch.no_grad():
            for p, t in zip(params, state["params"]):
                p.copy_(t)
        restore_rng(noise, state)   # also when finished: the process then goes on as after training
        step = start = state["step"]
        if state.get("done"):
            return TrainResult(step, state.get("seconds", 0.0), state.get("loss", math.nan), start, trained=False)
        before = float(state.get("seconds", 0.0))
        ema = [t.to(device) for t in state["ema"]]
        opt.load_state_dict(state["opt"])   # moves the moments to each parameter's device
        sched.load_state_dict(state["sched"])
    else:
        torch.manual_seed(seed)

    def save(done: bool, loss: float, seconds: float) -> None:
        if ckpt is None:
            return
        atomic_save({"step": step, "params": [p.detach().cpu() for p in params], "ema": [e.cpu() for e in ema],
                     "opt": opt.state_dict(), "sched": sched.state_dict(), "noise": noise.get_state(),
                     "rng": torch.get_rng_state(),
                     "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                     "done": done, "loss": loss, "seconds": seconds}, ckpt)

    if module is not None:
        module.train()
    t0, loss_value = time.perf_counter(), math.nan
    bar = tqdm(total=total, initial=step, desc=desc, leave=False, disable=not progress, dynamic_ncols=True)
    perm, perm_epoch = None, -1
    _ACTIVE["save"] = lambda: save(False, loss_value, before + time.perf_counter() - t0)
    while step < total:
        _ACTIVE["safe"] = False
        epoch, b = divmod(step, per_epoch)
        if epoch != perm_epoch:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63))
            perm_epoch = epoch
        idx = perm[b * schedule.batch_size:(b + 1) * schedule.batch_size]
        xb, yb = x[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
        loss = cfm_loss(model, xb, yb, generator=noise)
        opt.zero_grad(set_to_none=True)
        backward(loss)   # outside autocast (bench/precision.py)
        if schedule.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, schedule.grad_clip)
        opt.step()
        sched.step()
        step += 1
        with torch.no_grad():
            if epoch >= schedule.ema_start_epoch:
                torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - schedule.ema_decay)
            else:
                torch._foreach_copy_(ema, [p.detach() for p in params])
        loss_value = loss.item()
        _ACTIVE["safe"] = True
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4f}", refresh=False)
        if schedule.ckpt_every and step % schedule.ckpt_every == 0 and step < total:
            save(False, loss_value, before + time.perf_counter() - t0)
            if interrupt_at is not None and step >= interrupt_at:
                bar.close()
                _ACTIVE.update(save=None, safe=False)
                raise Interrupted(f"interrupted after step {step}")
    bar.close()
    _ACTIVE.update(save=None, safe=False)
    with torch.no_grad():
        for p, e in zip(params, ema):
            p.copy_(e)
    run_seconds = time.perf_counter() - t0
    seconds = before + run_seconds   # the stage's training time, over the runs that reached its checkpoints
    save(True, loss_value, seconds)
    if ckpt is not None:
        write_json_atomic(done_marker(ckpt), {"steps": step, "seconds": round(seconds, 3)})
    if module is not None:
        module.eval()
    return TrainResult(step, seconds, loss_value, start, run_seconds=run_seconds)
