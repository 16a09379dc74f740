"""Stage outputs on disk: damaged files are named, moved aside (never deleted) and recomputed."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch


def quarantine(path: Path, why: str) -> Path:
    """Move a damaged ``path`` to ``path.damaged-TIMESTAMP`` and say so in one line on stderr."""
    path = Path(path)
    dest = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6}")
    path.replace(dest)
    print(f"warning: {path} is damaged ({why}): moved to {dest.name} and recomputed", file=sys.stderr)
    return dest


def read_json(path: Path, check: Callable[[Any], bool] = lambda obj: True) -> Any | None:
    """The JSON at ``path``, or None when it is missing; damaged or malformed content is quarantined."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        quarantine(path, f"{type(exc).__name__}: {str(exc)[:60]}")
        return None
    if not check(obj):
        quarantine(path, "unexpected content")
        return None
    return obj


def load_tensors(path: Path, map_location: Any = "cpu") -> Any | None:
    """``torch.load(weights_only=True)`` of ``path``; None when missing, quarantined when damaged."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated, zero-byte, or not a checkpoint at all
        quarantine(path, f"{type(exc).__name__}: {str(exc).splitlines()[0][:60] if str(exc) else 'unreadable'}")
        return None
