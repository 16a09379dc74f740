"""Numerics modes: which CPU code paths a cell's arithmetic takes, so that its bits are known.

``portable`` (the default): ATen's kernels, oneDNN (convolutions) and MKL (matrix products)
are capped at AVX2, MKL in its *compatible* conditional-numerical-reproducibility branch,
all set before torch loads; and a CPU tensor's square root is computed by numpy, which is
correctly rounded on every CPU (torch's float32 CPU ``sqrt`` is not, and which values it
misrounds depends on the CPU, so Adam's step did). A cell's stage outputs are then the same
bits on any x86-64 CPU with AVX2, AMD or Intel, with or without AVX-512 (checked natively and
under emulated CPUs: ``python -m bench.fingerprint``, ``scripts/numerics-check.sh``).

``native``: whatever the libraries pick on this CPU (the widest vector unit: faster on
AVX-512 machines); the bits then depend on the CPU's vendor and vector extensions, so the same
cell gives another record on another CPU type (Table V's seed 0, FunLoRA: LA 69.74 on an AMD
EPYC with AVX2, 70.63 on an Intel Xeon with AVX-512).

The mode of a process is fixed when torch loads. ``bench/__init__`` pins it from
``FUNLORA_NUMERICS`` (default ``portable``) before anything imports torch; a command given
``numerics=native`` restarts itself in that mode (``require(..., restart=True)``), and every
process a sweep starts inherits it. GPUs: only the CPU's arithmetic is pinned; a CUDA cell's
bits depend on the GPU model (its fingerprint names it).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Optional

MODES = ("portable", "native")
DEFAULT = "portable"
ENV_VAR = "FUNLORA_NUMERICS"
# Read by the libraries when they load or first compute (ATen's dispatch, oneDNN, MKL).
PORTABLE_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                "MKL_CBWR": "COMPATIBLE", "MKL_DYNAMIC": "FALSE"}
# What the portable mode computes differently beyond the variables; bumped when that changes,
# so stage outputs of an older portable mode are never mixed with newer ones (bench/stages.py).
PORTABLE_REVISION = 1
_RESTARTED = "FUNLORA_NUMERICS_RESTARTED"

_process_mode: Optional[str] = None     # the mode this process's torch was loaded in (None: mixed)
_library = None                         # the torch.library registrations of the sqrt route


def env_mode(environ: Optional[dict] = None) -> Optional[str]:
    """``portable`` when every pin is set to its value, ``native`` when none is set, else None."""
    environ = os.environ if environ is None else environ
    pinned = [environ.get(k) == v for k, v in PORTABLE_ENV.items()]
    if all(pinned):
        return "portable"
    if not any(k in environ for k in PORTABLE_ENV):
        return "native"
    return None


def apply_env(mode: str, environ: Optional[dict] = None) -> dict:
    """Set (portable) or remove (native) the pins in ``environ`` (default: ``os.environ``)."""
    environ = os.environ if environ is None else environ
    for key, value in PORTABLE_ENV.items():
        if mode == "portable":
            environ[key] = value
        else:
            environ.pop(key, None)
    environ[ENV_VAR] = mode
    return environ


def pin_process() -> Optional[str]:
    """Fix this process's mode from ``FUNLORA_NUMERICS`` before torch loads (``bench/__init__``).

    If torch is already loaded it is too late to change anything: the mode is then whatever
    the variables said when it loaded (None if they were set only in part)."""
    global _process_mode
    wanted = os.environ.get(ENV_VAR) or DEFAULT
    if "torch" in sys.modules or wanted not in MODES:
        _process_mode = env_mode()
    else:
        apply_env(wanted)
        _process_mode = wanted
    return _process_mode


def process_mode() -> Optional[str]:
    return _process_mode


def check_mode(mode: Any) -> str:
    from .errors import BenchError

    if mode not in MODES:
        raise BenchError(f"numerics={mode!r} is not a numerics mode; modes: {', '.join(MODES)}")
    return mode


def require(mode: str, restart: bool = False) -> None:
    """Make sure this process computes in ``mode`` (and route sqrt in portable mode).

    ``restart``: a command's main process that runs in the other mode starts itself again in
    this one (same arguments; said on stderr); elsewhere that is one BenchError line."""
    from .errors import BenchError

    check_mode(mode)
    env = os.environ.get(ENV_VAR)
    if env is not None and env not in MODES:
        raise BenchError(f"{ENV_VAR}={env!r} is not a numerics mode; modes: {', '.join(MODES)}")
    if _process_mode == mode:
        activate(mode)
        return
    if restart and getattr(sys, "orig_argv", None) and os.environ.get(_RESTARTED) != mode:
        environ = apply_env(mode, dict(os.environ))
        environ[_RESTARTED] = mode
        print(f"numerics={mode}: restarting in that mode (its variables must be set before torch loads)",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        os.execve(sys.executable, list(sys.orig_argv), environ)
    now = _process_mode or "a mixed"
    raise BenchError(f"numerics={mode}: this process computes in {now} mode, fixed when torch loaded; "
                     f"start it with {ENV_VAR}={mode} (and import bench before torch)")


def activate(mode: str) -> None:
    """Portable mode: route every float square root of CPU tensors through numpy (idempotent)."""
    global _library
    if mode != "portable" or _library is not None:
        return
    import warnings

    import torch

    lib = torch.library.Library("aten", "IMPL")
    with warnings.catch_warnings():   # "overriding a previously registered kernel": that is the point
        warnings.simplefilter("ignore")
        lib.impl("sqrt", _sqrt, "CPU")
        lib.impl("sqrt_", _sqrt_, "CPU")
        lib.impl("sqrt.out", _sqrt_out, "CPU")
        lib.impl("_foreach_sqrt", _foreach_sqrt, "CPU")
        lib.impl("_foreach_sqrt_", _foreach_sqrt_, "CPU")
    _library = lib


def routed() -> bool:
    """Whether this process's CPU square roots go through numpy."""
    return _library is not None


