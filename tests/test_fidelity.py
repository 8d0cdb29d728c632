"""The fidelity study: rank statistics on hand-made numbers, and a tiny real study that writes
its run file, resumes without training again, and refuses a resume with other settings."""

from __future__ import annotations

import fcntl
import json
import math
import os
import signal
from pathlib import Path

import pytest
import torch

from nas.cli.common import UserError
from nas.tools import fidelity
from nas.training.host import use_threads
from nas.training.trainer import precision_for

TINY = ["--candidates", "3", "--epochs", "2", "--short-epochs", "1", "--subset", "100",
        "--subset-epochs", "1", "--seeds-spread", "1", "--extra-seeds", "1", "--val-size", "200",
        "--device", "cpu"]  # --threads left at its default: set_num_threads is process-wide


def test_average_ranks_share_ties() -> None:
    assert fidelity.average_ranks([10, 20, 20, 5]) == [2, 3.5, 3.5, 1]


def test_spearman_known_values() -> None:
    assert fidelity.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert fidelity.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties: ranks [1, 2.5, 2.5, 4] against [1, 2, 3, 4] -> sqrt(0.9) (what scipy gives)
    assert fidelity.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(math.sqrt(0.9))
    assert math.isnan(fidelity.spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError):
        fidelity.spearman([1, 2], [1, 2, 3])


def test_top_overlap() -> None:
    truth = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    assert fidelity.top_overlap(truth, truth) == 5
    assert fidelity.top_overlap(truth, truth[::-1]) == 3  # {0..4} & {2..6}
    assert fidelity.top_overlap(truth, truth[::-1], k=2) == 0


def _run(i: int, proxy: str, acc: float | None, seed: int = 0, curve: list[float] | None = None,
         seconds: float = 10.0, images: int = 1000) -> dict:
    curve = curve or [acc]
    return {"candidate": i, "proxy": proxy, "seed": seed, "key": f"k{i}", "params": 100 + i,
            "val_curve": curve, "final_acc": acc, "seconds": seconds, "images": images,
            "epoch_seconds": [seconds / len(curve)] * len(curve)}


def test_analyze_hand_made() -> None:
    ident = {"epochs": 2, "short_epochs": [1], "subset": 10, "subset_epochs": 1}
    full = [0.99, 0.98, 0.97, 0.96]
    epoch1 = [0.90, 0.80, 0.85, 0.70]  # ranks the candidates 1, 3, 2, 4
    runs = [_run(i, "full", f, curve=[e, f]) for i, (f, e) in enumerate(zip(full, epoch1))]
    runs += [_run(i, "short-1e", 0.5, seconds=2.5, images=500) for i in range(3)]  # constant
    runs += [_run(0, "full", 0.97, seed=1), _run(0, "full", 0.98, seed=2)]
    runs += [_run(4, "full", None), _run(3, "short-1e", None)]  # diverged: left out, listed
    a = fidelity.analyze(runs, ident)
    assert [c["candidate"] for c in a["candidates"]] == [0, 1, 2, 3]
    e1 = a["proxies"]["epoch-1"]
    assert e1["spearman"] == pytest.approx(0.8) and e1["n"] == 4
    assert e1["top5_kept"] == 4 and e1["top_k"] == 4
    assert e1["time_fraction"] == pytest.approx(0.5) and e1["images_fraction"] == 0.5
    s1 = a["proxies"]["short-1e"]
    assert s1["n"] == 3 and s1["spearman"] is None  # a constant proxy ranks nothing
    assert s1["time_fraction"] == pytest.approx(0.25) and s1["images_fraction"] == 0.5
    assert a["proxies"]["subset-10-1e"]["n"] == 0
    (sp,) = a["seed_spread"]["candidates"]
    assert sp["candidate"] == 0 and sp["seeds"] == 3
    assert sp["mean"] == pytest.approx(0.98) and sp["std"] == pytest.approx(0.01)
    assert a["seed_spread"]["pooled_std"] == pytest.approx(0.01)
    assert a["diverged"] == [[4, "full", 0], [3, "short-1e", 0]]
    # A candidate stuck at chance on three seeds shows no spread, and is no noise floor.
    stuck = [_run(9, "full", 0.1135, seed=s, curve=[0.1135, 0.1135]) for s in range(3)]
    b = fidelity.analyze(runs + stuck, ident)
    assert len(b["seed_spread"]["candidates"]) == 2
    assert b["seed_spread"]["pooled_std"] == pytest.approx(0.01)
    # All four learned (>= 50 %): the same judgement.
    assert a["proxies_learned"]["epoch-1"] == e1


