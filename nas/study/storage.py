"""Opening Optuna storages from a URL, checked first so that a typo is one clear line, and
storage faults turned into one line that names the storage and the cause.

Supported:

* any SQLAlchemy URL Optuna's ``RDBStorage`` accepts (``sqlite:///nas.db``,
  ``postgresql://user:pass@host/db`` with ``pip install 'nas[postgresql]'``,
  ``mysql+pymysql://...``). SQLite files are switched to write-ahead logging and opened with a
  generous lock timeout, which is what lets several worker processes on one machine write to
  the same file without "database is locked" (tests/test_workers.py holds it to that). RDB
  storages get Optuna's heartbeat, so a trial whose process died on another machine is marked
  FAIL after the grace period.
* ``journal:PATH``: Optuna's ``JournalStorage`` over a ``JournalFileBackend``, the backend Optuna
  recommends for processes on one machine (append-only log, file lock). optuna-dashboard opens
  the log file directly.

Read-only commands (export, replay) open with ``create=False``: they never create a file,
never add Optuna's tables to a database that lacks them, and never switch a file to WAL; a
SQLite file or folder they cannot write is opened read-only (``immutable=1``/``mode=ro``), so
a study shipped read-only, WAL included, is read without writing a byte.

Nothing here shows a password: every message names the storage through :func:`redact`.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from nas.errors import StorageError

JOURNAL_PREFIX = "journal:"
SQLITE_TIMEOUT_S = 120
HEARTBEAT_S, GRACE_S = 30, 120
DRIVERS = {"psycopg": "pip install 'nas[postgresql]' (psycopg 3)",
           "psycopg2": "pip install psycopg2-binary, or use postgresql:// with "
                       "pip install 'nas[postgresql]'",
           "MySQLdb": "pip install mysqlclient, or use mysql+pymysql:// with pip install pymysql"}


# user:password@ after a URL scheme, as SQLAlchemy parses it (a password holds no raw "@").
_CREDENTIALS = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@]*@")


def redact(text: str, url: str | None = None) -> str:
    """``text`` with the password of every URL in it replaced by ``***``
    (``postgresql://user:***@host/db``, as SQLAlchemy's
    ``make_url(url).render_as_string(hide_password=True)``); with ``url``, also any other
    occurrence of that URL's password (a driver's message may quote it). Everything ``nas``
    prints or stores that may hold a storage URL goes through here: a password is never
    shown or stored."""
    out = _CREDENTIALS.sub(lambda m: m["head"] + "***@", text)
    password = _password_of(url) if url else None
    return out.replace(password, "***") if password else out


def has_password(url: str) -> bool:
    """True when ``url`` carries a password (which :func:`redact` hides)."""
    return redact(url) != url


def _password_of(url: str) -> str | None:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password or None
    except Exception:  # noqa: BLE001 - not a URL: nothing to hide
        return None


def check_url(url: str) -> None:
    """Raise StorageError for a URL with an unknown scheme, a missing driver, an in-memory
    database (lost when the command ends) or a file in a missing directory."""
    if url.startswith(JOURNAL_PREFIX):
        _check_parent(Path(url[len(JOURNAL_PREFIX):]), url)
        return
    try:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except NoSuchModuleError:  # a subclass of ArgumentError: first
        raise StorageError(f"storage {redact(url)!r} has an unknown scheme "
                           f"{url.split(':')[0]!r} (expected sqlite, postgresql, mysql or "
                           f"journal)") from None
    except (ArgumentError, ValueError):
        raise StorageError(f"storage {redact(url)!r} is not a URL (expected e.g. "
                           f"sqlite:///nas.db or journal:nas.log)") from None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        module = getattr(e, "name", None) or str(e)
        hint = DRIVERS.get(module, f"install the Python package that provides {module!r}")
        raise StorageError(f"storage {redact(url)!r} needs the database driver {module!r}: "
                           f"{hint}") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise StorageError(f"storage {redact(url)!r} is an in-memory database: the study "
                           f"would be lost when the command ends; name a file, e.g. "
                           f"sqlite:///nas.db")
    file = _file_of(url)
    if file is not None:
        _check_parent(file, url)


def _check_parent(path: Path, url: str) -> None:
    if not path.name:
        raise StorageError(f"storage {redact(url)!r} names no file")
    if not path.parent.resolve().is_dir():
        raise StorageError(f"storage {redact(url)!r}: directory {str(path.parent)!r} does "
                           f"not exist")


def open_storage(url: str, create: bool = True,
                 heartbeat: tuple[int, int] = (HEARTBEAT_S, GRACE_S)) -> BaseStorage:
    """An Optuna storage for ``url`` (see the module docstring). Raises StorageError.

    ``heartbeat`` is (interval, grace period) in seconds of Optuna's heartbeat on RDB
    storages: a RUNNING trial whose process recorded no heartbeat for the grace period is
    marked FAIL by the next process that starts a trial (nas.study.objective.TrialLost says what
    the silent process then does with its trial).

    With ``create`` False the storage must already hold Optuna's tables (export and replay
    only use studies: a typo must not leave an empty database behind, and another
    application's SQLite file must not be changed).
    """
    check_url(url)
    file = _file_of(url)
    if not create and file is not None and not file.is_file():
        raise StorageError(f"storage {redact(url)!r}: no such file {str(file)!r}")
    new_file = create and file is not None and not file.exists()
    with _creation_lock(file if create and url.startswith("sqlite:") else None):
        try:
            return _open(url, create, heartbeat, file)
        except BaseException:
            if new_file:  # under the lock: no other search has started on the file yet
                _remove_if_empty(file)  # e.g. a full disk: no 0-byte nas.db left behind
            raise


def _open(url: str, create: bool, heartbeat: tuple[int, int], file: Path | None) -> BaseStorage:
    """open_storage's work, once the URL is checked."""
    if url.startswith(JOURNAL_PREFIX):
        with faults(url):
            return _Journal(file)
    engine_kwargs: dict[str, object] = {}
    engine_url = url  # what SQLAlchemy opens: the same, or a read-only SQLite URI (below)
    if url.startswith("sqlite:"):
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
        if create:
            _enable_wal(url)
        elif file is not None:
            _check_optuna_sqlite(file, url)
            if not _writable(file):  # e.g. a study shipped read-only: open it so
                engine_url = f"sqlite:///{_read_only_uri(file)}&uri=true"
    try:
        for attempt in range(3):
            try:
                with faults(url), warnings.catch_warnings():  # heartbeat: flagged experimental
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    storage = RDBStorage(engine_url, engine_kwargs=engine_kwargs,
                                         heartbeat_interval=heartbeat[0],
                                         grace_period=heartbeat[1],
                                         skip_table_creation=not create)
                break
            except StorageError as e:
                # Another process created the same table a moment before this one (a server
                # database: "relation ... already exists", or PostgreSQL's "duplicate key value
                # violates unique constraint pg_type_typname_nsp_index"; SQLite files are set
                # up under _creation_lock): the tables are there now, or nearly: look again.
                if not create or attempt == 2 or not any(
                        race in str(e) for race in ("already exists", "duplicate key value")):
                    raise
                time.sleep(0.2 * (attempt + 1))
    except RuntimeError as e:  # Optuna's schema check: another Optuna version's tables
        if "compatible with the table schema" not in str(e):
            raise
        raise StorageError(f"storage {redact(url)}: {e}".strip()) from None
    if url.startswith("sqlite:"):
        _sqlite_connections(storage, writer=create)
    return storage


