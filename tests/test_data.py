from __future__ import annotations

import gzip

import pytest
import torch

from nas.training.data import DataError, load_mnist, read_idx, write_idx
from tests.helpers import write_mnist


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_idx_round_trip_gzip_or_raw(tmp_path, name):
    t = torch.randint(0, 256, (5, 3, 4), dtype=torch.uint8)
    write_idx(tmp_path / name, t)
    assert torch.equal(read_idx(tmp_path / name), t)
    raw = (tmp_path / name).read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == name.endswith(".gz")


def test_idx_header_is_the_mnist_format(tmp_path):
    write_idx(tmp_path / "l", torch.tensor([5, 0, 4], dtype=torch.uint8))
    assert (tmp_path / "l").read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 5, 0, 4])


def test_truncated_and_foreign_files_are_data_errors(tmp_path):
    write_idx(tmp_path / "x", torch.zeros(10, 28, 28, dtype=torch.uint8))
    raw = (tmp_path / "x").read_bytes()
    (tmp_path / "cut").write_bytes(raw[:-100])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "cut")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw)[:-30])
    with pytest.raises(DataError):
        read_idx(tmp_path / "cut.gz")
    (tmp_path / "text").write_text("hello")
    with pytest.raises(DataError, match="not an unsigned-byte IDX"):
        read_idx(tmp_path / "text")


def test_load_mnist_from_both_layouts(tmp_path):
    write_mnist(tmp_path / "a", 120, 30)
    m = load_mnist(tmp_path / "a", download=False)
    assert m.train.x.shape == (120, 28, 28) and m.train.x.dtype == torch.uint8
    assert m.train.y.dtype == torch.int64 and len(m.test) == 30
    # The files directly in the folder, uncompressed, read the same.
    write_mnist(tmp_path / "b", 120, 30, gz=False)
    flat = tmp_path / "b" / "MNIST" / "raw"
    m2 = load_mnist(flat, download=False)
    assert torch.equal(m2.train.x, m.train.x)


def test_load_mnist_is_cached_per_process(tmp_path):
    write_mnist(tmp_path, 50, 10)
    assert load_mnist(tmp_path, download=False) is load_mnist(tmp_path, download=False)


def test_missing_files_say_what_to_put_where(tmp_path):
    with pytest.raises(DataError, match=r"put train-images-idx3-ubyte.gz.* in .*MNIST/raw"):
        load_mnist(tmp_path / "empty", download=False)


def test_search_split_is_fixed_disjoint_and_leaves_test_alone(tmp_path):
    write_mnist(tmp_path, 300, 40)
    m = load_mnist(tmp_path, download=False)
    tr, val = m.search_splits(val_size=100, seed=3)
    assert len(tr) == 200 and len(val) == 100
    tr2, val2 = m.search_splits(val_size=100, seed=3)
    assert torch.equal(val.x, val2.x) and torch.equal(tr.y, tr2.y)
    _, val3 = m.search_splits(val_size=100, seed=4)
    assert not torch.equal(val.x, val3.x)
    # Together they are exactly the training images (as a multiset of rows).
    both = torch.cat([tr.x, val.x]).flatten(1)
    key = lambda t: sorted(map(bytes, t.numpy()))  # noqa: E731
    assert key(both) == key(m.train.x.flatten(1))
    with pytest.raises(DataError):
        m.search_splits(val_size=300)


def test_the_shipped_copy_is_real_mnist():
    m = load_mnist(None, download=False)
    assert m.train.x.shape == (60_000, 28, 28) and m.test.x.shape == (10_000, 28, 28)
    assert m.train.y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert torch.bincount(m.test.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                                 974, 1009]


def test_the_cache_is_keyed_by_the_files_not_the_words(tmp_path):
    """Was: keyed by the folder as typed, so a folder rewritten in the same process read
    stale (50 instead of 70 images), and "d" and Path("d") were two entries."""
    from nas.training.data import load_mnist
    from tests.helpers import write_mnist

    d = write_mnist(tmp_path / "d", n_train=50, n_test=10)
    first = load_mnist(str(d))
    assert len(first.train) == 50
    assert load_mnist(d) is first and load_mnist(str(d) + "/.") is first  # one entry
    write_mnist(tmp_path / "d", n_train=70, n_test=10)  # the same folder, other files
    again = load_mnist(d)
    assert again is not first and len(again.train) == 70
    assert load_mnist(d) is again
