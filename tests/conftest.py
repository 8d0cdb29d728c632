"""Shared fixtures: a small synthetic MNIST written as real IDX files, so the real loading
code runs on data the tests make themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas.data import load_mnist
from tests.helpers import write_mnist


@pytest.fixture(scope="session")
def tiny_mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mnist(tmp_path_factory.mktemp("mnist"))


@pytest.fixture(autouse=True)
def _fresh_cache():
    """load_mnist caches per process; tests that rewrite files must not see stale data."""
    load_mnist.cache_clear()
    yield
