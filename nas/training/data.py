"""A data set's original IDX files as uint8 tensors, read once per process (MNIST by default).

What is read is described by a :class:`nas.training.dataset.Dataset` (file names, image size,
classes). Where it is read from, in this order:

1. ``data_dir`` (``--data-dir``) when given: the files directly in it or under one of the
   descriptor's ``subdirs`` (MNIST: ``MNIST/raw/``, ``raw/``), gzip-compressed or not. When
   they are absent we try torchvision's download into it, and when that fails too we say in one
   line what to put where.
2. Otherwise the copy that ships inside the package, ``nas/training/datasets/mnist/`` (see the
   ``README.md`` there for its provenance and licence; :data:`DEFAULT_DATA_DIR`). It is package
   data, so a non-editable ``pip install`` has it and nothing needs the network. Nothing is
   ever downloaded into the package: an install that lacks the files is one line saying so.

:func:`load_data` is what ``--dataset NAME|PATH`` reads: a name (``mnist``, ``fashion-mnist``:
:data:`nas.training.dataset.NAMED`), a folder of the four IDX files under MNIST's names, or a
``.npz`` with ``x_train, y_train, x_test, y_test``. A folder or ``.npz`` gets a descriptor made
from its own contents (shape, classes, the training images' :func:`pixel_stats`). Whatever is
wrong with the files is one :class:`DataError` line.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from nas.errors import DataError
from nas.training import dataset as ds
from nas.training.dataset import Dataset

# MNIST's, as the names this module has always had (the descriptor is the source).
FILES = ds.MNIST.file_names
SIZE, CLASSES = ds.MNIST.size, ds.MNIST.num_classes  # what load_mnist accepts by default
# The copy that ships inside the package: nas/training/datasets/mnist/ (package data).
DEFAULT_DATA_DIR: Path = ds.MNIST.shipped_dir  # type: ignore[assignment]


@dataclass(frozen=True)
class Split:
    """Images (uint8, N x H x W) and labels (int64, N), on whatever device they were put."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))

    def subset(self, n: int, seed: int = 0) -> Split:
        """The first ``n`` images of a permutation seeded by ``seed``: the same images on
        every call, every device and every process."""
        if not 0 < n <= len(self):
            raise DataError(f"a subset must have between 1 and {len(self):,} images, got {n:,}")
        pick = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return Split(self.x[pick.to(self.x.device)], self.y[pick.to(self.y.device)])


@dataclass(frozen=True)
class MNIST:
    """A loaded data set (MNIST unless ``dataset`` says otherwise)."""

    train: Split  # the 60,000 training images
    test: Split  # the 10,000 test images: reporting only, never selection
    source: str  # where the files were read from
    dataset: Dataset = ds.MNIST  # what they are

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the data a search trains and validates on: the training images'
        count and a content hash of them and their labels (the decompressed contents, so a
        gzip and a raw copy agree). The test images take no part, not even here."""
        h = hashlib.sha256()
        for t in (self.train.x, self.train.y):
            h.update(t.contiguous().numpy().tobytes())
        # The keys and values studies have always recorded: resuming compares them.
        return {"name": self.dataset.name, "train": len(self.train), "sha256": h.hexdigest()}

    def search_splits(self, val_size: int = 10_000, seed: int = 0) -> tuple[Split, Split]:
        """(train, validation) carved from the training images by a fixed permutation.

        The test images take no part: the search selects on validation accuracy only.
        """
        n = len(self.train)
        if not 0 < val_size < n:
            raise DataError(f"validation size must be between 1 and {n - 1}, got {val_size}")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        val, tr = perm[:val_size], perm[val_size:]
        return (Split(self.train.x[tr], self.train.y[tr]),
                Split(self.train.x[val], self.train.y[val]))


def read_idx(path: Path) -> torch.Tensor:
    """Read one IDX file (gzip or raw) into a uint8 tensor of the shape its header gives."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated (header)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    count = 1
    for s in shape:
        count *= s
    if len(raw) - header != count:
        raise DataError(f"{path} is truncated: expected {count:,} data bytes for shape "
                        f"{tuple(shape)}, found {len(raw) - header:,}")
    if count == 0:  # frombuffer refuses an empty buffer; load_mnist says what is wrong
        return torch.zeros(shape, dtype=torch.uint8)
    data = torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8)
    return data.reshape(shape)


def _locate(data_dir: Path, dataset: Dataset) -> Path | None:
    """The folder under ``data_dir`` that holds all four files, or None."""
    for d in (data_dir, *(data_dir / sub for sub in dataset.subdirs)):
        if all(_file(d, stem) for stem in dataset.files):
            return d
    return None


