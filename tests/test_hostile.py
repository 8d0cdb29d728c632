"""A study file from anywhere is untrusted input: hostile studies (issue 15).

One real small study (a 2-trial search, a 1-seed 1-epoch replay of its best trial, so that a
replay record and its artifacts exist) is built once; each case copies it, tampers with the
copy's SQLite rows (or its artifact folder, or the data), runs the real CLI and checks what a
user must be able to rely on: one line ``python -m nas.X: error: ...`` naming what is wrong,
a non-zero exit, no traceback, nothing written anywhere (the whole case folder, a sentinel
target inside it included, is compared file by file before and after) and the study file
byte-identical. Most cases call ``nas.cli.common.run`` in-process; two run ``python -m`` as real
subprocesses.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nas.cli import export, replay
from nas.cli.common import run
from nas.study.runner import search
from nas.training.data import FILES, write_idx
from tests.helpers import synthetic_digits, tiny_config, write_mnist

EXPORT, REPLAY = "python -m nas.export", "python -m nas.replay"
MAINS = {EXPORT: export.main, REPLAY: replay.main}
REPO = Path(__file__).resolve().parent.parent


# -- the study, and copies of it ---------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_mnist_dir) -> Path:
    """``study/nas.db`` + ``study/nas.db.artifacts``: a search of 2 trials and a replay of the
    best one (1 seed, 1 epoch), whose weights ``rep/seed0.pt`` are kept as a real checkpoint
    to plant elsewhere. The database is out of WAL mode so that a copy is one file."""
    root = tmp_path_factory.mktemp("hostile")
    (root / "proj").mkdir()
    cfg = tiny_config(root / "proj", tiny_mnist_dir, trials=2, max_params=12_000)
    search(cfg, progress=False)
    with pytest.raises(SystemExit) as e:
        run(replay.main, REPLAY, ["--storage", cfg.storage, "--epochs", "1", "--seeds", "1",
                                  "--precision", "fp32", "--data-dir", str(tiny_mnist_dir),
                                  "--out", str(root / "rep"), "--no-progress"])
    assert e.value.code == 0
    # A copy through SQLite's backup API (this process still holds the search's connections),
    # out of WAL mode, with its artifact folder: the study directory the cases copy.
    (root / "study").mkdir()
    src, dst = sqlite3.connect(root / "proj" / "nas.db"), sqlite3.connect(root / "study" / "nas.db")
    src.backup(dst)
    dst.execute("PRAGMA journal_mode=DELETE")
    src.close()
    dst.close()
    shutil.copytree(root / "proj" / "nas.db.artifacts", root / "study" / "nas.db.artifacts")
    assert sorted(p.name for p in (root / "study").iterdir()) == ["nas.db", "nas.db.artifacts"]
    return root


class Case:
    """One copy of the study in its own folder: ``proj/`` (database and artifacts), ``cwd/``
    (where the command runs), ``sentinel/`` (a folder a hostile study aims at) and ``data``."""

    def __init__(self, root: Path, built: Path, data: Path) -> None:
        self.root, self.data = root, data
        shutil.copytree(built / "study", root / "proj")
        shutil.copy(built / "rep" / "seed0.pt", root / "checkpoint.pt")  # a real one, outside
        (root / "cwd").mkdir()
        (root / "sentinel").mkdir()
        (root / "sentinel" / "keep.txt").write_text("untouched\n")
        self.db = root / "proj" / "nas.db"
        self.url = f"sqlite:///{self.db}"
        self.artifacts = root / "proj" / "nas.db.artifacts"

    # tampering -------------------------------------------------------------------------------
    def sql(self, query: str, *args: object) -> list[tuple]:
        con = sqlite3.connect(self.db)
        try:
            rows = con.execute(query, args).fetchall()
            con.commit()
            return rows
        finally:
            con.close()

    def best(self) -> int:
        """The number of the replayed trial (the one export and replay pick by default)."""
        (key,) = [k for (k,) in self.sql("SELECT key FROM study_user_attributes")
                  if k.startswith("replay:trial-")]
        return int(key.split("-")[-1])

    def trial_attr(self, key: str, value: object, number: int | None = None,
                   raw: str | None = None) -> None:
        number = self.best() if number is None else number
        (tid,) = self.sql("SELECT trial_id FROM trials WHERE number = ?", number)[0]
        self.sql("DELETE FROM trial_user_attributes WHERE trial_id = ? AND key = ?", tid, key)
        self.sql("INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (?, ?, ?)",
                 tid, key, raw if raw is not None else json.dumps(value))

    def get_trial_attr(self, key: str) -> object:
        (tid,) = self.sql("SELECT trial_id FROM trials WHERE number = ?", self.best())[0]
        (v,) = self.sql("SELECT value_json FROM trial_user_attributes WHERE trial_id = ? AND "
                        "key = ?", tid, key)[0]
        return json.loads(v)

    def replay_record(self) -> dict:
        (v,) = self.sql("SELECT value_json FROM study_user_attributes WHERE key = ?",
                        f"replay:trial-{self.best()}")[0]
        return json.loads(v)

    def set_replay_record(self, rec: object) -> None:
        self.sql("UPDATE study_user_attributes SET value_json = ? WHERE key = ?", json.dumps(rec),
                 f"replay:trial-{self.best()}")

    # watching --------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, str]:
        """Every path under the case folder with its content hash (or what it is)."""
        out = {}
        for dirpath, dirs, files in os.walk(self.root):
            for name in dirs + files:
                p = Path(dirpath) / name
                rel = str(p.relative_to(self.root))
                if p.is_symlink():
                    out[rel] = "link:" + os.readlink(p)
                elif p.is_dir():
                    out[rel] = "dir"
                else:
                    out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        return out

    def cli(self, prog: str, *argv: str, capsys) -> tuple[int, str, str]:
        """Run the real entry point in-process, in ``cwd/``."""
        here = Path.cwd()
        os.chdir(self.root / "cwd")
        try:
            with pytest.raises(SystemExit) as e:
                run(MAINS[prog], prog, list(argv))
        finally:
            os.chdir(here)
        out = capsys.readouterr()
        return int(e.value.code or 0), out.out, out.err

    def export(self, *argv: str, capsys) -> tuple[int, str, str]:
        return self.cli(EXPORT, "--storage", self.url, "--out", str(self.root / "cwd" / "exp"),
                        *argv, capsys=capsys)

    def replay(self, *argv: str, data: Path | None = None, capsys) -> tuple[int, str, str]:
        return self.cli(REPLAY, "--storage", self.url, "--epochs", "1", "--seeds", "1",
                        "--precision", "fp32", "--no-progress", "--data-dir",
                        str(data or self.data), *argv, capsys=capsys)


@pytest.fixture()
def case(tmp_path, built, tiny_mnist_dir) -> Case:
    return Case(tmp_path, built, tiny_mnist_dir)


def refused(case: Case, before: dict[str, str], result: tuple[int, str, str], prog: str,
            *words: str) -> str:
    """Assert the command failed as a user error should, and changed nothing; return its line."""
    code, _, err = result
    lines = err.strip().splitlines()
    assert code != 0, err
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]
    assert case.snapshot() == before  # nothing written, the study byte-identical
    return lines[0]


# -- 1. writes outside where the user asked ----------------------------------------------------
def test_a_stored_study_name_never_becomes_a_path(case, capsys):
    """The stored name aims ``runs/replay-<name>-trial<N>`` at sentinel/ (three levels up):
    the replay writes only into one folder directly under cwd/runs/, its name a slug."""
    case.sql("UPDATE studies SET study_name = ?", "x/../../../sentinel/evil")
    before = case.snapshot()
    code, out, err = case.replay(capsys=capsys)
    assert code == 0, err
    after = case.snapshot()
    new = sorted(set(after) - set(before))
    outside = [p for p in new if not p.startswith("proj/nas.db.artifacts/")]  # the uploads
    folder = f"replay-x-..-..-..-sentinel-evil-trial{case.best()}"
    assert outside == sorted(["cwd/runs", f"cwd/runs/{folder}"] + [
        f"cwd/runs/{folder}/{f}" for f in ("seed0.pt", "report.json", "report.md",
                                           "model.onnx")]), outside
    assert [p for p in after if p.startswith("sentinel/")] == ["sentinel/keep.txt"]
    assert [p for p in before if after.get(p) != before[p]] == ["proj/nas.db"]  # the record


# -- 2. reads outside the artifact folder ------------------------------------------------------
def _weights_refused(case: Case, before: dict[str, str], capsys, *words: str) -> None:
    code, out, err = case.export(capsys=capsys)
    assert code == 0, err  # the architecture still exports; the weights are not read
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("note: the weights of trial") and \
        "were refused" in lines[0] and "not in" not in lines[0], err
    for w in words:
        assert w in lines[0], lines[0]
    assert [Path(f).name for f in out.split()] == ["arch.json", "model.py", "summary.md",
        "recipe.json"]
    after = case.snapshot()
    assert {p for p in after if p not in before} == {
        "cwd/exp", "cwd/exp/arch.json", "cwd/exp/model.py", "cwd/exp/summary.md",
        "cwd/exp/recipe.json"}
    assert all(after[p] == before[p] for p in before)


def test_a_0_1_record_naming_a_checkpoint_elsewhere_is_not_read(case, capsys):
    rec = case.replay_record()
    del rec["artifacts"]
    rec["weights"] = [str(case.root / "checkpoint.pt")]  # a real checkpoint of this very spec
    case.set_replay_record(rec)
    before = case.snapshot()
    _weights_refused(case, before, capsys, str(case.root / "checkpoint.pt"), "outside")


def test_a_0_1_record_inside_the_studys_folder_is_still_read(case, capsys):
    """The control: the same record, the checkpoint beside the database, is exported."""
    rec = case.replay_record()
    del rec["artifacts"]
    shutil.copy(case.root / "checkpoint.pt", case.root / "proj" / "seed0.pt")
    rec["weights"] = [str(case.root / "proj" / "seed0.pt")]
    case.set_replay_record(rec)
    code, out, err = case.export(capsys=capsys)
    assert code == 0 and err == "", err
    assert [Path(f).name for f in out.split()][-2:] == ["weights.pt", "model.onnx"]


def test_a_symlink_in_the_artifact_folder_is_not_followed_out_of_it(case, capsys):
    artifact = case.artifacts / case.replay_record()["artifacts"]["seed0.pt"]
    artifact.unlink()
    artifact.symlink_to(case.root / "checkpoint.pt")
    before = case.snapshot()
    _weights_refused(case, before, capsys, "link", "outside")


def test_an_artifact_with_the_specs_name_but_other_tensors_is_not_exported(case, capsys):
    """A checkpoint that names the trial's spec but holds tensors of other shapes would have
    crashed in load_state_dict: it is refused like any file that is not the trial's."""
    artifact = case.artifacts / case.replay_record()["artifacts"]["seed0.pt"]
    ckpt = torch.load(artifact, weights_only=True)
    ckpt["state_dict"] = {k: torch.zeros(3) for k in ckpt["state_dict"]}
    torch.save(ckpt, artifact)
    before = case.snapshot()
    _weights_refused(case, before, capsys, "not a checkpoint of this trial's spec")


