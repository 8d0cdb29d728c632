"""What this machine's CPU offers: its model and feature flags.

The trainer's ``auto`` precision picks bf16 only where the CPU computes it natively; the
benchmark and the fidelity study record the model and flags beside their numbers. All of them
read /proc/cpuinfo through here. No Optuna, no model code: the trainer and the tools import it.
"""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

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

