"""Faults done to real processes: kill -9 mid-trial, SIGTERM and SIGINT to a multi-worker
search, two searches on one study, a read-only database, a full file system, a foreign study.
Each ends in one line and the right exit status, loses nothing, leaves no process behind, and
the next search ends with exactly --trials trained candidates, none trained twice."""

from __future__ import annotations

import os
import resource
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas.study import record
from nas.study.processes import is_alive
from nas.study.storage import open_storage
from tests.helpers import write_mnist

STUDY = "f"


def nas_cmd(module: str, db: str, data: Path, *extra: str) -> list[str]:
    common = ["--storage", db] + (["--data-dir", str(data)] if module != "export" else [])
    if module == "search":
        # Small networks on 200 images, 8 epochs: a candidate takes a few seconds, long
        # enough to be caught mid-training. No pruning: every candidate trains to the end.
        # The search stage only: the finalist stage's faults are tests/test_finalists.py's.
        common += ["--study-name", STUDY, "--epochs", "8", "--val-size", "100",
                   "--batch-size", "100", "--max-params", "12000", "--pruner", "none",
                   "--proxy-epochs", "0", "--finalists", "0", "--no-progress",
                   "--space", "1", "--train-space", "fixed"]
    return [sys.executable, "-m", f"nas.{module}", *common, *extra]


@pytest.fixture(scope="module")
def small_mnist_dir(tmp_path_factory) -> Path:
    return write_mnist(tmp_path_factory.mktemp("small"), n_train=300, n_test=50)


def start(argv: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kw)


def trials(db: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=STUDY, storage=open_storage(db)).get_trials()


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def training(db: str) -> list[optuna.trial.FrozenTrial]:
    """Trials that are RUNNING and past their first epoch."""
    try:
        return [t for t in trials(db) if t.state == TrialState.RUNNING and record.curve_of(t)]
    except Exception:  # noqa: BLE001 - the study may not exist yet
        return []


def both_in_training(db: str) -> list[optuna.trial.FrozenTrial]:
    """Wait until two trials are in training; the two, from that one read of the study (a
    trial may end between two reads, and a second read would see one)."""
    running: list[optuna.trial.FrozenTrial] = []

    def both() -> bool:
        running[:] = training(db)
        return len(running) == 2

    wait_for(both, "both workers in training")
    return running


def assert_healthy(db: str, n_trained: int) -> None:
    """Exactly ``n_trained`` trained, nothing RUNNING, no architecture trained twice, every
    interrupted trial with its reason."""
    ts = trials(db)
    trained = [t for t in ts if record.was_trained(t)]
    assert len(trained) == n_trained
    assert not [t.number for t in ts if t.state == TrialState.RUNNING]
    assert len({record.key_of(t) for t in trained}) == n_trained
    for t in ts:
        if record.outcome_of(t) == record.INTERRUPTED:
            assert t.state == TrialState.FAIL and record.reason_of(t)


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture()
def db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'nas.db'}"


