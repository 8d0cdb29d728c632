"""Bad input: one clear line on stderr, a non-zero exit, no traceback, nothing lost."""

from __future__ import annotations

import gzip
import subprocess
import sys

import optuna
import pytest

from nas.cli import export, replay, search
from nas.cli.common import run
from nas.study import selection
from tests.helpers import write_mnist

MODULES = {"search": search.main, "export": export.main, "replay": replay.main}


def call(capsys, module: str, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        run(MODULES[module], f"nas.{module}", list(argv))
    err = capsys.readouterr().err
    return e.value.code, err


def assert_one_line_error(code: int, err: str, fragment: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "error" in lines[0] and fragment in lines[0], err
    assert "Traceback" not in err


def snapshot(study: optuna.Study) -> list:
    return [(t.number, t.state, t.value, t.params, t.user_attrs, t.intermediate_values)
            for t in study.get_trials()] + [study.user_attrs]


@pytest.fixture(scope="module")
def study_db(tmp_path_factory, tiny_mnist_dir):
    """A small study with trials in several states, and its file's bytes to check nothing
    is lost."""
    from nas.cli.search import search as run_search
    from tests.helpers import tiny_config

    tmp = tmp_path_factory.mktemp("study")
    cfg = tiny_config(tmp, tiny_mnist_dir, trials=2, max_params=12_000)
    run_search(cfg, progress=False)
    return cfg.storage, tmp / "nas.db"


@pytest.mark.parametrize("argv, fragment", [
    (["--trials", "0"], "--trials: must be a positive integer, got '0'"),
    (["--trials", "-3"], "got '-3'"),
    (["--trials", "abc"], "got 'abc'"),
    (["--sampler", "grid"], "invalid choice: 'grid'"),
    (["--pruner", "asha"], "invalid choice: 'asha'"),
    (["--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["--epochs", "30"], "--allow-long"),
    (["--device", "tpu"], "invalid choice"),
    (["--lr", "-1"], "--lr: must be a positive number"),
    (["--study-name", ""], "--study-name must not be empty"),
])
def test_search_usage_errors(capsys, argv, fragment):
    assert_one_line_error(*call(capsys, "search", *argv), fragment)


def test_search_validation_larger_than_the_data(capsys, tmp_path, tiny_mnist_dir):
    code, err = call(capsys, "search", "--val-size", "600", "--storage",
                     f"sqlite:///{tmp_path / 'a.db'}", "--data-dir", str(tiny_mnist_dir))
    assert_one_line_error(code, err, "--val-size 600 leaves no training images")


def test_search_budget_below_any_network(capsys, tmp_path, tiny_mnist_dir):
    code, err = call(capsys, "search", "--max-params", "100", "--storage",
                     f"sqlite:///{tmp_path / 'a.db'}", "--data-dir", str(tiny_mnist_dir))
    assert_one_line_error(code, err, "below the smallest network in the search space")


@pytest.mark.parametrize("storage, fragment", [
    ("foo://bar", "unknown scheme 'foo'"),
    ("sqlite:////no/such/dir/nas.db", "does not exist"),
])
def test_bad_storage(capsys, storage, fragment):
    for module in MODULES:
        assert_one_line_error(*call(capsys, module, "--storage", storage), fragment)


def test_missing_and_truncated_data(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("nas.training.data._download", lambda *args: False)  # as offline
    db = f"sqlite:///{tmp_path / 'a.db'}"
    code, err = call(capsys, "search", "--storage", db, "--data-dir", str(tmp_path / "none"))
    assert_one_line_error(code, err, "MNIST not found")
    write_mnist(tmp_path / "cut", 100, 20)
    f = tmp_path / "cut" / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    f.write_bytes(gzip.compress(gzip.decompress(f.read_bytes())[:-500]))
    code, err = call(capsys, "search", "--storage", db, "--data-dir", str(tmp_path / "cut"))
    assert_one_line_error(code, err, "truncated")


def test_export_and_replay_errors_leave_the_study_intact(capsys, study_db, tmp_path):
    url, path = study_db
    study = optuna.load_study(study_name="t", storage=url)
    before = snapshot(study)
    not_complete = [t.number for t in study.get_trials()
                    if t.state != optuna.trial.TrialState.COMPLETE]
    for module in ("export", "replay"):
        assert_one_line_error(*call(capsys, module, "--storage", url, "--study-name", "nope"),
                              "study 'nope' does not exist")
        assert_one_line_error(*call(capsys, module, "--storage", url, "--trial", "999"),
                              "has no trial 999")
        if not_complete:
            assert_one_line_error(*call(capsys, module, "--storage", url, "--trial",
                                        str(not_complete[0])), "did not complete")
        assert_one_line_error(*call(capsys, module, "--storage",
                                    f"sqlite:///{tmp_path / 'missing.db'}"), "no such file")
    assert not (tmp_path / "missing.db").exists()
    assert snapshot(optuna.load_study(study_name="t", storage=url)) == before


def test_malformed_spec_in_a_study_is_one_line(capsys, study_db, tmp_path):
    url, path = study_db
    copy = tmp_path / "copy.db"
    import sqlite3

    with sqlite3.connect(path) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)  # the file alone may lack what is still in its write-ahead log
    con = sqlite3.connect(copy)
    con.execute("UPDATE trial_user_attributes SET value_json = ? WHERE key = 'spec'",
                ['"{\\"stem\\": {\\"out_channels\\": -1}, \\"blocks\\": []}"'])
    con.commit()
    con.close()
    code, err = call(capsys, "export", "--storage", f"sqlite:///{copy}", "--out",
                     str(tmp_path / "e"))
    assert_one_line_error(code, err, "a spec needs at least one block")


def test_real_entry_point_prints_one_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "nas.search", "--trials", "abc"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip() == ("python -m nas.search: error: argument --trials: must be a "
                                "positive integer, got 'abc'")
    assert not (tmp_path / "nas.db").exists()


def test_replay_a_spec_file_without_a_study(capsys, tmp_path, tiny_mnist_dir):
    from nas.arch.zoo import pool_bn_19k

    f = tmp_path / "arch.json"
    f.write_text(pool_bn_19k().to_json())
    with pytest.raises(SystemExit) as e:
        run(replay.main, "nas.replay", ["--spec", str(f), "--epochs", "1", "--seeds", "2",
                                        "--data-dir", str(tiny_mnist_dir), "--out",
                                        str(tmp_path / "r"), "--no-progress"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert "arch (19,378 parameters, 1 epochs, 2 seeds" in out
    assert (tmp_path / "r" / "seed1.pt").is_file() and (tmp_path / "r" / "report.md").is_file()
    assert_one_line_error(*call(capsys, "replay", "--spec", str(tmp_path / "nope.json")),
                          "neither a file nor a reference network")
    f.write_text('{"stem": ')
    assert_one_line_error(*call(capsys, "replay", "--spec", str(f)), "not valid JSON")


def test_search_batch_larger_than_the_data(capsys, tmp_path, tiny_mnist_dir):
    code, err = call(capsys, "search", "--batch-size", "1000000", "--train-space", "fixed",
                     "--storage",
                     f"sqlite:///{tmp_path / 'a.db'}", "--data-dir", str(tiny_mnist_dir),
                     "--val-size", "200")
    assert_one_line_error(code, err, "--batch-size 1,000,000 is larger than the 400 training")


def test_output_paths_that_cannot_be_directories(capsys, study_db, tmp_path, tiny_mnist_dir):
    url, _ = study_db
    (tmp_path / "file").write_text("x")
    assert_one_line_error(*call(capsys, "export", "--storage", url, "--out",
                                str(tmp_path / "file" / "sub")), "--out")
    assert_one_line_error(*call(capsys, "replay", "--spec", "bn_dropout_16k", "--epochs", "1",
                                "--seeds", "1", "--data-dir", str(tiny_mnist_dir), "--out",
                                str(tmp_path / "file")), "exists and is not a directory")


def test_in_memory_storage_is_refused(capsys):
    assert_one_line_error(*call(capsys, "search", "--storage", "sqlite://"), "in-memory")


def test_a_diverging_replay_is_one_line(capsys, tmp_path, tiny_mnist_dir, monkeypatch):
    from nas.training.trainer import TrainingDiverged

    def diverge(*a, **k):
        raise TrainingDiverged("training loss is nan at epoch 1")

    monkeypatch.setattr(replay, "train", diverge)
    assert_one_line_error(*call(capsys, "replay", "--spec", "bn_dropout_16k", "--epochs", "1",
                                "--seeds", "1", "--data-dir", str(tiny_mnist_dir), "--out",
                                str(tmp_path / "r"), "--no-progress"),
                          "seed 0 diverged (training loss is nan at epoch 1)")


def test_replay_prints_its_result_before_recording_it(capsys, study_db, tmp_path,
                                                      tiny_mnist_dir, monkeypatch):
    from sqlalchemy.exc import OperationalError

    url, _ = study_db

    def disk_full(*a, **k):
        raise OperationalError("UPDATE ...", {}, Exception("database or disk is full"))

    monkeypatch.setattr(replay.uploads, "write_replay", disk_full)
    with pytest.raises(SystemExit) as e:
        run(replay.main, "nas.replay", ["--storage", url, "--epochs", "1", "--seeds", "1",
                                        "--data-dir", str(tiny_mnist_dir), "--out",
                                        str(tmp_path / "r"), "--no-progress"])
    out, err = capsys.readouterr()
    assert e.value.code == 2 and "final-epoch test accuracy" in out
    assert_one_line_error(2, err, "the result above was not recorded on the study: storage "
                                  f"{url}: database or disk is full")


def test_export_copies_only_checkpoints_nas_wrote(capsys, study_db, tmp_path):
    """A study's replay record names a path; export copies it only if it is a checkpoint of
    that very architecture."""
    import sqlite3

    _, path = study_db
    with sqlite3.connect(path) as src, sqlite3.connect(tmp_path / "copy.db") as dst:
        src.backup(dst)
    url = f"sqlite:///{tmp_path / 'copy.db'}"
    study = optuna.load_study(study_name="t", storage=url)
    best = selection.select_trial(study, None)
    secret = tmp_path / "secret.txt"
    secret.write_text("not weights")
    study.set_user_attr(f"replay:trial-{best.number}", {
        "seeds": [0], "test_acc_final": [0.5], "mean": 0.5, "std": 0.0,
        "challenge_holds": False, "weights": [str(secret)], "device": "cpu", "date": "today",
        "train_config": {}})
    with pytest.raises(SystemExit) as e:
        run(export.main, "nas.export", ["--storage", url, "--out", str(tmp_path / "e")])
    assert e.value.code == 0
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == ["arch.json", "model.py",
                                                                  "recipe.json", "summary.md"]
