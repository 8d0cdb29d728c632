"""The studies committed under results/ (made before the record had a format version) still
export and replay with this release, unchanged: checked on copies, never on the originals."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import optuna
import pytest

from nas.cli import export, replay
from nas.cli.common import run
from nas.study import record, selection

RESULTS = Path(__file__).resolve().parent.parent / "results"
STUDIES = {"search-8000p-15e.db": "mnist-8000p-15e", "search-20000p-15e.db": "mnist-20000p-15e"}


def copy_of(name: str, tmp_path: Path) -> str:
    db = RESULTS / name
    if not db.exists():
        pytest.skip(f"{db} is not in this checkout")
    shutil.copyfile(db, tmp_path / name)
    shutil.copytree(RESULTS / f"{name}.artifacts", tmp_path / f"{name}.artifacts")
    return f"sqlite:///{tmp_path / name}"


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_a_committed_study_exports_and_replays(name, tmp_path, tiny_mnist_dir, capsys):
    url = copy_of(name, tmp_path)
    study = optuna.load_study(study_name=STUDIES[name], storage=url)
    assert record.format_of(study) == 1  # written before the format was recorded
    best = selection.select_trial(study, None)
    assert record.stage_of(best) == record.FINALIST  # the pick is a finalist's run

    with pytest.raises(SystemExit) as e:
        run(export.main, "nas.export", ["--storage", url, "--out", str(tmp_path / "e"),
                                        "--trials-csv"])
    assert e.value.code == 0, capsys.readouterr().err
    out = tmp_path / "e"
    rows = list(csv.DictReader((out / "trials.csv").open()))
    trials = study.get_trials()
    assert [int(r["number"]) for r in rows] == [t.number for t in trials]
    assert Counter(r["outcome"] for r in rows) == Counter(record.outcome_of(t) or ""
                                                           for t in trials)
    pick = rows[best.number]
    assert (float(pick["val_acc"]), int(pick["params"]), pick["stage"], int(pick["finalist_of"]),
            int(pick["epochs"])) == (best.value, record.param_count_of(best), "finalist",
                                     record.finalist_of(best), 15)
    rejected = next(r for r in rows if r["outcome"] == "rejected")
    assert rejected["val_acc"] == "" and "budget" in rejected["reason"]
    assert json.loads((out / "arch.json").read_text()) == json.loads(record.spec_of(best).to_json())
    # Its replay's weights are in the copied artifact folder: the export carries them.
    assert (out / "weights.pt").exists() and (out / "model.onnx").exists()
    assert f"trial {best.number}" in (out / "summary.md").read_text()

    before = record.replay_of(study, best.number)
    with pytest.raises(SystemExit) as e:
        run(replay.main, "nas.replay", ["--storage", url, "--epochs", "1", "--seeds", "1",
                                        "--data-dir", str(tiny_mnist_dir), "--out",
                                        str(tmp_path / "r"), "--no-progress"])
    assert e.value.code == 0, capsys.readouterr().err
    after = record.replay_of(optuna.load_study(study_name=STUDIES[name], storage=url),
                             best.number)
    assert after["seeds"] == [0] and after != before  # the new replay is recorded


def test_the_committed_fashion_comparison_agrees_with_itself(tmp_path):
    """The Fashion-MNIST result files (README's table) are one set of runs: the study's pick,
    its recorded replay, the replay's report, the committed weights scored by the paired test,
    and the hand designs' reports agree, and each mean, std and lead is recomputed here by
    hand. Reads files only: no training, no test images."""
    import statistics

    from nas.arch.build import build

    study = optuna.load_study(study_name="fashion-mnist-20000p-15e",
                              storage=copy_of("search-fashion-20000p-15e.db", tmp_path))
    pick = selection.select_trial(study, None)
    model = build(record.spec_of(pick))
    assert pick.number == 129 and record.param_count_of(pick) == 19_750
    assert sum(p.numel() for p in model.parameters()) == 19_750 < 20_000

    report = json.loads((RESULTS / "replay-search-fashion-20000p-15e.json").read_text())
    stored = record.replay_of(study, pick.number)
    accs = report["test_acc_final"]
    assert report["trial"] == 129 and report["seeds"] == stored["seeds"] == [0, 1, 2, 3, 4]
    assert stored["test_acc_final"] == accs and report["precision"] == "fp32"
    assert report["mean"] == pytest.approx(statistics.mean(accs), abs=1e-9)
    assert report["std"] == pytest.approx(statistics.stdev(accs), abs=1e-9)

    hands = {name: json.loads((RESULTS / f"replay-fashion-{name}-15e.json").read_text())
             for name in ("hardmaru_fashion_83k", "pool_bn_19k")}
    for name, hand in hands.items():
        paired = json.loads(
            (RESULTS / f"paired-test-fashion-search-vs-{name}.json").read_text())
        # The paired test scored the committed weights again: each seed's accuracy is the
        # replay's own (reports round to 4 places), on both sides.
        assert [round(a, 4) for a in paired["a_seeds"]] == accs
        assert [round(b, 4) for b in paired["b_seeds"]] == hand["test_acc_final"]
        # The mean of per-image differences is the difference of the means.
        assert paired["difference"] == pytest.approx(
            statistics.mean(paired["a_seeds"]) - statistics.mean(paired["b_seeds"]), abs=1e-6)
        assert paired["difference"] > 4 * paired["se_paired"]  # the README's "over four SEs"
