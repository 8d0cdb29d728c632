"""Storage behaviour, once against every backend we support (Optuna's StorageTestCase idea):
SQLite, journal files and a real PostgreSQL server (see conftest's ``storage_url``)."""

from __future__ import annotations

import multiprocessing
import signal
import sqlite3
import subprocess
import time

import optuna
import pytest
from optuna.trial import TrialState

from nas.cli.common import UserError
from nas.study import record, recovery, selection
from nas.study.runner import search
from nas.study.storage import StorageError, check_url, faults, load_study, open_storage
from tests.helpers import tiny_config


def test_trials_and_attributes_survive_reopening(storage_url):
    study = optuna.create_study(storage=open_storage(storage_url), study_name="s",
                                direction="maximize")
    study.set_user_attr("max_params", 20_000)
    trial = study.ask()
    trial.set_user_attr("spec", '{"a": 1}')
    trial.report(0.5, 1)
    study.tell(trial, 0.75)
    again = load_study(open_storage(storage_url, create=False), None, storage_url)
    assert again.study_name == "s" and again.user_attrs["max_params"] == 20_000
    (t,) = again.get_trials()
    assert t.value == 0.75 and t.user_attrs["spec"] == '{"a": 1}'
    assert t.intermediate_values == {1: 0.5}


def test_load_study_errors(storage_url):
    storage = open_storage(storage_url)
    with pytest.raises(StorageError, match="holds 0 studies"):
        load_study(storage, None, storage_url)
    optuna.create_study(storage=storage, study_name="a")
    optuna.create_study(storage=storage, study_name="b")
    with pytest.raises(StorageError, match="holds 2 studies"):
        load_study(storage, None, storage_url)
    with pytest.raises(StorageError, match="'c' does not exist .* a, b"):
        load_study(storage, "c", storage_url)
    assert load_study(storage, "b", storage_url).study_name == "b"


def test_a_foreign_study_is_refused_and_left_alone(storage_url, tmp_path, tiny_mnist_dir):
    """A study plain Optuna made under the name nas would use: never joined."""
    study = optuna.create_study(storage=open_storage(storage_url), study_name="t",
                                direction="minimize")
    study.enqueue_trial({"x": 1.0})
    with pytest.raises(record.RecordError, match="'t' .* was not made by nas.search"):
        search(tiny_config(tmp_path, tiny_mnist_dir, storage=storage_url, trials=1),
               progress=False)
    again = optuna.load_study(study_name="t", storage=open_storage(storage_url))
    assert len(again.get_trials()) == 1 and again.user_attrs == {}


def dead_process() -> dict:
    """The process record of a process that has certainly ended."""
    from nas.study.processes import this_process

    p = subprocess.Popen(["sleep", "60"])
    p.send_signal(signal.SIGKILL)
    p.wait()
    return {**this_process(), "pid": p.pid, "start": None}


def test_stale_trials_of_dead_processes_are_failed_with_a_reason(storage_url, tmp_path,
                                                                 tiny_mnist_dir):
    cfg = tiny_config(tmp_path, tiny_mnist_dir, storage=storage_url, trials=1)
    search(cfg, progress=False)
    study = optuna.load_study(study_name="t", storage=open_storage(storage_url))
    orphan = study.ask()  # as a worker killed with -9 mid-training leaves it
    orphan.set_user_attr(record.PROCESS, dead_process())
    alive = study.ask()  # a trial of a live process (this one) is left alone
    record.write_process(alive)
    assert [n for n, _ in recovery.stale_trials(study)] == [orphan.number]  # reading only
    assert study.get_trials()[orphan.number].state == TrialState.RUNNING
    # A rerun that finds the count met still cleans up.
    search(cfg, progress=False)
    t = optuna.load_study(study_name="t", storage=open_storage(storage_url)).get_trials()
    assert t[orphan.number].state == TrialState.FAIL
    assert record.outcome_of(t[orphan.number]) == record.INTERRUPTED
    assert "died" in record.reason_of(t[orphan.number])
    assert t[alive.number].state == TrialState.RUNNING
    assert record.count_trained(study) == 1