# -- 3. garbage recorded with exit 0 -----------------------------------------------------------
@pytest.mark.parametrize("field, value, words", [
    ("epochs", -3, ("epochs", "from 1")),
    ("batch_size", -5, ("batch_size",)),
    ("batch_size", 0, ("batch_size",)),
    ("epochs", "abc", ("epochs", "'abc'")),
    ("precision", "evil", ("precision", "'evil'")),
    ("lr", float("nan"), ("lr",)),
    ("augment", "false", ("augment", "true or false")),
])
def test_an_invalid_train_config_is_refused_before_training(case, capsys, field, value, words):
    cfg = case.get_trial_attr("train_config")
    cfg[field] = value
    case.trial_attr("train_config", cfg)  # NaN as JSON's NaN, which Optuna reads back
    before = case.snapshot()
    line = refused(case, before, case.replay(capsys=capsys), REPLAY, "study 't'",
                   f"trial {case.best()}", "'train_config'", *words)
    assert "PASS" not in line


@pytest.mark.parametrize("change, words", [
    ({"input_size": 32}, ("training images are 1x28x28", "spec takes 1x32x32")),
    ({"in_channels": 3}, ("spec takes 3x28x28",)),
    ({"num_classes": 5}, ("labels run from 0 to 9", "5 classes")),
])
def test_a_spec_that_does_not_fit_the_data_is_refused_before_training(case, capsys, change,
                                                                     words):
    spec = json.loads(case.get_trial_attr("spec"))
    spec.update(change)
    case.trial_attr("spec", json.dumps(spec))
    before = case.snapshot()
    refused(case, before, case.replay(capsys=capsys), REPLAY, *words)


