"""One clear error line for users, never a traceback from deep inside."""
from __future__ import annotations

import functools
import sys
from typing import Callable


class BenchError(Exception):
    """A user-facing error: bad input, missing data, an impossible request."""


def cli(main: Callable[[list[str]], int | None]) -> Callable[[list[str] | None], int]:
    """Wrap a CLI entry point: BenchError and MethodError become one line on stderr, exit 2."""
    from methods.targets import MethodError

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        argv = sys.argv[1:] if argv is None else argv
        try:
            return int(main(argv) or 0)
        except (BenchError, MethodError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper


def ensure_writable_dir(path, what: str) -> None:
    """Create directory ``path`` if needed and prove it writable (a probe file), before any work."""
    import os
    from pathlib import Path

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BenchError(f"{what}={path} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BenchError(f"{what}={path} is not writable ({exc.strerror or type(exc).__name__})") from None
