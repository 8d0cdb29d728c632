"""What ``--dataset NAME|PATH`` reads: a named data set, a folder of IDX files, or a ``.npz``.

- A **name** of :data:`nas.training.dataset.NAMED` (``mnist``, ``fashion-mnist``): its
  descriptor, read by :func:`nas.training.data.load_mnist` from ``data_dir`` or the
  descriptor's default folder (MNIST's shipped copy, Fashion-MNIST's Debian package).
- A **folder** holding the four IDX files under MNIST's names (directly, or under ``raw/`` or
  ``MNIST/raw/``): EMNIST, KMNIST or anything else a user has in that layout.
- A **``.npz``** with ``x_train, y_train, x_test, y_test`` (uint8 images N x H x W or
  N x H x W x C, integer labels) and optionally ``classes``, the class names in label order.

A folder or ``.npz`` gets its descriptor from its contents: the name from the file or folder,
the shape from the images (square only: a spec has one ``input_size``), classes ``"0"`` ..
``"K-1"`` where K is one past the largest training label (or the ``.npz``'s ``classes``), and
mean and std from its training images (:func:`nas.training.dataset.pixel_stats`). Anything
wrong with the files is one :class:`~nas.errors.DataError` line naming the file.
"""

from __future__ import annotations

import re
import zipfile
from functools import lru_cache
from pathlib import Path

import torch

from nas.errors import DataError
from nas.training import dataset as ds
from nas.training.data import MNIST as Loaded
from nas.training.data import Split, _file, _locate, load_mnist, read_idx
from nas.training.dataset import Dataset

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# A folder is read with MNIST's file names, in the places MNIST's are looked for.
FOLDER_LAYOUT = ds.MNIST


def names() -> str:
    """The data set names ``--dataset`` knows, for messages and help."""
    return ", ".join(ds.NAMED)


def is_name(arg: str) -> bool:
    """Whether ``--dataset`` ``arg`` is a name (case-insensitive), not a path."""
    return arg.strip().lower() in ds.NAMED


def name_of(arg: str) -> str:
    """The data set's name as ``--dataset arg`` gives it, without reading a file: a named
    one's (``Fashion-MNIST``), else the folder's or file's name made a safe word (the folder
    above a ``raw/``, a file's stem): what a default study name starts with."""
    if is_name(arg):
        return ds.NAMED[arg.strip().lower()].name
    p = Path(arg).resolve()
    if p.suffix.lower() == ".npz":
        return _slug(p.stem)
    return _slug((p.parent if p.name == "raw" else p).name)


def default_data_dir(arg: str) -> str | None:
    """The folder a named data set is read from without a ``--data-dir``; None for a path
    (the path names the data itself) or a name without a default folder."""
    if not is_name(arg):
        return None
    d = ds.NAMED[arg.strip().lower()].default_dir
    return str(d) if d is not None else None


def load_data(arg: str = "mnist", data_dir: str | Path | None = None,
              download: bool = True) -> Loaded:
    """The data ``--dataset arg`` names (see the module's docstring). ``data_dir`` goes with a
    name only: a path is the data itself, and a ``data_dir`` with it is refused. Loaded once
    per process (:func:`load_mnist` and :func:`load_path` cache)."""
    if is_name(arg):
        dataset = ds.NAMED[arg.strip().lower()]
        return load_mnist(data_dir if data_dir is not None else dataset.default_dir,
                          download, dataset)
    if data_dir is not None:
        raise DataError(f"--data-dir goes with a data set name ({names()}); --dataset {arg} "
                        f"names the files itself")
    return load_path(str(Path(arg).resolve()))


@lru_cache(maxsize=4)
def load_path(path: str) -> Loaded:
    """A folder of the four IDX files, or a ``.npz``, with a descriptor made from its contents."""
    p = Path(path)
    if p.is_dir():
        return _load_folder(p)
    if p.is_file() and p.suffix.lower() == ".npz":
        return _load_npz(p)
    if p.exists():
        raise DataError(f"--dataset {p}: not a folder of IDX files nor a .npz file")
    raise DataError(f"--dataset {p}: no such data set ({names()}), folder or .npz file")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip(".-")[:60] or "data"


def _load_folder(root: Path) -> Loaded:
    d = _locate(root, FOLDER_LAYOUT)
    if d is None:
        raise DataError(f"{root} does not hold the four IDX files ("
                        f"{', '.join(FOLDER_LAYOUT.files)}, gzipped or not) directly or under "
                        f"{' or '.join(s + '/' for s in FOLDER_LAYOUT.subdirs)}")
    t = [read_idx(_file(d, stem)) for stem in FOLDER_LAYOUT.files]  # type: ignore[arg-type]
    # torchvision's layout (KMNIST/raw): the data set's name is the folder above raw/.
    return from_arrays(name_of(str(root)), "images of an IDX folder", str(d), *t)