def exact_sqrt(x):
    """The correctly rounded square root of a CPU tensor, as a new contiguous tensor.

    numpy's sqrt is the processor's IEEE square-root instruction (exact on every x86-64 CPU);
    half and bfloat16 go through float32, whose 24 bits round them exactly too."""
    import numpy as np
    import torch

    src = x.detach()
    if src.dtype in (torch.float16, torch.bfloat16):
        return exact_sqrt(src.float()).to(src.dtype)
    if not (src.is_floating_point() or src.is_complex()):
        src = src.to(torch.get_default_dtype())
    return torch.from_numpy(np.asarray(np.sqrt(src.contiguous().numpy())))


def _sqrt(x):
    return exact_sqrt(x)


def _sqrt_(x):
    x.copy_(exact_sqrt(x))
    return x


def _sqrt_out(x, *, out):
    value = exact_sqrt(x)
    if out.shape != value.shape:
        out.resize_(value.shape)
    out.copy_(value)
    return out


def _foreach_sqrt(tensors):
    return [exact_sqrt(t) for t in tensors]


def _foreach_sqrt_(tensors):
    for t in tensors:
        t.copy_(exact_sqrt(t))


# ---- the fingerprint a record keeps ------------------------------------------------------------
# CPU flags that change which code the libraries run (the widest one picks the kernels).
_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
          "avx512_fp16", "amx_tile", "amx_bf16")


def cpu_info() -> dict[str, Any]:
    """Vendor, model name and the vector flags of this CPU (from /proc/cpuinfo)."""
    import platform

    info: dict[str, Any] = {"vendor": "", "model": "", "arch": platform.machine(), "flags": []}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "vendor_id" and not info["vendor"]:
                    info["vendor"] = value
                elif key == "model name" and not info["model"]:
                    info["model"] = value
                elif key == "flags" and not info["flags"]:
                    flags = set(value.split())
                    info["flags"] = [f for f in _FLAGS if f in flags]
                if info["vendor"] and info["model"] and info["flags"]:
                    break
    except OSError:
        pass
    return info


def cpu_class(cpu: dict[str, Any]) -> str:
    """The CPU type native numbers depend on: vendor and widest vector unit (``AMD AVX2``)."""
    vendor = {"AuthenticAMD": "AMD", "GenuineIntel": "Intel"}.get(cpu.get("vendor", ""), cpu.get("vendor") or "")
    if not vendor:
        model = cpu.get("model", "")
        vendor = "AMD" if "AMD" in model else "Intel" if "Intel" in model else cpu.get("arch", "") or "unknown"
    flags = set(cpu.get("flags", []))
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else cpu.get("arch") or "unknown ISA"
    return f"{vendor} {isa}"


def portable_here(cpu: dict[str, Any]) -> bool:
    """Whether the portable mode's promise holds on this CPU: x86-64 with AVX2 and FMA."""
    return cpu.get("arch") in ("x86_64", "AMD64") and {"avx2", "fma"} <= set(cpu.get("flags", []))


def numerics_class(mode: Optional[str], device: str = "cpu", cpu: Optional[dict] = None,
                   gpu: Optional[str] = None) -> str:
    """Records of one cell agree to the bit exactly within one class: ``portable x86-64 AVX2``
    for portable CPU runs; ``native AMD AVX2`` (vendor and widest vector unit) for native ones;
    the GPU model for CUDA runs."""
    if str(device).startswith("cuda"):
        return f"cuda {gpu or 'GPU'}"
    cpu = cpu if cpu is not None else cpu_info()
    if mode == "portable" and portable_here(cpu):
        return "portable x86-64 AVX2"
    return f"native {cpu_class(cpu)}"


def describe(device: str = "cpu") -> dict[str, Any]:
    """This process's numerics, for a record: mode and class, the CPU, what each library was
    told to use, threads, torch's version and a hash of its build configuration."""
    import hashlib

    import torch

    cpu = cpu_info()
    gpu = torch.cuda.get_device_name(torch.device(device)) if str(device).startswith("cuda") else None
    # the build configuration, less the line that names the running CPU's capability
    build = "\n".join(ln for ln in torch.__config__.show().splitlines() if "CPU capability usage" not in ln)
    return {
        "mode": _process_mode or "mixed",
        "class": numerics_class(_process_mode, str(device), cpu, gpu),
        "cpu": cpu,
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "default"),
        "mkl_cbwr": os.environ.get("MKL_CBWR", "AUTO"),
        "mkl_dynamic": os.environ.get("MKL_DYNAMIC", "default"),
        "sqrt": "numpy (correctly rounded)" if routed() else "torch",
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "torch": torch.__version__,
        "torch_build": hashlib.sha256(build.encode()).hexdigest()[:16],
        "gpu": gpu,
    }


def class_of_record(numerics: Optional[dict], hardware: Optional[str], device: str = "cpu") -> str:
    """The numerics class of a record: its own field, or for a record written before the field
    existed (native numerics then), the class read from its ``hardware`` line
    (``AMD EPYC (AVX2), 2 cores`` -> ``native AMD AVX2``)."""
    if numerics and numerics.get("class"):
        return str(numerics["class"])
    hw = hardware or ""
    if str(device).startswith("cuda"):
        return f"cuda {hw or 'GPU'}"
    vendor = "AMD" if "AMD" in hw else "Intel" if "Intel" in hw else "unknown CPU"
    isa = "AVX-512" if "AVX-512" in hw else "AVX2" if "AVX2" in hw else "unknown ISA"
    return f"native {vendor} {isa}"