def _data(tmp: Path, n: int = 50, size: int = 28, label: int | None = None) -> Path:
    root = write_mnist(tmp)
    x, y = synthetic_digits(n, 2)
    if size != 28:
        x = torch.zeros(n, size, size, dtype=torch.uint8)
    if label is not None:
        y[0] = label
    raw = tmp / "MNIST" / "raw"
    write_idx(raw / (FILES["train_x"] + ".gz"), x)
    write_idx(raw / (FILES["train_y"] + ".gz"), y)
    return root


@pytest.mark.parametrize("kind, words", [
    ("32x32", ("train images are 32x32", "28x28")),
    ("14x14", ("train images are 14x14",)),
    ("label 12", ("train labels run up to 12",)),
    ("empty", ("hold no images",)),
])
def test_data_that_is_not_mnist_is_one_line(case, capsys, tmp_path_factory, kind, words):
    tmp = tmp_path_factory.mktemp("data")
    data = {"32x32": lambda: _data(tmp, size=32), "14x14": lambda: _data(tmp, size=14),
            "label 12": lambda: _data(tmp, label=12), "empty": lambda: _data(tmp, n=0)}[kind]()
    before = case.snapshot()
    refused(case, before, case.replay(data=data, capsys=capsys), REPLAY, *words)


# -- 4. bounds on spec size --------------------------------------------------------------------
def _big_spec(blocks: int = 1, channels: int = 8) -> str:
    conv = {"out_channels": channels, "padding": 1, "bn": True, "relu": True, "dropout": 0.0,
            "bias": True}
    return json.dumps({"version": 1, "stem": conv, "head": {"kind": "gap_linear", "bias": True},
                       "blocks": [{"convs": [conv], "transition": []}] * blocks,
                       "order": "conv-bn-relu", "in_channels": 1, "input_size": 28,
                       "num_classes": 10})


