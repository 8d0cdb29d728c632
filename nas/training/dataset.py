"""What a data set is, as nas needs to know it: one frozen :class:`Dataset` descriptor.

Everything that used to say "MNIST" in code (the normalisation constants, the ONNX metadata,
the generated ``model.py``, the default study name, the loader's file names and where it looks
for them) reads a descriptor instead; :data:`MNIST` is the default and holds exactly the values
nas has always used. The descriptor says what the data *is*; :mod:`nas.training.data` reads it.

A copy of each shipped data set lives inside the package, under
``nas/training/datasets/<package_dir>/`` with its provenance ``README.md``, and is declared as
package data (``pyproject.toml``), so a non-editable ``pip install`` finds it without the
network.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from nas.errors import DataError

if TYPE_CHECKING:  # torch only where pixels are counted: the help texts import this module
    import torch

# The shipped copies: nas/training/datasets/<name>/, next to this module in a checkout and in
# an installed package alike.
DATASETS_DIR = Path(__file__).resolve().parent / "datasets"
# The four IDX files' roles, in the order Dataset.files lists them.
ROLES = ("train_x", "train_y", "test_x", "test_y")


@dataclass(frozen=True)
class Dataset:
    """A data set of labelled uint8 images in IDX files.

    Contract: ``classes[i]`` is what label ``i`` (and logit ``i``) means; images are
    ``shape`` = (channels, height, width); a network trains on ``(pixels / 255 - mean) / std``
    (one mean and std over all pixels, on [0, 1]). Frozen and hashable, so it can key caches.
    """

    name: str  # "MNIST": messages, metadata, study names (lowercased)
    description: str  # what the images show, e.g. "handwritten digits"
    classes: tuple[str, ...]  # class names, in label order
    shape: tuple[int, int, int]  # (channels, height, width) of one image
    mean: float  # the training images' pixel mean on [0, 1] (stated, or pixel_stats)
    std: float  # their pixel standard deviation on [0, 1]
    # The IDX files' names without ".gz", in ROLES order: train images, train labels, test
    # images, test labels. Either the name or the name + ".gz" is read.
    files: tuple[str, str, str, str]
    # Where under a --data-dir the four files may be: the folder itself, then these.
    subdirs: tuple[str, ...] = ()
    package_dir: str | None = None  # its shipped copy: DATASETS_DIR / package_dir, or None
    torchvision: str | None = None  # the torchvision.datasets class that can download it
    # The content hash of the canonical training images and labels, as
    # nas.training.data's fingerprint() computes it (decompressed bytes, so .gz and raw agree):
    # says whether a copy is the real thing. None: not known.
    sha256: str | None = None
    class_noun: str = "class"  # what one class is called in texts ("digit")
    # Where a system package installs it (read when no --data-dir is given and nothing
    # ships inside nas), e.g. Debian's dataset-fashion-mnist: /usr/share/datasets/fashion-mnist.
    system_dir: str | None = None
    # Whether a left-right mirror image is still of the same class: the training default for
    # horizontal flips (clothing yes; digits never: a mirrored 2 is no digit, 3 and E differ).
    hflip: bool = False
    # What the pixel values show, for the input contract ("0 = background, 255 = ink"); empty
    # for data nas knows nothing about (your own images may be dark on light, or colour).
    pixels: str = ""

    def __post_init__(self) -> None:
        if len(self.classes) < 2 or len(self.shape) != 3 or min(self.shape) < 1:
            raise DataError(f"data set {self.name!r}: needs at least 2 classes and a "
                            f"(channels, height, width) shape, got {len(self.classes)} and "
                            f"{self.shape}")
        if not self.std > 0:
            raise DataError(f"data set {self.name!r}: std must be positive, got {self.std}")

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of one image."""
        return self.shape[1], self.shape[2]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def file_names(self) -> dict[str, str]:
        """The files by role (``train_x``, ``train_y``, ``test_x``, ``test_y``)."""
        return dict(zip(ROLES, self.files))

    @property
    def shipped_dir(self) -> Path | None:
        """The folder of the copy that ships inside the package, or None if none ships."""
        return DATASETS_DIR / self.package_dir if self.package_dir is not None else None

    @property
    def default_dir(self) -> Path | None:
        """Where it is read from without a --data-dir: the shipped copy, else the system
        package's folder, else None (a --data-dir is needed)."""
        if self.shipped_dir is not None:
            return self.shipped_dir
        return Path(self.system_dir) if self.system_dir is not None else None

    @property
    def slug(self) -> str:
        """The name as study names start with it: lowercased (``mnist``)."""
        return self.name.lower()

    def normalisation(self) -> str:
        """The normalisation as a formula, in the texts that state the input contract."""
        return f"(pixels / 255 - {self.mean}) / {self.std}"

    def title(self) -> str:
        """One line saying what the images are: ``MNIST (handwritten digits, 28x28 grey)``."""
        c, h, w = self.shape
        colour = "grey" if c == 1 else f"{c} channels"
        return f"{self.name} ({self.description}, {h}x{w} {colour})"

    def classes_text(self) -> str:
        """What the logits mean: ``10: digits 0-9, logit i is digit i`` when the class names
        are the labels themselves, else the names in order."""
        n, noun = self.num_classes, self.class_noun
        if self.classes == tuple(str(i) for i in range(n)):
            return f"{n}: {noun}s 0-{n - 1}, logit i is {noun} i"
        return f"{n}: logit i is {noun} i of " + ", ".join(
            f"{i} {c}" for i, c in enumerate(self.classes))

    def with_stats(self, x: torch.Tensor, digits: int = 4) -> Dataset:
        """This descriptor with ``mean`` and ``std`` computed from the training images ``x``
        (:func:`pixel_stats`, rounded to ``digits``)."""
        mean, std = pixel_stats(x)
        return replace(self, mean=round(mean, digits), std=round(std, digits))