def _load_npz(path: Path) -> Loaded:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                raise DataError(f"{path} has no {', '.join(missing)} (a .npz for nas holds "
                                f"{', '.join(NPZ_KEYS)}, and optionally classes)")
            arrays = {k: z[k] for k in (*NPZ_KEYS, *(["classes"] if "classes" in z.files
                                                     else []))}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # not a zip, pickled ...
        raise DataError(f"cannot read {path}: {str(e).splitlines()[0] if str(e) else e!r}") \
            from None
    tensors = []
    for key in NPZ_KEYS:
        a = arrays[key]
        if key.startswith("x") and a.dtype != np.uint8:
            raise DataError(f"{path}: {key} is {a.dtype}, nas reads uint8 pixels 0-255")
        if key.startswith("y"):
            if a.dtype.kind not in "iu":
                raise DataError(f"{path}: {key} is {a.dtype}, labels must be integers")
            a = a.astype(np.int64)
        tensors.append(torch.from_numpy(np.ascontiguousarray(a)))
    classes = None
    if "classes" in arrays:
        c = arrays["classes"]
        if c.ndim != 1 or c.dtype.kind not in "US":
            raise DataError(f"{path}: classes must be a 1-D array of names, got {c.dtype} "
                            f"of shape {c.shape}")
        classes = tuple(x.decode() if isinstance(x, bytes) else str(x) for x in c.tolist())
    return from_arrays(name_of(str(path)), "images of a .npz file", str(path), *tensors,
                       classes=classes)


def from_arrays(name: str, description: str, source: str, x_train: torch.Tensor,
                y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
                classes: tuple[str, ...] | None = None) -> Loaded:
    """Check the four arrays and make the loaded data set with its descriptor.

    Contract: images uint8, N x H x W (one channel) or N x H x W x C, square, the same shape in
    both splits; integer labels, one per image, from 0; at least one image per split. The
    classes are ``classes`` (the labels must lie below their number) or ``"0"`` .. ``"K-1"``,
    K one past the largest training label (a test label past it is refused). Images are kept
    N x H x W for one channel (as IDX files give them), else made N x C x H x W, the
    trainer's layout. Raises DataError naming ``source`` and what is wrong."""
    parts = {"train": (x_train, y_train), "test": (x_test, y_test)}
    shapes = {}
    for part, (x, y) in parts.items():
        if x.dtype != torch.uint8:
            raise DataError(f"{source}: the {part} images are {x.dtype}, nas reads uint8 "
                            f"pixels 0-255")
        if x.ndim not in (3, 4):
            raise DataError(f"{source}: the {part} images have shape {tuple(x.shape)}, nas "
                            f"reads N x H x W or N x H x W x C")
        if y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{source}: {len(x):,} {part} images but labels of shape "
                            f"{tuple(y.shape)}: one label per image")
        if len(x) == 0:
            raise DataError(f"{source}: the {part} split holds no images")
        if y.dtype.is_floating_point or y.dtype == torch.bool:
            raise DataError(f"{source}: the {part} labels are {y.dtype}, labels must be "
                            f"integers")
        shapes[part] = (x.shape[3] if x.ndim == 4 else 1, x.shape[1], x.shape[2])
    c, h, w = shapes["train"]
    if shapes["test"] != shapes["train"]:
        raise DataError(f"{source}: train images are {'x'.join(map(str, shapes['train']))}, "
                        f"test images {'x'.join(map(str, shapes['test']))} (channels x height "
                        f"x width)")
    if h != w:
        raise DataError(f"{source}: the images are {h}x{w}; nas searches square images only")
    y_train, y_test = y_train.long(), y_test.long()
    low = min(int(y_train.min()), int(y_test.min()))
    if low < 0:
        raise DataError(f"{source}: labels must be 0 or more, found {low}")
    n = len(classes) if classes is not None else int(y_train.max()) + 1
    if n < 2:
        raise DataError(f"{source}: {n} class{'es' if n != 1 else ''}; a classifier needs at "
                        f"least 2")
    for part, y in (("train", y_train), ("test", y_test)):
        if int(y.max()) >= n:
            why = f"{n} classes are named" if classes is not None else \
                f"the training labels' classes are 0 to {n - 1}"
            raise DataError(f"{source}: {part} labels run up to {int(y.max())}, but {why}")

    def layout(x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            return x
        return x[..., 0].contiguous() if c == 1 else x.permute(0, 3, 1, 2).contiguous()

    x_train, x_test = layout(x_train), layout(x_test)
    mean, std = ds.pixel_stats(x_train)
    if round(std, 4) <= 0:
        raise DataError(f"{source}: every training pixel has the same value; nothing to learn")
    names_ = classes if classes is not None else tuple(str(i) for i in range(n))
    dataset = Dataset(name=name, description=description, classes=names_, shape=(c, h, w),
                      mean=round(mean, 4), std=round(std, 4), files=FOLDER_LAYOUT.files)
    return Loaded(Split(x_train, y_train), Split(x_test, y_test), source, dataset)
