"""Shared fixtures: a small synthetic MNIST written as real IDX files, so the real loading
code runs on data the tests make themselves."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nas.data import FILES, load_mnist, write_idx


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
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    tx, ty = synthetic_digits(n_train, 0)
    vx, vy = synthetic_digits(n_test, 1)
    ext = ".gz" if gz else ""
    for key, t in (("train_x", tx), ("train_y", ty), ("test_x", vx), ("test_y", vy)):
        write_idx(raw / (FILES[key] + ext), t)
    return root


@pytest.fixture(scope="session")
def tiny_mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mnist(tmp_path_factory.mktemp("mnist"))


@pytest.fixture(autouse=True)
def _fresh_cache():
    """load_mnist caches per process; tests that rewrite files must not see stale data."""
    load_mnist.cache_clear()
    yield