def pixel_stats(x: torch.Tensor) -> tuple[float, float]:
    """The mean and (population) standard deviation of the uint8 pixels ``x``, any shape, on
    [0, 1]: what a descriptor's ``mean`` and ``std`` state. Exact up to float64 rounding, from a
    256-bin histogram, so 47 million pixels cost no float copy."""
    import torch

    if x.dtype != torch.uint8 or x.numel() == 0:
        raise DataError(f"pixel statistics need non-empty uint8 pixels, got {x.dtype} "
                        f"with {x.numel()} elements")
    counts = torch.bincount(x.flatten().cpu(), minlength=256).double()
    value = torch.arange(256, dtype=torch.float64) / 255.0
    n = counts.sum()
    mean = (counts * value).sum() / n
    var = (counts * (value - mean) ** 2).sum() / n  # about the mean: no cancellation
    return float(mean), float(var.sqrt())


MNIST = Dataset(
    name="MNIST", description="handwritten digits", classes=tuple(str(i) for i in range(10)),
    shape=(1, 28, 28),
    # MNIST's conventional constants: the 60,000 training images' pixel_stats, 0.13066 and
    # 0.30811, to 4 decimals (tests/test_dataset.py checks them against the shipped copy).
    mean=0.1307, std=0.3081,
    files=("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
           "t10k-labels-idx1-ubyte"),
    subdirs=("MNIST/raw", "raw"),  # torchvision's layout under its root, and a bare raw/
    package_dir="mnist", torchvision="MNIST",
    sha256="d18cfd466eb143ac1097fde604dba9eec4116885869d04cc648b510949f9e88c",
    class_noun="digit", pixels="0 = background, 255 = ink")


# Zalando's Fashion-MNIST (https://github.com/zalandoresearch/fashion-mnist, MIT licence): 28x28
# grey article images, MNIST's layout and file names. nas does not ship it: Debian's package
# dataset-fashion-mnist (0.0~git20200523.55506a9-1) installs the four .gz files in
# /usr/share/datasets/fashion-mnist/, read by default; --data-dir reads another copy.
FASHION_MNIST = Dataset(
    name="Fashion-MNIST", description="Zalando article images",
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
             "Sneaker", "Bag", "Ankle boot"),  # label order, from the data set's README
    shape=(1, 28, 28),
    # pixel_stats of the 60,000 training images of the Debian copy: 0.28604 and 0.35302.
    mean=0.286, std=0.353,
    files=MNIST.files, subdirs=("FashionMNIST/raw", "raw"),  # torchvision's layout, a raw/
    torchvision="FashionMNIST",
    sha256="1f243a60b4b748a44c48b9a6f6907be2a08bee3e4e226f0e86fbde8e147b745a",
    class_noun="article", system_dir="/usr/share/datasets/fashion-mnist",
    hflip=True,  # a mirrored shoe is a shoe: left-right flips on by default
    pixels="0 = black background, 255 = white")  # the article light on black, as MNIST's ink

# The names --dataset takes (anything else is a path: a folder of IDX files or a .npz).
NAMED = {"mnist": MNIST, "fashion-mnist": FASHION_MNIST}
