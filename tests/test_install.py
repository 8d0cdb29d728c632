"""A non-editable install trains on MNIST without the network: the data travels in the wheel.

The real path a user takes, minus the dependencies (torch is big and already here): build the
wheel from a copy of the sources, ``pip install`` it (not editable) into a folder of its own,
and run ``python -m nas.search`` from an empty directory with only that folder on the path.
Takes well under a minute; fails if the wheel lacks the data files.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import optuna
import pytest

from nas.training.dataset import MNIST

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("nas/training/datasets/mnist/README.md",
           *(f"nas/training/datasets/mnist/{f}.gz" for f in MNIST.files))

pytestmark = pytest.mark.install

# Run in the child instead of ``python -m nas.search``: the same entry point, with torchvision's
# download made fatal, so the run proves the data was found, not fetched. (SystemExit passes
# through the loader's ``except Exception``.)
NO_DOWNLOAD = """
import runpy, sys
import torchvision.datasets

class NoDownload:
    def __init__(self, *args, **kwargs):
        raise SystemExit("nas tried to download MNIST")

torchvision.datasets.MNIST = NoDownload
import nas
print("nas from", nas.__file__)
sys.argv[0] = "nas.search"
runpy.run_module("nas.search", run_name="__main__")
"""


def pip(*args: str, cwd: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                       cwd=cwd, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``site``: nas installed from its wheel, non-editable, without its dependencies."""
    if importlib.util.find_spec("pip") is None or importlib.util.find_spec("setuptools") is None:
        pytest.skip("needs pip and setuptools in this interpreter (pip install -e '.[dev]')")
    tmp = tmp_path_factory.mktemp("install")
    # A copy of what the wheel is built from, so the build leaves nothing in the checkout.
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "nas", src / "nas", ignore=shutil.ignore_patterns("__pycache__"))
    # No build isolation and no index: the build uses this interpreter's setuptools, offline.
    pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp / "wheel"),
        str(src), cwd=tmp)
    (wheel,) = (tmp / "wheel").glob("nas-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert set(SHIPPED) <= names, f"the wheel lacks {sorted(set(SHIPPED) - names)}"
    site = tmp / "site"
    pip("install", "--no-deps", "--no-index", "--target", str(site), str(wheel), cwd=tmp)
    return site


def test_an_installed_wheel_searches_on_its_own_copy_of_mnist(installed, tmp_path):
    work = tmp_path / "empty"
    work.mkdir()
    db = f"sqlite:///{tmp_path / 'x.db'}"
    # Only the installed copy on the path: not the checkout, not the current directory's.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(installed)
    p = subprocess.run([sys.executable, "-c", NO_DOWNLOAD, "--trials", "2", "--epochs", "1",
                        "--proxy-subset", "300", "--val-size", "300", "--batch-size", "100",
                        "--train-space", "fixed",
                        "--finalists", "0", "--max-params", "12000", "--device", "cpu",
                        "--storage", db, "--no-progress"],
                       capture_output=True, text=True, cwd=work, env=env, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    shipped = installed / "nas" / "training" / "datasets" / "mnist"
    assert f"nas from {installed / 'nas' / '__init__.py'}" in p.stdout
    assert "study 'mnist-12000p-1e'" in p.stdout and "2 trained" in p.stdout
    # The study records where the data came from: the installed package's own copy, whole.
    study = optuna.load_study(study_name="mnist-12000p-1e", storage=db)
    recorded = study.user_attrs["dataset"]
    assert recorded["source"] == str(shipped) and recorded["name"] == "MNIST"
    assert recorded["train"] == 60_000 - 300
    assert sorted(os.listdir(work)) == []  # nothing downloaded or written where it ran
    assert sorted(os.listdir(shipped)) == sorted(Path(f).name for f in SHIPPED)