def test_missing_file_is_not_created_when_reading(tmp_path):
    for url in (f"sqlite:///{tmp_path / 'x.db'}", f"journal:{tmp_path / 'x.log'}"):
        with pytest.raises(StorageError, match="no such file"):
            open_storage(url, create=False)
    assert list(tmp_path.iterdir()) == []


def test_reading_never_changes_another_applications_database(tmp_path):
    db = tmp_path / "otherapp.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE notes (text)")
    con.execute("INSERT INTO notes VALUES ('precious')")
    con.commit()
    con.close()
    before = db.read_bytes()
    with pytest.raises(StorageError, match="holds no Optuna studies"):
        open_storage(f"sqlite:///{db}", create=False)
    assert db.read_bytes() == before  # no tables added, not switched to WAL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["otherapp.db"]


@pytest.mark.parametrize("bad, message", [
    ("nosuchdb://x/y", "unknown scheme"),
    ("not a url", "not a URL"),
    ("sqlite:////no/such/dir/nas.db", "does not exist"),
    ("journal:/no/such/dir/nas.log", "does not exist"),
    ("sqlite://", "in-memory database"),
    ("sqlite:///:memory:", "in-memory database"),
    ("mysql://u@localhost/db", "needs the database driver 'MySQLdb': pip install mysqlclient"),
    ("postgresql+psycopg2://u@localhost/db", "needs the database driver 'psycopg2'"),
])
def test_bad_urls(bad, message):
    with pytest.raises(StorageError, match=message):
        check_url(bad)


def test_the_readme_postgresql_url_has_its_driver():
    check_url("postgresql://user:pass@localhost/nas")  # psycopg 3, from the [postgresql] extra


