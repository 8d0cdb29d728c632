"""The machine's CPU as nas reads it: one parser of /proc/cpuinfo for everyone."""

from __future__ import annotations

import pytest
import torch

from nas.training.host import cpu_flags, cpu_model, use_threads

# Two logical CPUs of a real x86 /proc/cpuinfo, trimmed: the fields repeat per CPU.
X86 = """\
processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni
bugs\t\t: sysret_ss_attrs spectre_v1

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni
"""

ARM = """\
processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes crc32 bf16
CPU implementer\t: 0x41
"""


def test_cpu_flags_and_model_are_read_from_the_text():
    assert cpu_flags(X86) == {"fpu", "sse2", "avx2", "avx512f", "avx512_bf16", "avx512_vnni"}
    assert cpu_model(X86) == "AMD EPYC 9R14 96-Core Processor"
    # Whole words: the "avx512_bf16" flag is no "bf16" flag, and "bugs" is no flags line.
    assert "bf16" not in cpu_flags(X86) and "spectre_v1" not in cpu_flags(X86)
    assert cpu_flags(ARM) == {"fp", "asimd", "evtstrm", "aes", "crc32", "bf16"}
    assert cpu_flags("") == frozenset()
    assert isinstance(cpu_model(""), str)  # platform.processor(), whatever it says



def test_use_threads_sets_the_count_and_returns_the_old_one():
    start = torch.get_num_threads()
    try:
        assert use_threads(3) == start and torch.get_num_threads() == 3
        assert use_threads(1) == 3 and torch.get_num_threads() == 1
        for bad in (0, -2, 1.5, True):
            with pytest.raises(ValueError, match="at least 1"):
                use_threads(bad)
        assert torch.get_num_threads() == 1  # a refused count changes nothing
    finally:
        torch.set_num_threads(start)  # not through use_threads: it is what is under test
