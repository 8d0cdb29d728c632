"""What this machine's CPU offers (its model and feature flags), and how many threads a
process gives torch.

The trainer's ``auto`` precision picks bf16 only where the CPU computes it natively; the
benchmark and the fidelity study record the model and flags beside their numbers. All of them
read /proc/cpuinfo through here, and every process that trains sets its thread count through
:func:`use_threads`. No Optuna, no model code: the trainer and the tools import it.
"""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")


@lru_cache(maxsize=1)
def read_cpuinfo() -> str:
    """The text of ``/proc/cpuinfo``, read once per process; ``""`` where there is none
    (not Linux, or a sandbox without /proc)."""
    try:
        return CPUINFO.read_text()
    except OSError:
        return ""


def _first_field(text: str, keys: tuple[str, ...]) -> str | None:
    """The value of the first ``key : value`` line whose key is one of ``keys``, else None.
    /proc/cpuinfo repeats its fields once per logical CPU; they agree on one machine."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in keys:
            return value.strip()
    return None


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags (``avx2``, ``avx512_bf16``, ``amx_bf16`` ...) as whole words, from
    ``cpuinfo`` (the text of a /proc/cpuinfo; default: this machine's). x86 lists them on its
    ``flags`` line, ARM on ``Features``. Empty when there is no such line."""
    text = read_cpuinfo() if cpuinfo is None else cpuinfo
    return frozenset((_first_field(text, ("flags", "Features")) or "").split())


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name from ``cpuinfo`` (default: this machine's /proc/cpuinfo), else
    what :func:`platform.processor` says (possibly ``""``)."""
    text = read_cpuinfo() if cpuinfo is None else cpuinfo
    return _first_field(text, ("model name",)) or platform.processor()


def use_threads(n: int) -> int:
    """Make torch run this process's CPU operators on ``n`` threads; return the count it had
    before, so a caller that must restore it can. Raises ValueError unless ``n`` >= 1.

    This is process-wide state: call it where a process starts its work (a command's
    ``main``, a worker process's entry), never as a side effect of a library function.

    Why few threads per process: the networks nas trains are tiny (a few thousand weights),
    so an operator's intra-op parallel region is short and its fixed cost (waking threads,
    the barrier at its end) is a large part of it. When several training processes share the
    machine, each with torch's default of one thread per core, there are far more busy
    threads than cores, and every barrier waits for threads that are descheduled. So a
    process that trains beside others gets its share of the cores, ``cores // workers``
    (one thread each once there are as many workers as cores), and a tool that runs several
    measured processes gives each the same count (``--threads``), so they compare.
    """
    if type(n) is not int or n < 1:
        raise ValueError(f"use_threads needs a thread count of at least 1, got {n!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    return before

