"""The study's record: one module owns it, and studies written by earlier releases still read."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest

from nas.cli import export, replay
from nas.cli.common import run
from nas.study import cost, record, selection

OLD_STUDY = Path(__file__).parent / "data" / "study-v0.1.0.db"


def test_select_trial_by_number_and_best():
    study = optuna.create_study(direction="maximize")
    for value in (0.5, 0.9, 0.7):
        t = study.ask()
        t.set_user_attr(record.SPEC, "{}")
        study.tell(t, value)
    t = study.ask()
    record.write_outcome(t, record.REJECTED, "25,000 parameters > budget 20,000")
    study.tell(t, state=optuna.trial.TrialState.PRUNED)
    assert selection.select_trial(study, None).number == 1
    assert selection.select_trial(study, 2).value == 0.7
    with pytest.raises(record.RecordError, match="trial 3 did not complete .pruned: 25,000"):
        selection.select_trial(study, 3)
    with pytest.raises(record.RecordError, match="has no trial 7 .trials 0-3"):
        selection.select_trial(study, 7)
    assert [t.number for t in selection.completed(study)] == [1, 2, 0]


@pytest.fixture()
def old_study(tmp_path) -> str:
    """A copy of a study written by nas 0.1.0 (search, then a replay of its best trial)."""
    shutil.copyfile(OLD_STUDY, tmp_path / "old.db")
    return f"sqlite:///{tmp_path / 'old.db'}"


def test_a_study_from_the_previous_release_exports_and_replays(old_study, tmp_path,
                                                               tiny_mnist_dir, capsys):
    study = optuna.load_study(study_name="mnist-12000p-1e", storage=old_study)
    best = selection.select_trial(study, None)
    assert record.replay_of(study, best.number)["seeds"] == [0]  # the old replay is read

    with pytest.raises(SystemExit) as e:
        run(export.main, "nas.export", ["--storage", old_study, "--out", str(tmp_path / "e")])
    assert e.value.code == 0, capsys.readouterr().err
    # The old replay's weights lived on another machine: the architecture files still come.
    assert (tmp_path / "e" / "arch.json").read_text().strip() == \
        record.spec_of(best).to_json(indent=2)
    assert "replay, final-epoch test accuracy over 1 seed(s)" in \
        (tmp_path / "e" / "summary.md").read_text()

    with pytest.raises(SystemExit) as e:
        run(replay.main, "nas.replay", ["--storage", old_study, "--epochs", "1", "--seeds", "2",
                                        "--data-dir", str(tiny_mnist_dir), "--out",
                                        str(tmp_path / "r"), "--no-progress"])
    assert e.value.code == 0, capsys.readouterr().err
    assert f"trial {best.number} ({record.param_count_of(best):,} parameters, 1 epochs, 2 seeds" \
        in capsys.readouterr().out
    again = optuna.load_study(study_name="mnist-12000p-1e", storage=old_study)
    assert record.replay_of(again, best.number)["seeds"] == [0, 1]


def test_the_record_format_is_written_read_and_a_newer_one_refused(old_study, tmp_path,
                                                                    capsys):
    study = optuna.create_study(direction="maximize")
    record.write_study(study, {"max_params": 1}, {"name": "MNIST"}, 1, 1)
    assert study.user_attrs[record.FORMAT] == record.FORMAT_VERSION == record.format_of(study)
    old = optuna.load_study(study_name="mnist-12000p-1e", storage=old_study)
    assert record.format_of(old) == 1  # nas 0.1.0 wrote no format: 1
    record.check_format(old)

    old.set_user_attr(record.FORMAT, record.FORMAT_VERSION + 1)
    with pytest.raises(SystemExit) as e:
        run(export.main, "nas.export", ["--storage", old_study, "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"record format {record.FORMAT_VERSION + 1}" in err and "upgrade nas" in err
    assert not (tmp_path / "e").exists()  # refused before anything was written

    old.set_user_attr(record.FORMAT, "two")
    with pytest.raises(record.RecordError, match="attribute 'format' must be a format version"):
        record.format_of(old)


def test_search_cost_counts_images_of_both_stages_in_full_schedule_trainings():
    """By hand: the split has 1,000 images, the full schedule 15 epochs, so one full training
    is 15,000 images. Search-stage curves of 3, 1 and 0 epochs (a rejected candidate) on a
    250-image subset, plus 2 epochs recorded by a trial still running: 6 epochs, 1,500 images,
    0.1 trainings. Two finalist runs of 15 epochs on all 1,000 (one from before 0.2, which
    recorded no image count): 30,000 images, 2.0 trainings. In all 31,500 / 15,000 = 2.1.
    Trials of 60 s, 30 s, 1 s, 100 s, 100 s; the last ends 400 s after the first started."""
    from datetime import datetime, timedelta

    t0 = datetime(2026, 11, 25, 12, 0, 0)
    study = optuna.create_study(direction="maximize")
    study.set_user_attr(record.DATASET, {"train": 1000})
    runs = [(record.SEARCH, 3, 0, 60, 250), (record.SEARCH, 1, 60, 30, 250),
            (record.SEARCH, 0, 90, 1, None), (record.FINALIST, 15, 100, 100, 1000),
            (record.FINALIST, 15, 300, 100, None)]
    for n, (stage, epochs, start, seconds, images) in enumerate(runs):
        attrs = {record.STAGE: stage, record.VAL_ACC: [0.5] * epochs}
        if images is not None:
            attrs[record.TRAIN_IMAGES] = images
        study.add_trial(optuna.trial.FrozenTrial(
            number=n, state=optuna.trial.TrialState.COMPLETE, value=0.5,
            datetime_start=t0 + timedelta(seconds=start),
            datetime_complete=t0 + timedelta(seconds=start + seconds), params={},
            distributions={}, user_attrs=attrs, system_attrs={}, intermediate_values={},
            trial_id=n))
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.RUNNING,
        user_attrs={record.VAL_ACC: [0.4, 0.6], record.TRAIN_IMAGES: 250}))
    spent = cost.search_cost(study, 15)
    assert spent.epochs == {record.SEARCH: 6, record.FINALIST: 30}
    assert spent.images == {record.SEARCH: 1500, record.FINALIST: 30000}
    assert spent.full_trainings == pytest.approx(2.1)
    assert spent.trial_seconds == pytest.approx(291.0)
    assert spent.span_seconds == pytest.approx(400.0)
    assert spent.line() == (
        "compute: 2.1 full-schedule trainings (0.1 in the search stage (6 epochs), 2.0 in the "
        "finalist stage (30 epochs); one = 15 epochs of 1,000 images); trials took 4 min 51 s "
        "(first start to last end 6 min 40 s)")
    assert cost.search_cost(optuna.create_study(), 15).full_trainings == 0.0


def _finalist(number: int, rows: list[list[int]]):
    from optuna.trial import create_trial

    from nas.study.record import FINALIST, FINALIST_SEED, STAGE, VAL_CORRECT, encode_correct
    from nas.study.selection import Finalist

    runs = tuple(create_trial(value=sum(r) / len(r), user_attrs={
        STAGE: FINALIST, FINALIST_SEED: seed, VAL_CORRECT: encode_correct([bool(b) for b in r])})
        for seed, r in enumerate(rows))
    return Finalist(f"net{number}", runs)


def test_per_image_records_round_trip():
    from nas.study.record import encode_correct

    for bits in ([True], [False, False, True], [True] * 9 + [False] * 4, []):
        t = _finalist(0, [[int(b) for b in bits]]).runs[0] if bits else None
        if t is not None:
            assert record.val_correct_of(t) == bits
    assert encode_correct([False, True, False, False]) == {"n": 4, "hex": "4"}


def test_compare_by_hand_ahead_and_tie():
    best = _finalist(1, [[1, 1, 1, 0], [1, 1, 0, 1]])  # 75 % on both seeds
    other = _finalist(2, [[1, 0, 1, 0], [1, 1, 0, 0]])  # 50 % on both seeds
    c = selection.compare(best, other)
    assert c.difference == pytest.approx(0.25)
    assert c.se_seeds == 0.0  # no spread over seeds
    # Per image, share of seeds right: [1, 1, .5, .5] - [1, .5, .5, 0] = [0, .5, 0, .5];
    # stdev = sqrt(4 * .25**2 / 3), SE = stdev / sqrt(4).
    assert c.se_paired == pytest.approx((4 * 0.25 ** 2 / 3) ** 0.5 / 2)
    assert c.images == 4 and not c.tie
    # Two finalists with the same errors on the same images: a tie, whatever the means say.
    same = selection.compare(best, _finalist(3, [[1, 1, 1, 0], [1, 1, 0, 1]]))
    assert same.difference == 0.0 and same.tie
    # A lead smaller than the seed spread is a tie too.
    a = _finalist(4, [[1, 1, 1, 1], [1, 0, 0, 0]])  # 100 %, 25 %: mean 62.5 %, SE 37.5 points
    b = _finalist(5, [[1, 1, 0, 0], [1, 1, 0, 0]])  # 50 %
    c = selection.compare(a, b)
    assert c.se_seeds == pytest.approx(0.375) and c.tie
