"""Opening Optuna storages from a URL, checked first so that a typo is one clear line.

Supported:

* any SQLAlchemy URL Optuna's ``RDBStorage`` accepts (``sqlite:///nas.db``, ``postgresql://...``,
  ``mysql+pymysql://...``). SQLite files are switched to write-ahead logging and opened with a
  generous lock timeout, which is what lets several worker processes on one machine write to
  the same file without "database is locked" (tests/test_workers.py holds it to that). RDB
  storages get Optuna's heartbeat, so a trial whose process died is marked FAIL, not left RUNNING.
* ``journal:PATH``: Optuna's ``JournalStorage`` over a ``JournalFileBackend``, the backend Optuna
  recommends for processes on one machine (append-only log, file lock). optuna-dashboard opens
  the log file directly.
"""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

JOURNAL_PREFIX = "journal:"
SQLITE_TIMEOUT_S = 120
HEARTBEAT_S, GRACE_S = 30, 120


class StorageError(Exception):
    """A storage URL that cannot be opened, or a study/trial that is not there."""


def check_url(url: str) -> None:
    """Raise StorageError for a URL with an unknown scheme or a file in a missing directory."""
    if url.startswith(JOURNAL_PREFIX):
        _check_parent(Path(url[len(JOURNAL_PREFIX):]), url)
        return
    try:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        parsed = make_url(url)
        parsed.get_dialect()
    except NoSuchModuleError:  # a subclass of ArgumentError: first
        raise StorageError(f"storage {url!r} has an unknown scheme {url.split(':')[0]!r} "
                           f"(expected sqlite, postgresql, mysql or journal)") from None
    except (ArgumentError, ValueError):
        raise StorageError(f"storage {url!r} is not a URL (expected e.g. sqlite:///nas.db or "
                           f"journal:nas.log)") from None
    except ImportError as e:
        raise StorageError(f"storage {url!r} needs a database driver: {e}") from None
    file = _file_of(url)
    if file is not None:
        _check_parent(file, url)


def _check_parent(path: Path, url: str) -> None:
    if not path.name:
        raise StorageError(f"storage {url!r} names no file")
    if not path.parent.resolve().is_dir():
        raise StorageError(f"storage {url!r}: directory {str(path.parent)!r} does not exist")


def open_storage(url: str, create: bool = True) -> BaseStorage:
    """An Optuna storage for ``url`` (see the module docstring). Raises StorageError.

    With ``create`` False a file-backed storage must already exist (export and replay only
    read studies: they must not leave an empty database behind a typo).
    """
    check_url(url)
    file = _file_of(url)
    if not create and file is not None and not file.is_file():
        raise StorageError(f"storage {url!r}: no such file {str(file)!r}")
    if url.startswith(JOURNAL_PREFIX):
        return JournalStorage(JournalFileBackend(str(file)))
    engine_kwargs: dict[str, object] = {}
    if url.startswith("sqlite:"):
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
        _enable_wal(url)
    try:
        with warnings.catch_warnings():  # heartbeat is flagged experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S,
                              grace_period=GRACE_S)
    except Exception as e:  # noqa: BLE001 - SQLAlchemy raises many kinds; one line for all
        raise StorageError(f"cannot open storage {url!r}: {str(e).splitlines()[0]}") from None


def _file_of(url: str) -> Path | None:
    """The file behind a journal or SQLite URL; None for server databases and :memory:."""
    if url.startswith(JOURNAL_PREFIX):
        return Path(url[len(JOURNAL_PREFIX):])
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return Path(parsed.database)
    return None


def _enable_wal(url: str) -> None:
    """Write-ahead logging lets readers and one writer proceed together; it is a property of
    the database file, so setting it once is enough (and harmless when repeated)."""
    db = _file_of(url)
    if db is None:
        return
    try:
        con = sqlite3.connect(db, timeout=SQLITE_TIMEOUT_S)
        try:
            con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise StorageError(f"storage {url!r} is not a usable SQLite database: {e}") from None


def study_names(storage: BaseStorage) -> list[str]:
    return optuna.get_all_study_names(storage)


def load_study(storage: BaseStorage, name: str | None, url: str) -> optuna.Study:
    """An existing study; with ``name`` None, the only study in the storage."""
    names = study_names(storage)
    if name is None:
        if len(names) != 1:
            found = ", ".join(names) if names else "none"
            raise StorageError(f"{url} holds {len(names)} studies ({found}): pass --study-name")
        name = names[0]
    if name not in names:
        found = ", ".join(names) if names else "none"
        raise StorageError(f"study {name!r} does not exist in {url} (studies: {found})")
    return optuna.load_study(study_name=name, storage=storage)