def test_sqlite_uses_write_ahead_logging(tmp_path):
    open_storage(f"sqlite:///{tmp_path / 'w.db'}")
    mode = sqlite3.connect(tmp_path / "w.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path):
    f = tmp_path / "notes.db"
    f.write_text("precious notes\n" * 100)
    for create in (True, False):
        with pytest.raises(StorageError, match="file is not a database"):
            open_storage(f"sqlite:///{f}", create=create)
    assert f.read_text() == "precious notes\n" * 100


def test_faults_become_one_line_naming_the_storage():
    from sqlalchemy.exc import OperationalError

    with pytest.raises(StorageError, match=r"^storage sqlite:///x.db: attempt to write a "
                                           r"readonly database$"):
        with faults("sqlite:///x.db"):
            try:
                raise OperationalError("INSERT ...", {}, sqlite3.OperationalError(
                    "attempt to write a readonly database"))
            except OperationalError:  # as Optuna's trial bookkeeping hides it behind its own
                raise AssertionError("Should not reach.")
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        with faults("sqlite:///x.db"):
            raise ZeroDivisionError
    with pytest.raises(UserError):
        with faults("sqlite:///x.db"):
            raise UserError("not a storage fault")


def test_server_gone_is_one_line(postgres, tmp_path, tiny_mnist_dir):
    url = postgres.url("gone")
    cfg = tiny_config(tmp_path, tiny_mnist_dir, storage=url, trials=1)
    search(cfg, progress=False)
    postgres.stop()
    try:
        with pytest.raises(StorageError, match=r"storage postgresql://.*gone_\d+: .*(refused|"
                                               r"server|connect)"):
            search(tiny_config(tmp_path, tiny_mnist_dir, storage=url, trials=2), progress=False)
    finally:
        postgres.start()  # for the tests after this one


def _claim_queued(url: str, start: float, out: object) -> None:
    """A worker process: wait for the common start, then take queued trials until none is
    left, sending back the number of each trial it took."""
    study = optuna.load_study(study_name="q", storage=open_storage(url))
    time.sleep(max(0.0, start - time.time()))
    while True:
        trial = study.ask()
        if not trial.user_attrs:  # no queued trial left: ask made a fresh one
            study.tell(trial, state=TrialState.FAIL)
            return
        out.put(trial.number)  # type: ignore[attr-defined]
        study.tell(trial, 0.0)


def test_a_queued_trial_is_taken_by_exactly_one_process(storage_url):
    """Queued (WAITING) trials are how the start designs and the finalists reach workers.
    Optuna takes one with a read, then a write; on SQLite both ran outside a lock (pysqlite
    begins a transaction only at the write), so two processes could take the same trial and
    the slower one failed with "Cannot tell a COMPLETE trial" (seen in CI). Four processes
    race here for 40 queued trials: each must be taken once."""
    study = optuna.create_study(storage=open_storage(storage_url), study_name="q")
    for i in range(40):
        study.enqueue_trial({}, user_attrs={"i": i})
    ctx = multiprocessing.get_context("spawn")
    out = ctx.SimpleQueue()
    start = time.time() + 5  # after every process has imported and connected
    procs = [ctx.Process(target=_claim_queued, args=(storage_url, start, out))
             for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    taken = []
    while not out.empty():
        taken.append(out.get())
    assert sorted(taken) == list(range(40))  # each once: no trial twice, none lost


# -- one line, not a traceback (issue 15) -------------------------------------------------------
def cli(module: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    import sys

    return subprocess.run([sys.executable, "-m", f"nas.{module}", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def one_line(p: subprocess.CompletedProcess) -> str:
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    return lines[0]


@pytest.mark.parametrize("revision, advice", [("v99.0.0.a", "pip install -U optuna"),
                                              ("v1.2.0.a", "optuna storage upgrade")])
def test_another_optuna_schema_version_is_one_line(tmp_path, tiny_mnist_dir, revision, advice):
    db = tmp_path / "nas.db"
    optuna.create_study(storage=open_storage(f"sqlite:///{db}"), study_name="t")
    with sqlite3.connect(db) as con:  # as a newer (older) Optuna would have left it
        con.execute("UPDATE alembic_version SET version_num = ?", (revision,))
        con.execute("UPDATE version_info SET library_version = '99.0.0'")
    url = f"sqlite:///{db}"
    for module, args in (("export", ["--out", str(tmp_path / "e")]),
                         ("search", ["--trials", "1", "--data-dir", str(tiny_mnist_dir),
                                     "--val-size", "100", "--no-progress"])):
        line = one_line(cli(module, "--storage", url, *args, cwd=tmp_path))
        assert line.startswith(f"python -m nas.{module}: error: storage {url}: ")
        assert "no longer compatible with the table schema" in line and advice in line
    assert not (tmp_path / "e").exists()


def valid_journal(path) -> bytes:
    study = optuna.create_study(storage=open_storage(f"journal:{path}"), study_name="j")
    study.set_user_attr("a", 1)
    return path.read_bytes()


@pytest.mark.parametrize("damage, what", [
    (lambda ok: ok + bytes(range(256)) * 4 + b"\n", "UnicodeDecodeError"),  # random bytes
    (lambda ok: ok + b"\xff\xfe{\"op_code\": 0}\n", "UnicodeDecodeError"),  # not UTF-8
    (lambda ok: ok + b'{"op_code": 0, "worker\n' + ok, "JSONDecodeError"),  # invalid JSON
    (lambda ok: ok[:50] + b"\n" + ok, "JSONDecodeError"),  # a line cut short
    (lambda ok: ok[:-1] + ok, "JSONDecodeError: Extra data"),  # lines run together
    (lambda ok: ok + b"[" * 200_000 + b"]" * 200_000 + b"\n", "RecursionError"),
    (lambda ok: ok + b'{"op_code": 99, "worker_id": "x"}\n', "AssertionError"),
])
def test_a_damaged_journal_is_one_line_naming_the_file(tmp_path, damage, what):
    path = tmp_path / "nas.log"
    path.write_bytes(damage(valid_journal(path)))
    before = path.read_bytes()
    for create in (False, True):
        with pytest.raises(StorageError) as e:
            open_storage(f"journal:{path}", create=create)
        assert str(e.value).startswith(f"storage journal:{path}: not a readable Optuna "
                                       f"journal (damaged near line ")
        assert what in str(e.value) and "\n" not in str(e.value)
    line = one_line(cli("export", "--storage", f"journal:{path}", "--out", str(tmp_path / "e")))
    assert f"storage journal:{path}: not a readable Optuna journal" in line
    assert path.read_bytes() == before  # nothing appended


def test_a_journal_whose_last_line_was_cut_short_still_opens(tmp_path):
    path = tmp_path / "nas.log"
    ok = valid_journal(path)
    path.write_bytes(ok + b'{"op_code": 5, "wor')  # a crash mid-write
    study = optuna.load_study(study_name="j", storage=open_storage(f"journal:{path}"))
    assert study.user_attrs == {"a": 1}


def test_export_and_replay_turn_a_fault_after_load_study_into_one_line(tmp_path, monkeypatch,
                                                                       tiny_mnist_dir):
    from sqlalchemy.exc import OperationalError

    from nas.cli import export, replay

    url = f"sqlite:///{tmp_path / 'nas.db'}"
    search(tiny_config(tmp_path, tiny_mnist_dir, storage=url, trials=1), progress=False)

    def gone(*args, **kwargs):
        raise OperationalError("SELECT ...", {}, sqlite3.OperationalError("disk I/O error"))

    monkeypatch.setattr(selection, "select_trial", gone)  # the read after load_study fails
    for main, args in ((export.main, ["--out", str(tmp_path / "e")]),
                       (replay.main, ["--seeds", "1", "--data-dir", str(tiny_mnist_dir),
                                      "--out", str(tmp_path / "r"), "--no-progress"])):
        with pytest.raises(StorageError, match=rf"^storage {url}: disk I/O error$"):
            main(["--storage", url, *args])


def test_the_cause_is_the_drivers_not_optunas_wrapper():
    from sqlalchemy.exc import OperationalError

    with pytest.raises(StorageError, match=r"^storage sqlite:///x.db: database or disk is full$"):
        with faults("sqlite:///x.db"):
            try:
                raise OperationalError("INSERT ...", {}, sqlite3.OperationalError(
                    "database or disk is full"))
            except OperationalError as e:  # what Optuna's _create_scoped_session does
                raise optuna.exceptions.StorageInternalError(
                    "An exception is raised during the commit. This typically happens due to "
                    "invalid data in the commit, e.g. exceeding max length. ") from e


def _create_at(url: str, start: float, out: object) -> None:
    time.sleep(max(0.0, start - time.time()))
    try:
        optuna.create_study(storage=open_storage(url), study_name="race", load_if_exists=True)
        out.put("ok")  # type: ignore[attr-defined]
    except Exception as e:  # noqa: BLE001 - sent back to the test
        out.put(f"{type(e).__name__}: {e}")  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_searches_creating_one_new_database_at_once_all_succeed(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'new.db'}" if backend == "sqlite" else \
        request.getfixturevalue("postgres").url("race")
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start = time.time() + 8  # after every process has imported optuna
    procs = [ctx.Process(target=_create_at, args=(url, start, out)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert results == ["ok"] * 4
    assert optuna.get_all_study_names(open_storage(url)) == ["race"]


def test_a_storage_fault_in_a_background_thread_is_left_to_the_main_thread():
    """Optuna's heartbeat thread meets a full disk too: it must not print a traceback beside
    the main thread's one line; any other error in a thread still reaches the usual report."""
    import sqlite3
    import threading

    from nas.study.storage import quiet_storage_faults_in_threads

    saved, reported = threading.excepthook, []
    try:
        threading.excepthook = lambda args: reported.append(args.exc_value)  # "the usual"
        quiet_storage_faults_in_threads()
        quiet_storage_faults_in_threads()  # twice: still one hook over the usual one

        def fail(exc: BaseException) -> None:
            t = threading.Thread(target=lambda: (_ for _ in ()).throw(exc))
            t.start()
            t.join()

        fail(sqlite3.OperationalError("disk I/O error"))
        assert reported == []
        bug = ValueError("a bug")
        fail(bug)
        assert reported == [bug]
    finally:
        threading.excepthook = saved
