"""What every entry point shares: argument types, one-line errors, exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from nas.data import DataError
from nas.record import RecordError
from nas.spec import SpecError
from nas.storage import StorageError
from nas.train import DeviceError


class UserError(Exception):
    """Anything the user can fix; printed as one line, exit status 2."""


# Errors that are the user's to fix: one line on stderr, never a traceback.
USER_ERRORS = (UserError, DataError, SpecError, StorageError, DeviceError, RecordError)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``prog: error: ...``) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def describe(doc: str | None) -> str:
    """A module docstring's first line, as --help's description."""
    return (doc or "").splitlines()[0].replace("``", "")


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def _int_at_least(low: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = low - 1
        if v < low:
            raise argparse.ArgumentTypeError(f"must be a {what} integer, got {text!r}")
        return v

    return parse


positive_int = _int_at_least(1, "positive")
nonneg_int = _int_at_least(0, "non-negative")


def run(main: Callable[[Sequence[str] | None], int], prog: str,
        argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``main(argv)`` and exit with its status; user errors become one line and exit 2,
    Ctrl-C exits 130 (what was stored stays stored)."""
    try:
        code = main(argv)
    except USER_ERRORS as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)
