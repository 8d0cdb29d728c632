"""Storage behaviour, once against every backend we support (Optuna's StorageTestCase idea)."""

from __future__ import annotations

import optuna
import pytest

from nas.storage import StorageError, check_url, load_study, open_storage


@pytest.fixture(params=["sqlite", "journal"])
def url(request, tmp_path) -> str:
    return {"sqlite": f"sqlite:///{tmp_path / 'nas.db'}",
            "journal": f"journal:{tmp_path / 'nas.log'}"}[request.param]


def test_trials_and_attributes_survive_reopening(url):
    study = optuna.create_study(storage=open_storage(url), study_name="s", direction="maximize")
    study.set_user_attr("max_params", 20_000)
    trial = study.ask()
    trial.set_user_attr("spec", '{"a": 1}')
    trial.report(0.5, 1)
    study.tell(trial, 0.75)
    again = load_study(open_storage(url, create=False), None, url)
    assert again.study_name == "s" and again.user_attrs["max_params"] == 20_000
    (t,) = again.get_trials()
    assert t.value == 0.75 and t.user_attrs["spec"] == '{"a": 1}'
    assert t.intermediate_values == {1: 0.5}


def test_load_study_errors(url):
    storage = open_storage(url)
    with pytest.raises(StorageError, match="holds 0 studies"):
        load_study(storage, None, url)
    optuna.create_study(storage=storage, study_name="a")
    optuna.create_study(storage=storage, study_name="b")
    with pytest.raises(StorageError, match="holds 2 studies"):
        load_study(storage, None, url)
    with pytest.raises(StorageError, match="'c' does not exist .* a, b"):
        load_study(storage, "c", url)
    assert load_study(storage, "b", url).study_name == "b"


def test_missing_file_is_not_created_when_reading(tmp_path):
    for url in (f"sqlite:///{tmp_path / 'x.db'}", f"journal:{tmp_path / 'x.log'}"):
        with pytest.raises(StorageError, match="no such file"):
            open_storage(url, create=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad, message", [
    ("nosuchdb://x/y", "unknown scheme"),
    ("not a url", "not a URL"),
    ("sqlite:////no/such/dir/nas.db", "does not exist"),
    ("journal:/no/such/dir/nas.log", "does not exist"),
])
def test_bad_urls(bad, message):
    with pytest.raises(StorageError, match=message):
        check_url(bad)


def test_sqlite_uses_write_ahead_logging(tmp_path):
    import sqlite3

    open_storage(f"sqlite:///{tmp_path / 'w.db'}")
    mode = sqlite3.connect(tmp_path / "w.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path):
    f = tmp_path / "notes.db"
    f.write_text("precious notes\n" * 100)
    with pytest.raises(StorageError):
        open_storage(f"sqlite:///{f}")
    assert f.read_text() == "precious notes\n" * 100