@contextmanager
def _creation_lock(db: Path | None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the folder of the SQLite file ``db`` while a search sets
    the file up: WAL, Optuna's tables, its version rows. Two searches creating one new
    database at the same moment otherwise both find no tables and both create them ("table
    study_system_attributes already exists"). The folder, not the file: closing a descriptor
    of the database file would drop the POSIX locks that this process's open SQLite
    connections hold on it (SQLite's documented hazard; it corrupted a database here), and a
    lock file would be a file the user did not ask for. None: no lock."""
    if db is None:
        yield
        return
    import fcntl

    try:
        fd: int | None = os.open(db.resolve().parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # the open that follows says what is wrong, in one line
        fd = None
    if fd is None:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _remove_if_empty(db: Path) -> None:
    """Remove the database file ``db`` that this command created and failed to set up, and
    its -wal/-shm/-journal, if it holds nothing (0 bytes): a full disk must not leave an
    empty nas.db behind. A file with content is never removed."""
    try:
        if db.stat().st_size != 0:
            return
        for side in ("-wal", "-shm", "-journal"):  # -shm is an index, never data
            extra = db.with_name(db.name + side)
            if extra.exists() and (side == "-shm" or extra.stat().st_size == 0):
                extra.unlink()
        db.unlink()
    except OSError:
        pass  # gone already, or not ours to remove


class _Journal(JournalStorage):
    """Optuna's JournalStorage over a JournalFileBackend, whose replay of a damaged log file
    (random bytes, not UTF-8, invalid JSON, a line cut short, a JSON line nested past
    Python's recursion limit, an unknown operation) is one StorageError naming the file,
    not Optuna's UnicodeDecodeError, JSONDecodeError, ValueError, AssertionError or
    RecursionError. A last line cut short by a crash mid-write is skipped by Optuna and
    stays harmless."""

    # What a damaged line raises while it is replayed. After the first replay, ValueError and
    # KeyError may also be Optuna's answer to this process's own request (a distribution
    # that does not match, a trial not found): only these are sure signs of damage then.
    DAMAGE = (UnicodeDecodeError, json.JSONDecodeError, RecursionError, AssertionError)

    def __init__(self, path: Path) -> None:
        self._path, self._opened = path, False
        super().__init__(JournalFileBackend(str(path)))
        self._opened = True

    def _sync_with_backend(self) -> None:
        try:
            super()._sync_with_backend()
        except Exception as e:
            if isinstance(e, OSError) or (self._opened and not isinstance(e, self.DAMAGE) and
                                          str(e) != "Invalid log format."):
                raise
            line = self._replay_result.log_number_read + 1
            what = str(e).splitlines()[0][:200] if str(e) else ""
            raise StorageError(f"storage {JOURNAL_PREFIX}{self._path}: not a readable Optuna "
                               f"journal (damaged near line {line}: "
                               f"{type(e).__name__}{': ' + what if what else ''})") from None


def _sqlite_connections(storage: RDBStorage, writer: bool) -> None:
    """Set up every connection of a SQLite storage (connections made before are dropped).

    * ``synchronous=NORMAL``: in WAL mode a commit then waits for no fsync (2.6x faster trial
      bookkeeping, measured: a candidate writes some 30 small transactions). The database
      stays consistent through any crash; only a power loss can drop the last commits.
    * For a ``writer``, every transaction begins with ``BEGIN IMMEDIATE`` (SQLAlchemy's
      recipe for pysqlite). Optuna takes a queued trial by reading that it is WAITING, then
      writing RUNNING, and relies on ``SELECT ... FOR UPDATE`` to make that one step; SQLite
      has no such lock, and pysqlite begins a transaction only at the write, so two worker
      processes could take the same queued finalist (tests/test_storage.py). Taking the write
      lock at the start makes each transaction whole; they are milliseconds long, so workers
      that wait for it lose nothing measurable. Storages opened without ``create`` (export,
      replay) keep plain transactions: they claim no trials, and a read-only file could not
      take the lock.
    """
    from sqlalchemy import event

    def on_connect(con: sqlite3.Connection, record: object) -> None:
        con.execute("PRAGMA synchronous=NORMAL")
        if writer:
            con.isolation_level = None  # pysqlite emits no BEGIN of its own: on_begin does

    def on_begin(conn: object) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # type: ignore[attr-defined]

    event.listen(storage.engine, "connect", on_connect)
    if writer:
        event.listen(storage.engine, "begin", on_begin)
    storage.engine.dispose()


def _file_of(url: str) -> Path | None:
    """The file behind a journal or SQLite URL; None for server databases and :memory:."""
    if url.startswith(JOURNAL_PREFIX):
        return Path(url[len(JOURNAL_PREFIX):])
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return Path(parsed.database)
    return None


file_of = _file_of  # public: nas.study.artifacts puts a study's artifact folder beside its file


def _enable_wal(url: str) -> None:
    """Write-ahead logging lets readers and one writer proceed together; it is a property of
    the database file, so setting it once is enough (and harmless when repeated)."""
    db = _file_of(url)
    if db is None:
        return
    try:
        con = sqlite3.connect(db, timeout=SQLITE_TIMEOUT_S)
        try:
            mode = con.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":
                con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()
    except sqlite3.DatabaseError as e:  # "file is not a database", "readonly database", ...
        raise StorageError(f"storage {redact(url)}: {_cause(e)}") from None


def _writable(db: Path) -> bool:
    """Whether this process may write ``db`` and create files beside it (SQLite's -wal and
    -shm: a WAL database needs them even to be read, unless opened as below)."""
    return os.access(db, os.W_OK) and os.access(db.resolve().parent, os.W_OK)


def _read_only_uri(db: Path, mode: str | None = None) -> str:
    """A SQLite URI filename that reads ``db`` without writing anything.

    ``mode=ro`` when the database's write-ahead log holds data (it must be read, and SQLite
    can, from the -wal and -shm files that are there); otherwise ``immutable=1``: the file is
    read as it is, with no locks and no -shm file, which is what lets a WAL database in a
    read-only folder be read at all (``mode=ro`` would fail there with "attempt to write a
    readonly database"). Immutable assumes nobody writes the file meanwhile: true for a file
    this process cannot write and that has no log in progress."""
    from urllib.parse import quote

    wal = db.with_name(db.name + "-wal")
    if mode is None:
        mode = "mode=ro" if wal.is_file() and wal.stat().st_size > 0 else "immutable=1"
    return f"file:{quote(str(db.resolve()))}?{mode}"


def _check_optuna_sqlite(db: Path, url: str) -> None:
    """Refuse, without writing, a SQLite file that holds no Optuna study tables."""
    uri = _read_only_uri(db, "mode=ro") if _writable(db) else _read_only_uri(db)
    try:
        con = sqlite3.connect(uri, uri=True, timeout=SQLITE_TIMEOUT_S)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = "
                                                "'table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise StorageError(f"storage {redact(url)}: {_cause(e)}") from None
    if not {"studies", "trials", "version_info"} <= tables:
        raise StorageError(f"storage {redact(url)!r} holds no Optuna studies (it was not made by "
                           f"nas.search)")


def check_writable(url: str) -> None:
    """Raise StorageError now, not after hours of work, if a file-backed storage cannot be
    written (read-only file or directory)."""
    file = _file_of(url)
    if file is None:
        return
    for path in (file, file.resolve().parent):
        if path.exists() and not os.access(path, os.W_OK):
            raise StorageError(f"storage {redact(url)}: {path} is read-only")


# -- faults ------------------------------------------------------------------------------------
def storage_cause(exc: BaseException) -> str | None:
    """If ``exc`` (or anything in its chain) is a storage fault, its cause in a few words;
    None for anything else (a bug must keep its traceback).

    The cause is the deepest storage error of the chain: Optuna wraps a failed commit in a
    StorageInternalError whose own message guesses "... e.g. exceeding max length" whatever
    happened; the driver's error under it says what did ("database or disk is full", "server
    closed the connection"). An error raised ``from None`` (e.g. a UserError about --out)
    hides its context: it is no storage fault."""
    from sqlalchemy.exc import SQLAlchemyError

    seen: set[int] = set()
    found: BaseException | None = None
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (SQLAlchemyError, sqlite3.Error, optuna.exceptions.StorageInternalError)) \
                or (isinstance(e, OSError) and e.errno is not None):
            found = e
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    return None if found is None else _cause(found)


def _cause(e: BaseException) -> str:
    """The innermost message of a storage error, on one line."""
    orig = getattr(e, "orig", None)  # SQLAlchemy wraps the driver's exception
    if isinstance(e, OSError) and e.strerror:
        text = e.strerror + (f": {e.filename}" if e.filename else "")
    else:
        text = str(orig if orig is not None else e) or type(e).__name__
    return text.strip().splitlines()[0]


@contextmanager
def faults(url: str) -> Iterator[None]:
    """Turn a storage fault raised inside into one StorageError naming ``url``."""
    try:
        yield
    except StorageError:
        raise
    except Exception as e:  # noqa: BLE001 - classified below; anything else re-raised as is
        cause = storage_cause(e)
        if cause is None:
            raise
        raise StorageError(f"storage {redact(url)}: {redact(cause, url)}") from e


# -- studies -----------------------------------------------------------------------------------
def study_names(storage: BaseStorage) -> list[str]:
    return optuna.get_all_study_names(storage)


def load_study(storage: BaseStorage, name: str | None, url: str) -> optuna.Study:
    """An existing study; with ``name`` None, the only study in the storage."""
    with faults(url):
        names = study_names(storage)
        if name is None:
            if len(names) != 1:
                found = ", ".join(names) if names else "none"
                raise StorageError(f"{redact(url)} holds {len(names)} studies ({found}): pass "
                                   f"--study-name")
            name = names[0]
        if name not in names:
            found = ", ".join(names) if names else "none"
            raise StorageError(f"study {name!r} does not exist in {redact(url)} (studies: "
                               f"{found})")
        return optuna.load_study(study_name=name, storage=storage)


def quiet_storage_faults_in_threads() -> None:
    """Make a storage fault raised in a background thread silent; anything else keeps
    Python's report. Optuna records a running trial's heartbeat from a thread of its own: when
    the storage fails (a full disk, a server gone), that thread would print a traceback,
    while the main thread meets the same fault at its next write and reports it in one line
    (:func:`faults`). For processes that run trials: the entry points' ``run`` and the
    search's workers call it once at their start."""
    default = threading.excepthook
    if getattr(default, "quiets_storage_faults", False):
        return  # installed already (run() is called once per command, tests call it often)

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None and storage_cause(args.exc_value) is not None:
            return
        default(args)

    hook.quiets_storage_faults = True  # type: ignore[attr-defined]
    threading.excepthook = hook
