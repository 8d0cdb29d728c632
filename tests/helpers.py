"""What several test modules share: synthetic MNIST as real IDX files, sampled specs, and small
search configurations. Fixtures built from these live in ``conftest.py``."""

from __future__ import annotations

from pathlib import Path

import optuna
import torch

from nas.arch.plan import plan
from nas.arch.space import sample_spec
from nas.arch.spec import ArchSpec, SpecError
from nas.study.config import SearchConfig
from nas.training.data import FILES, write_idx
from nas.training.trainer import TrainConfig

TINY_TRAIN = TrainConfig(epochs=2, batch_size=100, lr=0.1, eval_batch_size=500)


def sigterm_at_second_run_of(epochs: int, real_train):
    """A stand-in for the objective's ``train``: SIGTERM (as ``Interrupted``) at the start of
    the second training of ``epochs`` epochs (the second finalist run), once; every other
    call trains for real. Returns it and the list of the epochs each call asked for."""
    import signal

    from nas.study.processes import Interrupted

    calls: list[int] = []

    def train(spec, tr, val, tcfg, device, callback=None, **more):
        calls.append(tcfg.epochs)
        if calls.count(epochs) == 2 and not getattr(train, "stopped", False):
            train.stopped = True
            raise Interrupted(signal.SIGTERM)
        return real_train(spec, tr, val, tcfg, device, callback=callback, **more)

    return train, calls


def tiny_config(tmp_path: Path, data_dir: Path, **changes) -> SearchConfig:
    base = dict(storage=f"sqlite:///{tmp_path / 'nas.db'}", study_name="t", trials=3,
                max_params=20_000, data_dir=str(data_dir), val_size=200, device="cpu",
                full_schedule=TINY_TRAIN, finalists=0, proxy_epochs=None, proxy_subset=None,
                pruner="hyperband",  # the pruned full schedule: a stage of its own, fast
                space=1, train_space="fixed")  # TINY_TRAIN's recipe for every candidate
    base.update(changes)
    return SearchConfig(**base)


def synthetic_digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable 28x28 uint8 images: class k is a bright bar at a class-specific place and
    angle, plus noise. A small CNN separates them in an epoch or two."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.randint(0, 40, (n, 28, 28), generator=g, dtype=torch.int64)
    for k in range(10):
        idx = (y == k).nonzero().flatten()
        r, c = 4 + 2 * (k % 5), 6 + 8 * (k // 5)
        if k % 2:
            x[idx, r:r + 12, c:c + 4] += 200
        else:
            x[idx, r:r + 4, c - 2:c + 10] += 200
    return x.clamp(0, 255).to(torch.uint8), y.to(torch.uint8)


def write_mnist(root: Path, n_train: int = 600, n_test: int = 200, gz: bool = True) -> Path:
    """The four MNIST IDX files under ``root/MNIST/raw``, with synthetic digits."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    tx, ty = synthetic_digits(n_train, 0)
    vx, vy = synthetic_digits(n_test, 1)
    ext = ".gz" if gz else ""
    for key, t in (("train_x", tx), ("train_y", ty), ("test_x", vx), ("test_y", vy)):
        write_idx(raw / (FILES[key] + ext), t)
    return root


def sampled_specs(n: int, seed: int = 0, valid_only: bool = True) -> list[ArchSpec]:
    """``n`` members of the search space drawn at random (only buildable ones by default)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed))
    out = []
    while len(out) < n:
        trial = study.ask()
        spec = sample_spec(trial)
        study.tell(trial, 0.0)
        try:
            plan(spec.validate())
        except SpecError:
            if valid_only:
                continue
        out.append(spec)
    return out


class PostgresServer:
    """A throwaway PostgreSQL server in a temporary directory, on a free loopback port.

    Runs as the ``postgres`` user when the tests run as root (the server refuses root).
    ``url(name)`` creates a fresh database and returns its SQLAlchemy URL.
    """

    def __init__(self, bindir: Path) -> None:
        import getpass
        import os
        import shutil
        import socket
        import subprocess
        import tempfile

        self.bindir, self.count = bindir, 0
        self.user = "postgres" if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="nas-pg-"))
        if self.user:
            shutil.chown(self.root, self.user)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        data = self.root / "data"
        self.db_user = self.user or getpass.getuser()

        def run(*argv: str) -> None:
            subprocess.run(argv, check=True, capture_output=True, user=self.user, cwd=self.root,
                           timeout=120)

        self._run = run
        run(str(bindir / "initdb"), "-D", str(data), "-U", self.db_user, "--auth=trust",
            "-E", "UTF8")
        self.start()

    def start(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-l",
                  str(self.root / "log"), "-w", "-o", f"-p {self.port} -k {self.root} "
                  f"-c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def url(self, name: str) -> str:
        import psycopg

        self.count += 1
        db = f"{name}_{self.count}".lower()
        with psycopg.connect(f"postgresql://{self.db_user}@127.0.0.1:{self.port}/postgres",
                             autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{db}"')
        return f"postgresql://{self.db_user}@127.0.0.1:{self.port}/{db}"

    def stop(self, mode: str = "immediate") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", mode,
                  "-w", "stop")

    def remove(self) -> None:
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)


def postgres_bindir() -> Path | None:
    """Where PostgreSQL's server programs are (Debian keeps them out of PATH), or None."""
    import shutil

    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None
