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
