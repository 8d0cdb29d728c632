"""What every entry point shares: argument types, one-line errors, exit codes."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from nas.errors import UserError, WorkerDied
from nas.training.dataset import MNIST, Dataset


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``prog: error: ...``) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def describe(doc: str | None) -> str:
    """A module docstring's first line, as --help's description."""
    return (doc or "").splitlines()[0].replace("``", "")


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def _int_at_least(low: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = low - 1
        if v < low:
            raise argparse.ArgumentTypeError(f"must be a {what} integer, got {text!r}")
        return v

    return parse


def add_study_args(p: argparse.ArgumentParser) -> argparse._MutuallyExclusiveGroup:
    """``--storage``, ``--study-name`` and ``--trial``, as export and replay take them; returns
    the group ``--trial`` is in, for the other ways of naming a trial (``--max-params``)."""
    p.add_argument("--storage", default="sqlite:///nas.db",
                   help="the study's storage: SQLAlchemy URL or journal:PATH "
                        "(default %(default)s)")
    p.add_argument("--study-name", default=None, help="default: the storage's only study")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--trial", type=nonneg_int, default=None, help="default: the best trial")
    return which


def make_dir(path: Path, flag: str = "--out") -> Path:
    """Create the output directory ``path`` (and its parents); a path that cannot be one is a
    UserError naming the flag."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{flag} {path}: {e.strerror or e}") from None
    return path


# Help lines several entry points share, so that they say the same thing.
ARTIFACT_DIR_HELP = ("folder of the study's Optuna artifacts (each trial's arch.json and layer "
                     "table, replay weights, ONNX, reports) (default: beside the database: "
                     "nas.db.artifacts/ for sqlite:///nas.db, nas.log.artifacts/ for "
                     "journal:nas.log; ./nas-artifacts for server databases)")


def data_dir_help(dataset: Dataset = MNIST) -> str:
    """--data-dir's help: which files, where under the folder, and the shipped default."""
    places = ["directly", *(f"under {s}/" for s in dataset.subdirs)]
    where = places[0] if len(places) == 1 else ", ".join(places[:-1]) + " or " + places[-1]
    return (f"folder holding the four {dataset.name} IDX files ({', '.join(dataset.files)}; "
            f"gzipped or not), {where} (default: the copy that ships with nas, %(default)s)")


DATA_DIR_HELP = data_dir_help()
# Where --dataset NAME is read from: the name decides the default folder.
NAMED_DATA_DIR_HELP = ("folder holding the named --dataset's four IDX files (e.g. "
                       f"{', '.join(MNIST.files)}; gzipped or not), directly, under "
                       "MNIST/raw/ (FashionMNIST/raw/ for fashion-mnist) or raw/ (default: "
                       "mnist's copy that ships with nas, fashion-mnist's "
                       "/usr/share/datasets/fashion-mnist/; not with a --dataset PATH)")

DATASET_HELP = ("the data: a name (mnist, fashion-mnist: read from the Debian package "
                "dataset-fashion-mnist's /usr/share/datasets/fashion-mnist/ or --data-dir), "
                "a folder of the four IDX files under MNIST's names, or a .npz with x_train, "
                "y_train, x_test, y_test (uint8 images N x H x W or N x H x W x C, integer "
                "labels) and optionally classes (default %(default)s)")


def resolve_dataset(dataset: str, data_dir: str | None) -> tuple[str, str | None]:
    """``--dataset`` and ``--data-dir`` as a search records them: a name lowercased with its
    folder (``--data-dir``, else the name's default), or a path made absolute (so the study
    finds it again from anywhere) with no folder. Raises UserError for a path with a
    ``--data-dir``."""
    from nas.training.sources import default_data_dir, is_name, names

    if is_name(dataset):
        return dataset.strip().lower(), data_dir if data_dir is not None else \
            default_data_dir(dataset)
    if data_dir is not None:
        raise UserError(f"--data-dir goes with a data set name ({names()}); --dataset "
                        f"{dataset} names the files itself")
    return str(Path(dataset).resolve()), None

DEVICE_HELP = "auto: cuda when available, else cpu (default %(default)s)"

positive_int = _int_at_least(1, "positive")
nonneg_int = _int_at_least(0, "non-negative")


def run(main: Callable[[Sequence[str] | None], int], prog: str,
        argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``main(argv)`` and exit with its status. User errors and storage faults become one
    line and exit 2; a dead worker one line and exit 1; Ctrl-C exits 130 and SIGTERM 143,
    after one line (what was stored stays stored)."""
    from nas.study.storage import quiet_storage_faults_in_threads  # Optuna: only when run

    quiet_storage_faults_in_threads()  # the main thread says it in one line
    try:
        code = main(argv)
    except UserError as e:  # every layer's own (SpecError, StorageError, ...): nas.errors
        print(f"{prog}: error: {e}", file=sys.stderr)
        code = 2
    except WorkerDied as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"{prog}: interrupted by {signal.Signals(signum).name}; what was stored stays "
              f"stored, run the same command to go on", file=sys.stderr)
        code = 128 + signum
    sys.exit(code)
