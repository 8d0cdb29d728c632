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
