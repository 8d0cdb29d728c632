"""Shared fixtures: a small synthetic MNIST written as real IDX files, so the real loading
code runs on data the tests make themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas.training.data import load_mnist
from nas.training.sources import load_path
from tests.helpers import PostgresServer, postgres_bindir, write_mnist


@pytest.fixture(scope="session")
def tiny_mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mnist(tmp_path_factory.mktemp("mnist"))


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Empty load_mnist's in-process cache before every test, so each test's first
    load_mnist reads its files from disk.

    Why: nas.training.data.load_mnist caches by the files (folder, sizes, modification
    times), so a rewritten folder is read again; but monkeypatches of the reading code
    (``_download``, ``read_idx``) would go unseen behind a cached entry, and every caller
    shares the cached tensors. A test must not pass or fail by which tests ran before it in
    the same process. The cost: the shipped 60,000-image copy is decompressed again by each
    test that loads it.
    """
    load_mnist.cache_clear()
    load_path.cache_clear()
    yield


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for this test session, or a skip that says how to get one."""
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[dev]' brings it)")
    server = PostgresServer(bindir)
    yield server
    try:
        server.stop()
    finally:
        server.remove()


@pytest.fixture(params=["sqlite", "journal", "postgresql"])
def storage_url(request, tmp_path) -> str:
    """The same test against every storage nas supports."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres").url("nas")
    return {"sqlite": f"sqlite:///{tmp_path / 'nas.db'}",
            "journal": f"journal:{tmp_path / 'nas.log'}"}[request.param]
