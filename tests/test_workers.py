"""Several worker processes on one study: exactly --trials trained, nothing lost, no lock
errors, on every backend (SQLite, journal, PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace

import optuna
from optuna.trial import TrialState

from nas.study import record
from nas.study.runner import search
from nas.study.storage import open_storage
from tests.helpers import tiny_config


def test_workers_train_exactly_the_requested_number(tmp_path, tiny_mnist_dir, storage_url):
    cfg = tiny_config(tmp_path, tiny_mnist_dir, storage=storage_url, trials=6, workers=3,
                      max_params=12_000)
    search(cfg, progress=False)
    # A fresh read from the storage, not the objects the run returned.
    trials = optuna.load_study(study_name="t", storage=open_storage(storage_url)).get_trials()
    trained = [t for t in trials if record.was_trained(t)]
    assert len(trained) == 6
    assert [t.number for t in trials] == list(range(len(trials)))  # no trial lost
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # Every trial says how it ended; nothing failed for a reason other than training (a lock
    # error would show as a failed or interrupted trial).
    assert {record.outcome_of(t) for t in trials} <= {
        record.REJECTED, record.COMPLETE, record.PRUNED, record.DUPLICATE}
    for t in trained:
        assert record.param_count_of(t) <= 12_000 and record.spec_of(t).key() == \
            record.key_of(t)
        assert len(record.curve_of(t)) >= 1
    # The work was shared: more than one process trained.
    assert len({t.user_attrs[record.PROCESS]["pid"] for t in trained}) > 1
    # No architecture was trained twice.
    assert len({record.key_of(t) for t in trained}) == 6
    # Resuming with more workers than missing trials still lands exactly, earlier trials as
    # they were.
    search(replace(cfg, trials=8), progress=False)
    again = optuna.load_study(study_name="t", storage=open_storage(storage_url)).get_trials()
    assert sum(record.was_trained(t) for t in again) == 8
    assert [(t.number, t.state, t.value) for t in again[:len(trials)]] == \
        [(t.number, t.state, t.value) for t in trials]