def test_analyze_judges_the_learned_candidates_apart() -> None:
    """Two candidates stuck at chance (11 %) that every proxy puts last, and three that
    learned, which epoch 1 orders exactly backwards. By hand, ranks full 5,4,3,1.5,1.5 and
    proxy 3,4,5,1.5,1.5, deviations from the mean 3: covariance sum 0+1+0+2.25+2.25 = 5.5,
    each variance sum 4+1+0+2.25+2.25 = 9.5, so over all five Spearman is 5.5/9.5 = 11/19, a
    fair-looking 0.58; over the learned three it is -1."""
    ident = {"epochs": 2, "short_epochs": [1], "subset": 10, "subset_epochs": 1}
    full = [0.99, 0.98, 0.97, 0.11, 0.11]
    epoch1 = [0.90, 0.91, 0.92, 0.11, 0.11]
    runs = [_run(i, "full", f, curve=[e, f]) for i, (f, e) in enumerate(zip(full, epoch1))]
    a = fidelity.analyze(runs, ident)
    assert a["proxies"]["epoch-1"]["spearman"] == pytest.approx(11 / 19)
    learned = a["proxies_learned"]["epoch-1"]
    assert learned["n"] == 3 and learned["spearman"] == pytest.approx(-1.0)


def test_cut_last_line_is_ignored_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    cut = '{"kind": "header", "identity": {}}\n{"kind": "run", "cand'
    path.write_text(cut)
    for repair in (False, True):
        header, runs = fidelity.read_runs(path, repair=repair)
        assert header == {"kind": "header", "identity": {}} and runs == []
        # a reader leaves the file alone (the study may be writing); a writer cuts the stub
        assert path.read_text() == (cut.split("\n")[0] + "\n" if repair else cut)


def test_study_runs_resumes_and_refuses_other_settings(tiny_mnist_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    argv = TINY + ["--data-dir", str(tiny_mnist_dir), "--out", str(tmp_path)]
    assert fidelity.main(argv) == 0
    path = tmp_path / "fidelity-20000p-2e-runs.jsonl"
    header, runs = fidelity.read_runs(path)
    assert header is not None and header["identity"]["epochs"] == 2
    got = sorted((r["candidate"], r["proxy"], r["seed"]) for r in runs)
    want = sorted([(i, p, 0) for i in range(3) for p in ("full", "short-1e", "subset-100-1e")]
                  + [(0, "full", 1)])
    assert got == want
    for r in runs:
        assert len(r["val_curve"]) == r["epochs"] and r["final_acc"] == r["val_curve"][-1]
        assert r["params"] <= 20_000 and r["cpu_model"] and "avx512_bf16" in r["cpu_flags"]
        assert len(r["trainer_sha256"]) == 12 and r["commit"]
        assert r["device"].endswith(f"{torch.get_num_threads()} threads)")
    assert len({r["key"] for r in runs}) == 3
    out = capsys.readouterr().out  # a line per epoch and per run, for watching a long study
    assert "candidate 2 full seed 0 epoch 2/2: " in out and "[10/10] candidate 0 full seed 1" in out
    rep = json.loads((tmp_path / "fidelity-20000p-2e.json").read_text())
    assert rep["partial"] is False and rep["runs_done"] == 10
    assert len(rep["analysis"]["trainer_versions"]) == 1
    assert set(rep["analysis"]["proxies"]) == {"epoch-1", "short-1e", "subset-100-1e"}
    # images actually trained: the trainer drops the ragged batch (400 // 256 * 256 per epoch)
    assert rep["analysis"]["proxies"]["subset-100-1e"]["images_fraction"] == pytest.approx(
        100 / (256 * 2))
    md = (tmp_path / "fidelity-20000p-2e.md").read_text()
    assert "PARTIAL" not in md
    # 100 candidates x 100 / 512 of a full training's images = 19.5 full trainings
    assert "| subset-100-1e | 3 |" in md and "| 0.195 | 19.5 |" in md
    assert "| ≥ 50.0 |" in md  # epoch-1 of 2: at best half of every full training

    calls = []
    real_train = fidelity.train
    monkeypatch.setattr(fidelity, "train", lambda *a, **k: calls.append(a) or real_train(*a, **k))
    before = path.read_text()
    assert fidelity.main(argv) == 0
    assert calls == [] and path.read_text() == before  # resumed: nothing trained again

    # One more candidate extends the same fixed draw: only its three runs are new.
    assert fidelity.main([*argv, "--candidates", "4"]) == 0
    assert len(calls) == 3 and {c[0].key() for c in calls} - {r["key"] for r in runs}
    assert fidelity.main([*argv, "--analyze-only"]) == 0

    with pytest.raises(UserError, match="other settings.*subset"):
        fidelity.main([*argv, "--subset", "50"])

    # One arithmetic per study: each line says what it trained in (the trainer was told so),
    # and a resume that would train otherwise is refused, also for lines from before they
    # said it (then their bf16_autocast says).
    here = precision_for(torch.device("cpu"), "auto")
    other = "fp32" if here == "bf16" else "bf16"
    assert {r["precision"] for r in fidelity.read_runs(path)[1]} == {here}
    assert {c[3].precision for c in calls} == {here}  # train(spec, tr, val, cfg, ...)
    with pytest.raises(UserError, match=f"trained in {here}; this would train in {other}: "
                                        f"pass --precision {here}"):
        fidelity.main([*argv, "--precision", other])
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({k: v for k, v in x.items() if k != "precision"}) + "\n"
                            for x in lines))
    with pytest.raises(UserError, match=f"trained in {here}; this would train in {other}"):
        fidelity.main([*argv, "--precision", other])
    broken = [*lines[:1], {**lines[1], "precision": [1]}, *lines[2:]]  # was: a traceback
    path.write_text("".join(json.dumps(x) + "\n" for x in broken))
    with pytest.raises(UserError, match=rf"trained in \[1\], {here}; .*: use another --out$"):
        fidelity.main([*argv, "--precision", here])
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert fidelity.main([*argv, "--precision", here]) == 0
    with open(path, "a") as held:  # a study already running
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(UserError, match="another nas.fidelity is running"):
            fidelity.main([*argv, "--candidates", "5"])
    assert len(calls) == 3


