"""The two stages: a cheap search stage, then finalists retrained with the full schedule on
several seeds; resuming in the middle of the second; the test images never read."""

from __future__ import annotations

import re
from dataclasses import replace

import optuna
import pytest
from optuna.trial import TrialState

import nas.study.objective as objectives
from nas.study import cost, record, selection
from nas.study.config import summary
from nas.study.processes import Interrupted
from nas.study.runner import search
from nas.study.storage import open_storage
from tests.helpers import TINY_TRAIN, sigterm_at_second_run_of, tiny_config


def two_stage(tmp_path, data_dir, **changes):
    settings = dict(trials=3, max_params=12_000, pruner="none", proxy_epochs=1,
                    full_schedule=replace(TINY_TRAIN, epochs=3), finalists=2, finalist_seeds=2)
    return tiny_config(tmp_path, data_dir, **{**settings, **changes})


def load(cfg) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=cfg.study_name,
                             storage=open_storage(cfg.storage)).get_trials()


def test_search_stage_then_finalists_on_several_seeds(tmp_path, tiny_mnist_dir):
    cfg = two_stage(tmp_path, tiny_mnist_dir)
    study = search(cfg, progress=False)
    trials = load(cfg)
    searched = [t for t in trials if record.was_trained(t)]
    final = [t for t in trials if record.stage_of(t) == record.FINALIST]
    assert len(searched) == 3 and all(
        len(record.curve_of(t)) == 1 and record.train_config_of(t)["epochs"] == 1
        for t in searched)  # the proxy: a complete 1-epoch schedule
    # The two best search-stage architectures, each on seeds 0 and 1, full schedule, no pruning.
    best_two = sorted(searched, key=lambda t: -t.value)[:2]
    assert sorted((t.user_attrs[record.FINALIST_OF], t.user_attrs[record.FINALIST_SEED])
                  for t in final) == sorted((t.number, s) for t in best_two for s in (0, 1))
    for t in final:
        assert t.state == TrialState.COMPLETE and len(record.curve_of(t)) == 3
        cfg_t = record.train_config_of(t)
        assert cfg_t["epochs"] == 3 and cfg_t["seed"] == t.user_attrs[record.FINALIST_SEED]
        assert record.key_of(t) == record.key_of(trials[t.user_attrs[record.FINALIST_OF]])
    # The best is the best mean over seeds, and export/replay pick it by default.
    groups = selection.finalists(study)
    means = {f.key: sum(f.accs) / 2 for f in groups}
    assert groups[0].mean == max(means.values()) and len(groups[0].runs) == 2
    assert selection.select_trial(study, None).number == groups[0].runs[0].number
    # What optuna-dashboard shows: labels in the trial list, finalist headings, the pick.
    from optuna_dashboard import get_note

    for t in final:
        label = (f"finalist of #{t.user_attrs[record.FINALIST_OF]}, seed "
                 f"{t.user_attrs[record.FINALIST_SEED]}")
        assert t.user_attrs[record.LABEL] == label
        assert get_note(optuna.trial.Trial(study, t._trial_id)).startswith(
            f"## Trial {t.number}: {label}: ")
    assert all(t.user_attrs[record.LABEL] == "search" for t in searched)
    note = get_note(study)
    assert "## Finalists: the pick" in note
    best = groups[0]
    assert (f"| {best.runs[0].number} | #{best.runs[0].user_attrs[record.FINALIST_OF]} | "
            f"{best.mean:.2%} | {best.se:.2%} |") in note
    assert "pick: " in note  # ahead of the runner-up, or a tie: said either way
    # Every row of the table has the header's 8 cells: a spec key's "|" is escaped.
    table = [line for line in note.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(groups)
    assert all(len(re.findall(r"(?<!\\)\|", line)) == 9 for line in table), table
    # Asking again does nothing more.
    n = len(trials)
    search(cfg, progress=False)
    assert len(load(cfg)) == n


def test_an_interrupted_finalist_stage_is_finished_by_the_next_search(tmp_path, tiny_mnist_dir,
                                                                       monkeypatch, capsys):
    cfg = two_stage(tmp_path, tiny_mnist_dir)
    stop_at_the_second_finalist, calls = sigterm_at_second_run_of(3, objectives.train)
    monkeypatch.setattr(objectives, "train", stop_at_the_second_finalist)
    with pytest.raises(Interrupted):
        search(cfg, progress=False)
    trials = load(cfg)
    final = [t for t in trials if record.stage_of(t) == record.FINALIST]
    assert [t.state for t in final].count(TrialState.COMPLETE) == 1
    assert [record.outcome_of(t) for t in final].count(record.INTERRUPTED) == 1
    assert [t.state for t in final].count(TrialState.WAITING) == 2  # still queued

    calls.clear()
    capsys.readouterr()
    search(cfg, progress=True)
    assert calls == [3, 3, 3]  # the three missing runs, nothing of stage one, nothing twice
    plan = capsys.readouterr().err
    # The summary's first line counts candidates (none was interrupted); the finalists'
    # header counts the finalist run that was, and ran again.
    text = summary(optuna.load_study(study_name=cfg.study_name, storage=cfg.storage), cfg)
    assert ", 0 interrupted" in text.splitlines()[0]
    assert "\ndata: " not in text  # MNIST's summary names no data (other data's does)
    assert "the first is the pick; 1 run(s) interrupted and run again):" in text
    assert "  finalists: 3 training(s) of 3 epoch(s)" in plan  # the plan counts them too
    assert "  search: " not in plan
    # The bar: the finalists' own best (a mean over seeds), the whole run's time left, and
    # the epochs bar moving inside an epoch (fractions of an epoch).
    assert "best finalist " in plan and "whole run ~" in plan
    assert re.search(r"\b[0-2]\.[1-9]/3 epochs", plan), plan[-2000:]
    final = [t for t in load(cfg) if record.stage_of(t) == record.FINALIST]
    done = [t for t in final if t.state == TrialState.COMPLETE]
    assert len(done) == 4 and len({(record.key_of(t), t.user_attrs[record.FINALIST_SEED])
                                   for t in done}) == 4
    assert not [t for t in final if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_finalists_with_parallel_workers(tmp_path, tiny_mnist_dir):
    cfg = two_stage(tmp_path, tiny_mnist_dir, workers=2)
    search(cfg, progress=False)
    final = [t for t in load(cfg) if record.stage_of(t) == record.FINALIST]
    assert sorted(t.state.name for t in final) == ["COMPLETE"] * 4


def test_the_test_images_are_never_read_during_search(tmp_path, tiny_mnist_dir, monkeypatch):
    """Selection happens on the validation split: the test split may not even be touched."""
    import nas.training.data

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"the search read the test images ({name})")

        def __len__(self):
            raise AssertionError("the search read the test images (len)")

    real = nas.training.data.load_mnist

    def no_test(*a, **k):
        m = real(*a, **k)
        return nas.training.data.MNIST(m.train, Untouchable(), m.source)  # type: ignore[arg-type]

    for module in ("nas.training.data", "nas.study.runner", "nas.study.config"):
        monkeypatch.setattr(f"{module}.load_mnist", no_test)
    cfg = two_stage(tmp_path, tiny_mnist_dir, finalists=1, finalist_seeds=1)
    search(cfg, progress=False)
    assert sum(record.stage_of(t) == record.FINALIST for t in load(cfg)) == 1


def test_timeout_ends_the_search_stage(tmp_path, tiny_mnist_dir):
    cfg = two_stage(tmp_path, tiny_mnist_dir, trials=50, finalists=1, finalist_seeds=1,
                    timeout=1e-6)
    search(cfg, progress=False)
    trials = load(cfg)
    assert sum(record.was_trained(t) for t in trials) < 50


def test_proxy_subset_trains_the_search_stage_on_fewer_images_and_the_finalists_on_all(
        tmp_path, tiny_mnist_dir, monkeypatch):
    seen: list[tuple[int, int]] = []  # (images, epochs) of every training
    real = objectives.train

    def spy(spec, train_split, val_split, cfg, *args, **kwargs):
        seen.append((len(train_split), cfg.epochs))
        return real(spec, train_split, val_split, cfg, *args, **kwargs)

    monkeypatch.setattr(objectives, "train", spy)
    cfg = two_stage(tmp_path, tiny_mnist_dir, proxy_subset=200)
    study = search(cfg, progress=False)
    trials = load(cfg)
    # 3 search-stage trainings of 1 epoch on 200 of the 400 training images, then 2 finalists
    # x 2 seeds of 3 epochs on all 400.
    assert seen == [(200, 1)] * 3 + [(400, 3)] * 4
    assert {t.user_attrs[record.TRAIN_IMAGES] for t in trials if record.was_trained(t)} == {200}
    spent = cost.search_cost(study, 3)
    assert spent.images == {record.SEARCH: 600, record.FINALIST: 4800}
    assert spent.full_trainings == pytest.approx(5400 / 1200)
    # Another subset is another study's settings: refused.
    with pytest.raises(Exception, match="proxy_subset"):
        search(replace(cfg, proxy_subset=300), progress=False)
    with pytest.raises(Exception, match="--proxy-subset 99 is smaller than the batch size"):
        search(replace(cfg, proxy_subset=99, study_name="other"), progress=False)
    # At least the split: the split, as if none were given.
    seen.clear()
    search(replace(cfg, proxy_subset=401, study_name="other", finalists=0), progress=False)
    assert seen == [(400, 1)] * 3


def test_a_subset_is_the_same_images_every_time(tiny_mnist_dir):
    from nas.training.data import DataError, load_mnist

    tr = load_mnist(tiny_mnist_dir).train
    a, b = tr.subset(50, 3), tr.subset(50, 3)
    assert len(a) == 50 and a.x.equal(b.x) and a.y.equal(b.y)
    assert not tr.subset(50, 4).x.equal(a.x)
    with pytest.raises(DataError):
        tr.subset(len(tr) + 1)


def test_a_search_stage_cut_short_leaves_its_queue_to_nobody(tmp_path, tiny_mnist_dir):
    """Optuna hands out the oldest queued trial first: starting members the search stage had
    no time for come before the finalists' runs. A finalist ticket must not train them (under
    --time-budget that time was kept for the finalists): they are rejected untrained, in
    words, and each ticket still runs its finalist."""
    from nas.study.config import prepare_study
    from nas.study.runner import Tickets, run_worker
    from nas.study.stages import FinalistStage, SearchStage

    cfg = two_stage(tmp_path, tiny_mnist_dir, trials=4, finalists=1, finalist_seeds=2)
    study = prepare_study(cfg)
    assert SearchStage(cfg).queue(study) == 4  # four starting members queued
    run_worker(cfg, SearchStage(cfg), Tickets(1), progress=False)  # the stage ends after one
    final = FinalistStage(cfg)
    assert final.queue(study) == 2
    run_worker(cfg, final, Tickets(2), progress=False)
    trials = load(cfg)
    runs = [t for t in trials if record.stage_of(t) == record.FINALIST]
    assert [t.state for t in runs] == [TrialState.COMPLETE] * 2
    left = [t for t in trials if record.stage_of(t) == record.SEARCH and not record.was_trained(t)]
    assert len(left) == 3 and all(t.state == TrialState.PRUNED for t in left)
    assert all(record.reason_of(t).startswith("not trained: queued for the search stage")
               for t in left)
    assert record.count_trained(study) == 1
