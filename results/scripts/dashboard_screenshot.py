"""Screenshots of optuna-dashboard on a study with finalists, for the README (issue 20).

    python results/scripts/dashboard_screenshot.py docs/ [WORK]

Makes a small real study first (``python -m nas.search --quick`` on a slice of the shipped
MNIST: 6,000 training and 1,000 test images, so it takes a couple of minutes on a 2-core CPU),
serves it with optuna-dashboard on 127.0.0.1, and has headless Chromium save two pictures:
the study's page (its note: the finalist table, the pick) and one finalist trial (its label and
note heading, "finalist of #N, seed S"). The study is kept in WORK (default
/tmp/nas-dashboard-shot): run again, and the search only resumes (nothing left to train). What
they show is checked by tests/test_finalists.py
(labels, note headings, the finalist table); this script only takes the pictures. Needs the
``chromium`` binary (Debian's package).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna

from nas.study import record
from nas.training.data import load_mnist, write_idx


def slice_of_mnist(folder: Path, n_train: int = 6000, n_test: int = 1000) -> Path:
    m = load_mnist()
    folder.mkdir(parents=True, exist_ok=True)
    for name, t in (("train-images-idx3-ubyte.gz", m.train.x[:n_train]),
                    ("train-labels-idx1-ubyte.gz", m.train.y[:n_train]),
                    ("t10k-images-idx3-ubyte.gz", m.test.x[:n_test]),
                    ("t10k-labels-idx1-ubyte.gz", m.test.y[:n_test])):
        write_idx(folder / name, t)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shoot(url: str, path: Path, height: int = 1100) -> None:
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={path}", f"--window-size=1400,{height}",
                    "--virtual-time-budget=8000", url], check=True, capture_output=True,
                   timeout=120)


def main(out: Path, root: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    data = root / "mnist-slice"
    if not data.exists():
        slice_of_mnist(data)
    db = root / "nas.db"
    url = f"sqlite:///{db}"
    subprocess.run([sys.executable, "-m", "nas.search", "--quick", "--storage", url,
                    "--data-dir", str(data), "--val-size", "1000", "--no-progress"],
                   check=True)
    study = optuna.load_study(study_name=None, storage=url)
    finalist = next(t for t in study.trials if record.stage_of(t) == record.FINALIST)
    port = free_port()
    dashboard = Path(sys.executable).with_name("optuna-dashboard")  # the venv's own
    server = subprocess.Popen([str(dashboard), url, "--host", "127.0.0.1", "--port",
                               str(port), "--artifact-dir", f"{db}.artifacts"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}/dashboard"
        for _ in range(100):  # up in a second or two
            try:
                urllib.request.urlopen(base, timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        # The study note: the guide to its trials, the finalist table, the pick.
        shoot(f"{base}/studies/1/note", out / "dashboard-study.png", height=1300)
        shoot(f"{base}/studies/1/trials?numbers={finalist.number}",
              out / "dashboard-finalist.png")
    finally:
        server.terminate()
        server.wait(10)
    print(f"written: {out / 'dashboard-study.png'}, {out / 'dashboard-finalist.png'}")


if __name__ == "__main__":
    if shutil.which("chromium") is None:
        sys.exit("dashboard_screenshot.py: needs chromium (apt-get install chromium)")
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"),
         Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp/nas-dashboard-shot"))