def test_kill_9_mid_trial_then_resume(db, small_mnist_dir):
    p = start(nas_cmd("search", db, small_mnist_dir, "--trials", "3"))
    wait_for(lambda: training(db), "a trial in training")
    (victim,) = training(db)
    p.kill()
    p.wait()
    assert trials(db)[victim.number].state == TrialState.RUNNING  # what kill -9 leaves
    done = subprocess.run(nas_cmd("search", db, small_mnist_dir, "--trials", "3"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    after = trials(db)[victim.number]
    assert after.state == TrialState.FAIL and record.outcome_of(after) == record.INTERRUPTED
    assert "died" in record.reason_of(after)
    assert_healthy(db, 3)
    # The victim's candidate, never trained, is queued again and trained once; otherwise the
    # resumed run drew new candidates: no other trial repeats an earlier one's parameters.
    params = [tuple(sorted(t.params.items())) for t in trials(db)]
    again = [t for t in trials(db)[victim.number + 1:] if t.params == victim.params]
    assert len(again) == 1 and again[0].state == TrialState.COMPLETE
    assert record.was_trained(again[0])
    assert len(set(params)) == len(params) - 1


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_to_a_multi_worker_search_stops_every_worker(db, small_mnist_dir, sig, code):
    p = start(nas_cmd("search", db, small_mnist_dir, "--trials", "6", "--workers", "2"))
    running = both_in_training(db)
    pids = {t.user_attrs[record.PROCESS]["pid"] for t in running}
    procs = [t.user_attrs[record.PROCESS] for t in running]
    assert len(pids) == 2 and p.pid not in pids
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    assert p.returncode == code, err
    assert f"interrupted by {sig.name}" in one_line(err)
    assert not [proc for proc in procs if is_alive(proc)]  # no orphan, by PID
    interrupted = [t for t in trials(db) if record.outcome_of(t) == record.INTERRUPTED]
    assert len(interrupted) == 2
    assert all(t.state == TrialState.FAIL and sig.name in record.reason_of(t)
               for t in interrupted)
    assert not [t for t in trials(db) if t.state == TrialState.RUNNING]


def test_workers_die_with_their_parent_even_on_kill_9(db, small_mnist_dir):
    p = start(nas_cmd("search", db, small_mnist_dir, "--trials", "6", "--workers", "2"))
    procs = [t.user_attrs[record.PROCESS] for t in both_in_training(db)]
    p.kill()
    p.wait()
    wait_for(lambda: not [proc for proc in procs if is_alive(proc)], "the workers to end", 30)
    done = subprocess.run(nas_cmd("search", db, small_mnist_dir, "--trials", "3"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert_healthy(db, max(3, sum(record.was_trained(t) for t in trials(db))))


def test_a_worker_killed_is_noticed_at_once(db, small_mnist_dir):
    p = start(nas_cmd("search", db, small_mnist_dir, "--trials", "20", "--workers", "2"))
    victim, other = (t.user_attrs[record.PROCESS] for t in both_in_training(db))
    os.kill(victim["pid"], signal.SIGKILL)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1
    line = one_line(err)
    assert f"(pid {victim['pid']}) was killed by SIGKILL" in line and "stopped" in line
    assert not is_alive(other)
    assert not [t for t in trials(db) if t.state == TrialState.RUNNING]


def test_two_searches_on_one_study_train_no_identical_pair(db, small_mnist_dir):
    subprocess.run(nas_cmd("search", db, small_mnist_dir, "--trials", "1"), check=True,
                   capture_output=True, timeout=300)  # the study exists: both resume it
    ps = [start(nas_cmd("search", db, small_mnist_dir, "--trials", "3")) for _ in range(2)]
    for p in ps:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    ts = trials(db)
    trained = [t for t in ts if record.was_trained(t)]
    assert len(trained) >= 3
    assert len({record.key_of(t) for t in trained}) == len(trained)
    params = [tuple(sorted(t.params.items())) for t in ts]
    assert len(set(params)) == len(params)


def test_ctrl_c_to_a_single_process_search_is_one_line(db, small_mnist_dir):
    p = start(nas_cmd("search", db, small_mnist_dir, "--trials", "3"))
    wait_for(lambda: training(db), "a trial in training")
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130
    assert "interrupted by SIGINT" in one_line(err)
    (t,) = [t for t in trials(db) if record.outcome_of(t) == record.INTERRUPTED]
    assert t.state == TrialState.FAIL
    assert_healthy(db, sum(record.was_trained(t) for t in trials(db)))


def test_a_full_file_system_is_one_line_and_loses_nothing(db, tmp_path, small_mnist_dir):
    subprocess.run(nas_cmd("search", db, small_mnist_dir, "--trials", "1"), check=True,
                   capture_output=True, timeout=300)
    before = [(t.number, t.state, t.value) for t in trials(db)]
    limit = sum(f.stat().st_size for f in tmp_path.glob("nas.db*")) + 4096

    def small_disk() -> None:  # files may not grow past the limit: ENOSPC's sibling, EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    full = subprocess.run(nas_cmd("search", db, small_mnist_dir, "--trials", "5"),
                          capture_output=True, text=True, timeout=300, preexec_fn=small_disk)
    assert full.returncode == 2
    assert one_line(full.stderr).startswith(f"python -m nas.search: error: storage {db}: ")
    assert [(t.number, t.state, t.value) for t in trials(db)][:len(before)] == before
    done = subprocess.run(nas_cmd("search", db, small_mnist_dir, "--trials", "2"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert_healthy(db, 2)


def unprivileged() -> list[str]:
    """A command prefix under which file permissions hold: root without the capabilities
    that override them (setpriv, from util-linux); nothing for other users."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: no process here sees a file read-only")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def test_a_read_only_database_is_one_line_before_any_work(small_mnist_dir):
    prefix = unprivileged()
    root = Path(tempfile.mkdtemp(prefix="nas-ro-"))
    try:
        os.chmod(root, 0o755)
        data = Path(shutil.copytree(small_mnist_dir, root / "data"))
        db = f"sqlite:///{root / 'nas.db'}"
        subprocess.run(nas_cmd("search", db, data, "--trials", "1"), check=True,
                       capture_output=True, timeout=300)
        for f in root.glob("nas.db*"):
            os.chmod(f, 0o444)
        before = (root / "nas.db").read_bytes()
        for module, extra in (("search", ["--trials", "2"]),
                              ("replay", ["--epochs", "1", "--seeds", "1", "--out",
                                          str(root / "r"), "--no-progress"])):
            p = subprocess.run(prefix + nas_cmd(module, db, data, *extra), capture_output=True,
                               text=True, timeout=300, cwd=root)
            assert p.returncode == 2, p.stderr
            assert "read" in one_line(p.stderr) and str(root) in p.stderr
            assert "seed 0:" not in p.stdout  # refused before training
        assert (root / "nas.db").read_bytes() == before
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_foreign_study_is_refused_by_every_command(db, small_mnist_dir):
    study = optuna.create_study(storage=open_storage(db), study_name=STUDY)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    for module, extra in (("search", ["--trials", "1"]), ("export", ["--out", "e"]),
                          ("replay", ["--seeds", "1"])):
        p = subprocess.run(nas_cmd(module, db, small_mnist_dir, *extra), capture_output=True,
                           text=True, timeout=300)
        assert p.returncode == 2
        assert "was not made by nas.search" in one_line(p.stderr)
    assert len(trials(db)) == 2


# nas.search with Optuna's heartbeat at 1 s and its grace period at 3 s (SearchConfig.heartbeat;
# the real ones are 30 s and 120 s), so that a pause of a few seconds outlives the grace period.
SHORT_HEARTBEAT = ("import dataclasses\n"
                   "from nas.cli import search\n"
                   "parse = search.parse_args\n"
                   "def short(argv):\n"
                   "    cfg, progress = parse(argv)\n"
                   "    return dataclasses.replace(cfg, heartbeat=(1, 3)), progress\n"
                   "search.parse_args = short\n"
                   "search.cli()\n")


def pause_outside_a_write(pid: int, db: str, tries: int = 200) -> None:
    """SIGSTOP ``pid`` at a moment it holds no SQLite write lock. A process stopped inside a
    write transaction holds the lock until it runs again, so no other process can write (not
    even the heartbeat that is to fail its trial): SQLite's nature, not this test's subject,
    and it made the test fail now and then with "database is locked"."""
    path = db.removeprefix("sqlite:///")
    for _ in range(tries):
        os.kill(pid, signal.SIGSTOP)
        con = sqlite3.connect(path, timeout=0.2, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:  # stopped inside a write: let it finish, try again
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.05)
        finally:
            con.close()
    raise AssertionError(f"process {pid} held the write lock at each of {tries} tries")


def pause_one_in_training(db: str, tries: int = 20) -> tuple[optuna.trial.FrozenTrial, int]:
    """SIGSTOP the worker of a trial in training, outside a write, and return the trial and
    the pid once the trial is seen still RUNNING with its worker stopped. The trial read before
    the stop may have ended meanwhile (its worker then stopped in its next trial, and nothing
    would ever fail the one read): then let it go and take another. The one with fewer epochs
    done is taken, so that this is rare."""
    for _ in range(tries):
        victim = min(both_in_training(db), key=lambda t: len(record.curve_of(t)))
        pid = victim.user_attrs[record.PROCESS]["pid"]
        pause_outside_a_write(pid, db)
        if trials(db)[victim.number].state == TrialState.RUNNING:
            return victim, pid
        os.kill(pid, signal.SIGCONT)
    raise AssertionError(f"no trial was still in training once its worker stopped, {tries} times")


def test_a_worker_paused_past_the_heartbeat_grace_keeps_the_run_alive(db, small_mnist_dir):
    """SIGSTOP a worker mid-training until Optuna's heartbeat (run by the other worker) has
    failed its trial, then SIGCONT: one line, the run goes on, exactly --trials trained."""
    # Optuna fails a stale trial only when a trial starts, so the other worker must still be
    # taking tickets well past the 3 s grace (heartbeats are stored to the second): with 8
    # trials, on quiet cores (~0.5 s a trial), it ran out of them ~4 s after the stop and
    # nothing ever failed the paused one (the run then rightly waits for it).
    argv = nas_cmd("search", db, small_mnist_dir, "--trials", "20", "--workers", "2")
    assert argv[1:3] == ["-m", "nas.search"]
    argv[1:3] = ["-c", SHORT_HEARTBEAT]
    p = start(argv)
    pid = None
    try:
        victim, pid = pause_one_in_training(db)
        wait_for(lambda: trials(db)[victim.number].state == TrialState.FAIL,
                 "the heartbeat to fail the paused worker's trial", 60)
        os.kill(pid, signal.SIGCONT)
        out, err = p.communicate(timeout=300)
    finally:
        if pid is not None and is_alive(victim.user_attrs[record.PROCESS]):
            os.kill(pid, signal.SIGCONT)
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if f"trial {victim.number} " in x]
    assert "marked failed by another process while this one was paused" in line
    assert_healthy(db, 20)
    ts = trials(db)
    assert record.outcome_of(ts[victim.number]) is None  # not counted: failed, no outcome
    moved = [t for t in ts if t.user_attrs.get(record.RECORDED_FOR) == victim.number]
    if "recorded as trial" in line:  # it finished training after SIGCONT: kept, once
        (t,) = moved
        assert record.was_trained(t) and record.key_of(t) == record.key_of(ts[victim.number])
    else:  # it was failed before its training finished: queued again, trained by someone
        assert not moved and "queued again" in line


def test_export_reads_a_read_only_wal_database_in_a_read_only_folder(small_mnist_dir):
    """The committed results/*.db case: WAL files 0444 in a 0555 folder. Read-only commands
    read them and write nothing there (was: "attempt to write a readonly database")."""
    prefix = unprivileged()
    root = Path(tempfile.mkdtemp(prefix="nas-ro-"))
    try:
        os.chmod(root, 0o755)
        (root / "ro").mkdir()
        db = f"sqlite:///{root / 'ro' / 'nas.db'}"
        subprocess.run(nas_cmd("search", db, small_mnist_dir, "--trials", "1"), check=True,
                       capture_output=True, timeout=300)
        with open(root / "ro" / "nas.db", "rb") as f:
            assert f.read(20)[18:20] == b"\x02\x02"  # the file header says WAL
        for f in (root / "ro").rglob("*"):
            os.chmod(f, 0o555 if f.is_dir() else 0o444)
        os.chmod(root / "ro", 0o555)
        before = {f: f.read_bytes() for f in (root / "ro").rglob("*") if f.is_file()}
        p = subprocess.run(prefix + nas_cmd("export", db, small_mnist_dir, "--out",
                                            str(root / "out")),
                           capture_output=True, text=True, timeout=300, cwd=root)
        assert p.returncode == 0, p.stderr
        assert (root / "out" / "arch.json").is_file() and (root / "out" / "model.py").is_file()
        after = {f: f.read_bytes() for f in (root / "ro").rglob("*") if f.is_file()}
        assert after == before  # nothing written, no -wal or -shm made
    finally:
        for f in [root / "ro", *(root / "ro").rglob("*")] if (root / "ro").exists() else []:
            os.chmod(f, 0o755)
        shutil.rmtree(root, ignore_errors=True)


def test_a_full_disk_at_start_leaves_no_empty_database(tmp_path, small_mnist_dir):
    db = f"sqlite:///{tmp_path / 'nas.db'}"

    def no_room() -> None:  # not one byte may be written: the disk is full from the start
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    full = subprocess.run(nas_cmd("search", db, small_mnist_dir, "--trials", "1"),
                          capture_output=True, text=True, timeout=300, preexec_fn=no_room)
    assert full.returncode == 2
    line = one_line(full.stderr)
    assert line.startswith(f"python -m nas.search: error: storage {db}: ")
    assert "max length" not in line  # Optuna's wrapper's guess, not the cause
    assert not list(tmp_path.glob("nas.db*"))  # was: a 0-byte nas.db


def test_the_printed_commands_work_for_any_study_name(tmp_path, small_mnist_dir):
    """The summary's export command, pasted into a shell, exports the study even when its
    name, storage and artifact folder hold spaces and $."""
    name, folder = "my $HOME study", tmp_path / "a b$x"
    folder.mkdir()
    db = f"sqlite:///{folder / 'n $1.db'}"
    argv = nas_cmd("search", db, small_mnist_dir, "--trials", "1")
    argv[argv.index("--study-name") + 1] = name
    p = subprocess.run(argv + ["--artifact-dir", str(folder / "art $y")], capture_output=True,
                       text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    (export,) = [x for x in p.stdout.splitlines() if x.startswith("export:  ")]
    command = export[len("export:  "):].replace("python ", f"{shlex.quote(sys.executable)} ", 1)
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, (command, done.stderr)
    assert (tmp_path / "export" / "arch.json").is_file()