def test_sigterm_keeps_the_file_whole_and_resume_finishes(tiny_mnist_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    argv = [*TINY, "--candidates", "1", "--seeds-spread", "0", "--data-dir",
            str(tiny_mnist_dir), "--out", str(tmp_path)]
    real_train = fidelity.train
    calls = []

    def killed_on_second(*a, **k):
        calls.append(a)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives inside the second run
        return real_train(*a, **k)

    monkeypatch.setattr(fidelity, "train", killed_on_second)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt) as info:
        fidelity.main(argv)
    assert info.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is the study's alone
    path = tmp_path / "fidelity-20000p-2e-runs.jsonl"
    assert [r["proxy"] for r in fidelity.read_runs(path)[1]] == ["full"]
    assert fidelity.main(argv) == 0
    assert len(calls) == 4  # the lost run and the one after it, nothing else again
    assert len(fidelity.read_runs(path)[1]) == 3


def test_two_workers_write_the_same_runs_as_one(tiny_mnist_dir: Path, tmp_path: Path) -> None:
    """--workers 2: every planned run once, each line whole, the same accuracies as one
    process would get (same data, seeds and thread count), no worker left behind."""
    import multiprocessing

    base = [*TINY, "--candidates", "2", "--data-dir", str(tiny_mnist_dir), "--threads", "1"]
    threads = torch.get_num_threads()
    try:
        assert fidelity.main([*base, "--out", str(tmp_path / "one")]) == 0
        assert fidelity.main([*base, "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    finally:
        use_threads(threads)  # process-wide: later tests expect the default
    assert multiprocessing.active_children() == []

    def runs(folder: str) -> dict:
        _, rs = fidelity.read_runs(tmp_path / folder / "fidelity-20000p-2e-runs.jsonl")
        return {(r["candidate"], r["proxy"], r["seed"]): (r["key"], r["images"], r["val_curve"])
                for r in rs}

    one, two = runs("one"), runs("two")
    assert len(one) == 7 and one.keys() == two.keys()
    for k in one:  # same architecture and images; curves equal up to kernel nondeterminism
        assert one[k][:2] == two[k][:2]
        assert two[k][2] == pytest.approx(one[k][2], abs=0.02)


def _children(pid: int) -> set[int]:
    try:
        return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_sigterm_to_a_parallel_study_ends_its_workers(tiny_mnist_dir: Path,
                                                      tmp_path: Path) -> None:
    """A real process with --workers 2, SIGTERM while both train: exit 143, one line, no
    worker left, the run file whole, and the same command finishes the study."""
    import subprocess
    import sys
    import time

    argv = [sys.executable, "-m", "nas.fidelity", *TINY, "--epochs", "12", "--candidates", "2",
            "--data-dir", str(tiny_mnist_dir), "--out", str(tmp_path), "--threads", "1",
            "--workers", "2"]
    log = tmp_path / "log"
    with open(log, "w") as out:
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while log.read_text().count("full seed 0 epoch") < 2:  # both in their first runs
            assert p.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        kids = _children(p.pid)
        assert len(kids) >= 2
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    deadline = time.monotonic() + 30
    while [k for k in kids if _alive(k)]:
        assert time.monotonic() < deadline, f"workers left: {[k for k in kids if _alive(k)]}"
        time.sleep(0.1)
    path = tmp_path / "fidelity-20000p-12e-runs.jsonl"
    header, runs = fidelity.read_runs(path)
    assert header is not None and all(r["final_acc"] is not None for r in runs)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert len(fidelity.read_runs(path)[1]) == 7


def test_replay_pruner_on_recorded_curves() -> None:
    """No pruner: every candidate trains all 4 epochs, 100 candidates = 100 full trainings.
    Hyperband on curves that keep their order from epoch 1 on stops the weak ones early,
    and never loses the best one (it leads at every rung)."""
    curves = [[0.1 + 0.2 * k + 0.01 * e for e in range(4)] for k in range(4)]
    none = fidelity.replay_pruner(curves, 4, "none", trials=20, seeds=2)
    assert none["epochs_per_candidate"] == 4 and none["full_trainings"] == 20
    assert none["best_finished"] == 2
    hb = fidelity.replay_pruner(curves, 4, "hyperband", trials=60, seeds=2)
    assert 1 <= hb["epochs_per_candidate"] < 4
    assert hb["full_trainings"] == pytest.approx(60 * hb["epochs_per_candidate"] / 4)
    assert hb["best_finished"] == 2