def _file(d: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (d / name).is_file():
            return d / name
    return None


def _download(data_dir: Path, dataset: Dataset) -> bool:
    """Try torchvision's download into ``data_dir/<Class>/raw``; False when it fails."""
    if dataset.torchvision is None:
        return False
    try:
        import torchvision.datasets

        getattr(torchvision.datasets, dataset.torchvision)(str(data_dir), download=True)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not available offline"
        return False


def _is_shipped(root: Path, dataset: Dataset) -> bool:
    shipped = dataset.shipped_dir
    return shipped is not None and root.resolve() == shipped.resolve()


def load_mnist(data_dir: str | Path | None = None, download: bool = True,
               dataset: Dataset = ds.MNIST) -> MNIST:
    """Load ``dataset`` (default MNIST) from ``data_dir`` (default: the copy that ships with
    the package). The shipped copy is never downloaded into. Cached in the process by the
    files themselves (the folder, resolved, and each file's size and modification time): a
    folder loaded again is not read again until a file there changes; ``"d"``, ``Path("d")``
    and ``./d`` are one entry. ``load_mnist.cache_clear()`` empties the cache."""
    root = Path(data_dir) if data_dir is not None else dataset.default_dir
    key = _stamps(root.resolve(), dataset) if root is not None else None
    return _load_cached(data_dir if root is None else root.resolve(), download, dataset, key)


def _stamps(root: Path, dataset: Dataset) -> tuple[tuple[str, int, int], ...]:
    """(path, size, mtime in ns) of every file of ``dataset`` that exists where
    :func:`_locate` looks: what the cache of :func:`load_mnist` is keyed by."""
    out = []
    for d in (root, *(root / sub for sub in dataset.subdirs)):
        for stem in dataset.files:
            for name in (stem, stem + ".gz"):
                try:
                    st = (d / name).stat()
                except OSError:
                    continue
                out.append((str(d / name), st.st_size, st.st_mtime_ns))
    return tuple(out)


@lru_cache(maxsize=4)
def _load_cached(data_dir: str | Path | None, download: bool, dataset: Dataset,
                 stamps: object) -> MNIST:
    """:func:`_load`, once per folder and set of file stamps (``stamps``: only the key)."""
    return _load(data_dir, download, dataset)


load_mnist.cache_clear = _load_cached.cache_clear  # type: ignore[attr-defined]


def _load(data_dir: str | Path | None, download: bool, dataset: Dataset) -> MNIST:
    if dataset.channels != 1:  # an IDX image file here is (N, H, W): one channel
        raise DataError(f"{dataset.name} has {dataset.channels} channels; nas reads "
                        f"single-channel IDX images only")
    if data_dir is not None:
        root = Path(data_dir)
    elif dataset.default_dir is not None:
        root = dataset.default_dir
    else:
        raise DataError(f"no copy of {dataset.name} ships with nas: pass --data-dir")
    names = ", ".join(s + ".gz" for s in dataset.files)
    d = _locate(root, dataset)
    if d is None and dataset.system_dir is not None and \
            root.resolve() == Path(dataset.system_dir).resolve():
        raise DataError(f"{dataset.name} not found in {root}: install it (Debian: apt-get "
                        f"install dataset-{dataset.slug}), or pass --data-dir a folder "
                        f"holding {names}")
    if d is None and _is_shipped(root, dataset):
        raise DataError(f"{dataset.name} not found in {root}, the copy that should ship with "
                        f"nas (this install lacks its data files): reinstall nas, or pass "
                        f"--data-dir a folder holding {names}")
    if d is None and download and _download(root, dataset):
        d = _locate(root, dataset)
    if d is None:
        where = root / dataset.subdirs[0] if dataset.subdirs else root
        raise DataError(f"{dataset.name} not found in {root} and could not be downloaded: put "
                        f"{names} in {where} (or pass --data-dir)")
    t = {k: read_idx(_file(d, stem))  # type: ignore[arg-type]
         for k, stem in dataset.file_names.items()}
    size, classes = dataset.size, dataset.num_classes
    for part in ("train", "test"):
        x, y = t[f"{part}_x"], t[f"{part}_y"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{d}: {part} images {tuple(x.shape)} and labels {tuple(y.shape)} "
                            f"do not match")
        if len(x) == 0:
            raise DataError(f"{d}: the {part} files hold no images")
        if tuple(x.shape[1:]) != size:
            raise DataError(f"{d}: {part} images are {x.shape[1]}x{x.shape[2]}, "
                            f"{dataset.name}'s are {size[0]}x{size[1]}")
        if int(y.max()) >= classes:
            raise DataError(f"{d}: {part} labels run up to {int(y.max())}, {dataset.name}'s "
                            f"are 0 to {classes - 1}")
    return MNIST(Split(t["train_x"], t["train_y"].long()),
                 Split(t["test_x"], t["test_y"].long()), str(d), dataset)


def write_idx(path: Path, data: torch.Tensor) -> None:
    """Write a uint8 tensor as an IDX file (gzip when ``path`` ends in .gz). For tests/tools."""
    data = data.to(torch.uint8).contiguous()
    body = bytes([0, 0, 0x08, data.ndim]) + struct.pack(f">{data.ndim}I", *data.shape)
    body += data.numpy().tobytes()
    path.write_bytes(gzip.compress(body) if path.suffix == ".gz" else body)
