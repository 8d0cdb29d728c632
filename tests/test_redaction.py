"""A storage password is never printed nor stored: error lines, the summary's commands and the
study's ``last_command`` show ``postgresql://user:***@host/db`` (nas.study.storage.redact)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import optuna
import pytest

from nas.study.config import dashboard_command, shell_storage, storage_note
from nas.study.storage import StorageError, faults, load_study, open_storage, redact

PW = "S3cret-pw_9"  # no shell or URL metacharacters: it would show unescaped if leaked


def with_password(url: str) -> str:
    head, tail = url.split("://", 1)
    user, rest = tail.split("@", 1)
    return f"{head}://{user}:{PW}@{rest}"


def test_redact_hides_every_password_and_keeps_the_rest():
    assert redact(f"postgresql://nas:{PW}@db.example:5432/nas") == \
        "postgresql://nas:***@db.example:5432/nas"
    assert redact(f"--storage=mysql+pymysql://u:{PW}@h/d?charset=utf8") == \
        "--storage=mysql+pymysql://u:***@h/d?charset=utf8"
    assert redact(f"a postgresql://u:{PW}@h/d and postgresql://v:x%40y@g/e") == \
        "a postgresql://u:***@h/d and postgresql://v:***@g/e"
    for plain in ("sqlite:///nas.db", "postgresql://u@h/d", "journal:nas.log", "x:y"):
        assert redact(plain) == plain
    # A driver's message that quotes the password on its own is scrubbed too.
    assert redact(f"auth failed for {PW}", f"postgresql://u:{PW}@h/d") == "auth failed for ***"


def test_printed_commands_never_hold_the_password_and_stay_pastable():
    url = f"postgresql://u:{PW}@h/d"
    assert shell_storage(url) == '"$NAS_STORAGE"' and PW not in dashboard_command(url)
    assert "postgresql://u:***@h/d" in storage_note(url)
    assert storage_note("sqlite:///nas.db") is None
    assert shlex.split(shell_storage("sqlite:///my dir/$x.db")) == ["sqlite:///my dir/$x.db"]


def test_a_storage_fault_line_hides_the_password(postgres):
    url = with_password(postgres.url("nas"))
    with pytest.raises(StorageError) as e:
        load_study(open_storage(url), "missing", url)
    assert PW not in str(e.value) and "u" in str(e.value)
    bad_port = url.rsplit(":", 1)[0] + ":1/nas"  # nothing listens there
    with pytest.raises(StorageError) as e:
        with faults(bad_port):
            optuna.get_all_study_names(open_storage(bad_port))
    assert PW not in str(e.value) and ":***@" in str(e.value)


def test_a_search_prints_and_stores_no_password(postgres, tmp_path, tiny_mnist_dir):
    url = with_password(postgres.url("nas"))
    search = [sys.executable, "-m", "nas.search", "--storage", url, "--study-name", "r",
              "--trials", "1", "--epochs", "1", "--proxy-epochs", "0", "--finalists", "0",
              "--val-size", "100", "--batch-size", "100", "--train-space", "fixed",
              "--data-dir", str(tiny_mnist_dir),
              "--device", "cpu", "--no-progress", "--artifact-dir", str(tmp_path / "a")]
    runs = [subprocess.run(search, capture_output=True, text=True, timeout=300, cwd=tmp_path)]
    assert runs[0].returncode == 0, runs[0].stderr
    summary = runs[0].stdout
    assert '--storage "$NAS_STORAGE"' in summary and "NAS_STORAGE to postgresql://" in summary
    # Errors naming the storage: another study's settings, a study that is not there.
    runs.append(subprocess.run(search + ["--max-params", "15000"],
                               capture_output=True, text=True, timeout=300, cwd=tmp_path))
    runs.append(subprocess.run([sys.executable, "-m", "nas.export", "--storage", url,
                                "--study-name", "nope", "--out", str(tmp_path / "e")],
                               capture_output=True, text=True, timeout=300, cwd=tmp_path))
    assert [r.returncode for r in runs[1:]] == [2, 2]
    assert ":***@" in runs[1].stderr and ":***@" in runs[2].stderr
    for r in runs:
        assert PW not in r.stdout + r.stderr
    study = optuna.load_study(study_name="r", storage=open_storage(url))
    storage = study._storage  # Optuna 5 has no public reader of a study's system attributes
    stored = [study.user_attrs, storage.get_study_system_attrs(study._study_id)] + \
        [a for t in study.get_trials() for a in (t.user_attrs, t.system_attrs)]
    text = json.dumps(stored, default=str)
    assert PW not in text
    assert ":***@" in json.dumps(study.user_attrs["last_command"])  # redacted, not dropped