@pytest.mark.parametrize("spec, raw, words", [
    (_big_spec(blocks=10**5), None, ("characters of JSON",)),
    (_big_spec(blocks=33), None, ("blocks: 33 is more than the 32",)),
    (_big_spec(channels=5000), None, ("out_channels", "at most 4,096")),
    (_big_spec(blocks=8, channels=4096), None, ("parameters, more than",)),
    ("[" * 50_000 + "]" * 50_000, None, ("nested 50000 deep",)),
    (None, "123", ("'spec' must be JSON text, got int",)),
    ('{"blocks": 1' + "0" * 5000 + "}", None, ("'spec' is not a valid spec",)),
])
def test_an_oversized_or_malformed_spec_is_one_line(case, capsys, spec, raw, words):
    case.trial_attr("spec", spec, raw=raw)
    before = case.snapshot()
    refused(case, before, case.export(capsys=capsys), EXPORT, f"trial {case.best()}", *words)


def test_a_deeply_nested_spec_is_one_line_from_the_real_command(case):
    """The same, through ``python -m nas.export`` itself: no RecursionError."""
    case.trial_attr("spec", "[" * 200_000)
    before = case.snapshot()
    p = subprocess.run([sys.executable, "-m", "nas.export", "--storage", case.url, "--out",
                        str(case.root / "cwd" / "exp")], cwd=case.root / "cwd",
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    refused(case, before, (p.returncode, p.stdout, p.stderr), EXPORT, "spec")


# -- 5. tracebacks instead of one line ---------------------------------------------------------
@pytest.mark.parametrize("artifact_id", [".", "..", "../nas.db", "/etc/passwd", 7, ""])
def test_an_artifact_id_that_is_not_one_is_refused_not_blamed_on_out(case, capsys,
                                                                     artifact_id):
    rec = case.replay_record()
    rec["artifacts"]["seed0.pt"] = artifact_id
    case.set_replay_record(rec)
    before = case.snapshot()
    line = refused(case, before, case.export(capsys=capsys), EXPORT,
                   f"trial {case.best()}", "artifacts")
    assert "--out" not in line


@pytest.mark.parametrize("field, value", [
    ("seeds", "abc"), ("seeds", [-1]), ("test_acc_final", ["x"]), ("test_acc_final", [0.5, 0.5]),
    ("mean", None), ("weights", "seed0.pt"), ("weights", ["../seed0.pt"]), ("device", 3),
])
def test_a_bad_replay_record_is_one_line(case, capsys, field, value):
    rec = case.replay_record()
    rec[field] = value
    case.set_replay_record(rec)
    before = case.snapshot()
    refused(case, before, case.export(capsys=capsys), EXPORT, "study 't'",
            f"trial {case.best()}", f"replay:trial-{case.best()}", field)


def test_a_replay_record_that_is_not_a_mapping_is_one_line(case, capsys):
    case.set_replay_record([1, 2, 3])
    before = case.snapshot()
    refused(case, before, case.export(capsys=capsys), EXPORT, "must be a mapping")


@pytest.mark.parametrize("proc, words", [
    ({"host": "h", "hostname": "h", "pid": -1, "start": None}, ("pid",)),
    ({"host": "h", "hostname": "h", "pid": "1", "start": None}, ("pid",)),
    ({"pid": 1}, ("host",)),
    ("pid 1", ("mapping",)),
])
def test_a_bad_process_record_is_one_line(case, capsys, proc, words):
    """A trial left RUNNING whose ``process`` record is garbage: export of it asks whether its
    process died, and says which record is bad instead."""
    n = case.best()
    case.sql("UPDATE trials SET state = 'RUNNING' WHERE number = ?", n)
    case.trial_attr("process", proc)
    before = case.snapshot()
    refused(case, before, case.export("--trial", str(n), capsys=capsys), EXPORT,
            f"trial {n}", "'process'", *words)


@pytest.mark.parametrize("key, value, words", [
    ("val_acc", "high", ("'val_acc'",)),
    ("val_acc", [2.0], ("'val_acc'",)),
])
def test_a_bad_curve_is_one_line(case, capsys, key, value, words):
    case.trial_attr(key, value)
    before = case.snapshot()
    refused(case, before, case.export(capsys=capsys), EXPORT, *words)


def test_a_bad_budget_is_one_line(case, capsys):
    case.sql("UPDATE study_user_attributes SET value_json = ? WHERE key = 'max_params'", '"a"')
    before = case.snapshot()
    refused(case, before, case.export(capsys=capsys), EXPORT, "'max_params'")


def test_a_bad_train_config_is_one_line_from_the_real_command(case):
    cfg = case.get_trial_attr("train_config")
    cfg["epochs"] = -3
    case.trial_attr("train_config", cfg)
    before = case.snapshot()
    p = subprocess.run([sys.executable, "-m", "nas.replay", "--storage", case.url, "--seeds",
                        "1", "--no-progress", "--data-dir", str(case.data)],
                       cwd=case.root / "cwd", capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    refused(case, before, (p.returncode, p.stdout, p.stderr), REPLAY, "epochs", "-3")


# -- 6. messages that mislead ------------------------------------------------------------------
def test_a_fault_of_the_artifact_folder_is_not_blamed_on_the_storage(case, capsys,
                                                                     monkeypatch):
    from optuna.artifacts import FileSystemArtifactStore

    def full(self, artifact_id, body):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(FileSystemArtifactStore, "write", full)
    code, out, err = case.replay("--out", str(case.root / "cwd" / "rep"), capsys=capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"{REPLAY}: error: the result above was not recorded on the "
                               f"study: artifact folder {case.artifacts}: No space left"), err
    assert "storage" not in lines[0]
    assert "final-epoch test accuracy" in out  # the result was printed first, not lost
