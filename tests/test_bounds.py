"""Resource bounds: --workers beyond what the machine can run is refused in one line before
any work; stopping workers that were never started is no crash."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import torch

from nas.study.runner import WORKER_MEMORY, WORKERS_PER_CORE, _stop, max_workers


def test_max_workers_is_tied_to_cores_devices_and_memory():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert max_workers(cpu, cores=2, memory=64 * WORKER_MEMORY) == \
        (2 * WORKERS_PER_CORE, f"{WORKERS_PER_CORE} per CPU core, 2 cores")
    n, why = max_workers(cpu, cores=16, memory=3 * WORKER_MEMORY + 5)
    assert n == 3 and "GiB of memory each" in why
    assert max_workers(cuda, cores=1, memory=64 * WORKER_MEMORY)[0] == 8
    assert max_workers(cpu, cores=1, memory=0)[0] == 1  # never below one
    n, _ = max_workers(cpu)  # this machine's own figures
    assert 1 <= n <= WORKERS_PER_CORE * len(os.sched_getaffinity(0))


def test_too_many_workers_is_one_line_before_any_work(tmp_path, tiny_mnist_dir):
    db = tmp_path / "nas.db"
    p = subprocess.run([sys.executable, "-m", "nas.search", "--workers", "1000", "--trials", "1",
                        "--storage", f"sqlite:///{db}", "--data-dir", str(tiny_mnist_dir),
                        "--device", "cpu", "--no-progress"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    most, _ = max_workers(torch.device("cpu"))
    assert lines[0].startswith("python -m nas.search: error: --workers 1000 is more than this "
                               f"machine can run: at most {most} (")
    assert not list(tmp_path.iterdir())  # no database, no artifact folder


def test_stopping_workers_that_were_never_started_is_no_crash():
    ctx = mp.get_context("spawn")
    started = ctx.Process(target=time.sleep, args=(60,))
    never = ctx.Process(target=time.sleep, args=(60,))
    started.start()
    t0 = time.monotonic()
    _stop([started, never], signal.SIGTERM)  # raised AssertionError: join of an unstarted one
    assert not started.is_alive() and started.exitcode == -signal.SIGTERM
    assert never.pid is None and time.monotonic() - t0 < 20
