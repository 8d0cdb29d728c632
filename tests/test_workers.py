"""Several worker processes on one study: exactly --trials trained, nothing lost, no lock
errors, on every backend that supports parallel workers."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from nas.record import OUTCOME, count_trained, spec_of, was_trained
from nas.runner import search
from nas.storage import open_storage
from tests.helpers import tiny_config


@pytest.mark.parametrize("backend", ["sqlite", "journal"])
def test_workers_train_exactly_the_requested_number(tmp_path, tiny_mnist_dir, backend):
    storage = {"sqlite": f"sqlite:///{tmp_path / 'nas.db'}",
               "journal": f"journal:{tmp_path / 'nas.log'}"}[backend]
    cfg = tiny_config(tmp_path, tiny_mnist_dir, storage=storage, trials=6, workers=3,
                      max_params=12_000)
    study = search(cfg, progress=False)
    study = optuna.load_study(study_name="t", storage=open_storage(storage))  # a fresh read from disk
    trials = study.get_trials()
    assert count_trained(study) == 6
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    for t in trials:
        assert t.user_attrs[OUTCOME] in ("rejected", "complete", "pruned", "failed")
        if was_trained(t):
            spec_of(t)  # the spec parses
            assert t.user_attrs["params"] <= 12_000
            assert len(t.user_attrs["val_acc"]) >= 1
            assert t.state != TrialState.FAIL or "reason" in t.user_attrs
    # No lock errors: nothing failed for a reason other than training itself.
    assert all(t.user_attrs.get(OUTCOME) != "failed" for t in trials)
    # Resuming with more workers than missing trials still lands exactly.
    search(cfg.__class__(**{**cfg.__dict__, "trials": 8}), progress=False)
    assert count_trained(optuna.load_study(study_name="t", storage=open_storage(storage))) == 8
