"""Processes: who is running a trial, whether it is still alive, and how signals stop it.

A trial records the process that runs it (:func:`this_process`: host, boot, PID and the PID's
start time, so a reused PID is not mistaken for the original). Any later command on the same
machine can then tell a trial whose process died (kill -9, power loss) from one that is still
training, on every storage, with no heartbeat needed.

SIGTERM and SIGINT become :class:`Interrupted` (a ``KeyboardInterrupt``, so Optuna marks the
running trial FAIL and re-raises it, as it does for Ctrl-C); the exit status is 128 + signal.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise(signum: int, frame: Any) -> None:
    # Once is enough: a second signal must not interrupt the clean-up of the first.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise Interrupted(signum)


@contextmanager
def handle_signals() -> Iterator[None]:
    """Inside, SIGTERM and SIGINT raise :class:`Interrupted` in the main thread; the previous
    handlers come back after. Elsewhere than the main thread, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for s in before:
        signal.signal(s, _raise)
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this process when its parent dies, however it dies (even
    kill -9), so no worker outlives the search that started it. A no-op elsewhere."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


@lru_cache(maxsize=1)
def _host() -> str:
    """This machine and this boot: PIDs are comparable only within one boot."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "?"
    return f"{socket.gethostname()}/{boot}"


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (field 3 on), None where unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_time(pid: int) -> str | None:
    """The PID's start time in clock ticks since boot (Linux), None where unknown."""
    stat = _stat(pid)
    return stat[19] if stat else None  # field 22


def this_process() -> dict[str, Any]:
    return {"host": _host(), "pid": os.getpid(), "start": _start_time(os.getpid()),
            "hostname": socket.gethostname()}


class ProcessRecordError(ValueError):
    """A recorded process (from a study file: untrusted) that is not what
    :func:`this_process` writes."""


PID_MAX = 1 << 22  # Linux's largest pid_max


def check_process(proc: Any) -> dict[str, Any]:
    """``proc`` if it has :func:`this_process`'s shape (host and hostname text, a PID from 1
    to PID_MAX, start time text or null); raises :class:`ProcessRecordError` naming the field
    otherwise. Checked before use: a PID of 0 or below would make :func:`is_alive` ask about a
    process group (``kill(0, 0)`` is this very group, always "alive"), a huge one overflowed."""
    if not isinstance(proc, dict):
        raise ProcessRecordError(f"must be a mapping, got {type(proc).__name__}")
    for key in ("host", "hostname"):
        if not isinstance(proc.get(key), str) or len(proc[key]) > 1024:
            raise ProcessRecordError(f"{key} must be text, got {type(proc.get(key)).__name__}")
    pid = proc.get("pid")
    if type(pid) is not int or not 1 <= pid <= PID_MAX:
        shown = pid if type(pid) is int and abs(pid) < 2**64 else type(pid).__name__
        raise ProcessRecordError(f"pid must be an integer from 1 to {PID_MAX}, got {shown}")
    if proc.get("start") is not None and not isinstance(proc["start"], str):
        raise ProcessRecordError(f"start must be text or null, got "
                                 f"{type(proc['start']).__name__}")
    return proc


def is_alive(proc: dict[str, Any]) -> bool | None:
    """Whether the process ``proc`` (from :func:`this_process`) still runs; None where this
    machine cannot tell (another host). ``proc`` read from a study must pass
    :func:`check_process` first."""
    if proc.get("host") != _host():
        if proc.get("hostname") == socket.gethostname() and "/" in str(proc.get("host")):
            return False  # same machine, an earlier boot: every process of it is gone
        return None
    pid = int(proc["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    stat = _stat(pid)
    if stat is None:
        return True  # no /proc: the PID exists, that is all we know
    if stat[0] in ("Z", "X"):
        return False  # exited, not yet reaped by its parent
    return proc.get("start") in (None, stat[19])
