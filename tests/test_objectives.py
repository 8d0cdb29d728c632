from __future__ import annotations

import optuna
import pytest
import torch
from optuna.trial import TrialState

import nas.study.objective as objectives
from nas.arch.plan import param_count, plan
from nas.arch.space import params_of
from nas.arch.zoo import bn_dropout_16k, pool_bn_19k
from nas.study.config import SearchConfig
from nas.study.objective import Objective
from nas.study.record import count_trained, spec_of, was_trained
from nas.training.data import load_mnist
from nas.training.trainer import TrainConfig
from tests.helpers import TINY_TRAIN


def one_stage(train: TrainConfig, max_params: int) -> SearchConfig:
    """Search-stage trials train with ``train`` itself, on the whole split."""
    return SearchConfig(full_schedule=train, max_params=max_params, proxy_epochs=None,
                        proxy_subset=None, space=1, train_space="fixed")


@pytest.fixture()
def objective(tiny_mnist_dir):
    tr, val = load_mnist(tiny_mnist_dir, download=False).search_splits(val_size=200)
    return Objective(one_stage(TINY_TRAIN, 18_000), tr, val, torch.device("cpu"))


def test_over_budget_is_rejected_recorded_and_never_built(objective, monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("an over-budget candidate must not be trained")

    monkeypatch.setattr(objectives, "train", no_training)
    monkeypatch.setattr("nas.training.trainer.build", no_training)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(params_of(pool_bn_19k()))  # 19,378 > 18,000
    study.optimize(objective, n_trials=1)
    (t,) = study.get_trials()
    assert t.state == TrialState.PRUNED and not was_trained(t)
    assert t.user_attrs["params"] == 19_378 and t.user_attrs["outcome"] == "rejected"
    assert "19,378 parameters > budget 18,000" in t.user_attrs["reason"]
    assert t.constraints == {"params_over_budget": 1378.0}  # the sampler sees it infeasible
    assert count_trained(study) == 0


def test_feasible_candidate_trains_and_records_everything(objective):
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(params_of(bn_dropout_16k()))
    study.optimize(objective, n_trials=1)
    (t,) = study.get_trials()
    assert t.state == TrialState.COMPLETE and was_trained(t)
    assert spec_of(t) == bn_dropout_16k()
    assert t.user_attrs["params"] == param_count(bn_dropout_16k()) == 16_146
    assert t.user_attrs["receptive_field"] == 24
    assert len(t.user_attrs["val_acc"]) == 2 and t.value == t.user_attrs["val_acc"][-1]
    assert t.intermediate_values.keys() == {1, 2}
    assert t.user_attrs["train_config"]["epochs"] == 2
    assert t.user_attrs["device"].startswith("cpu")
    assert t.constraints == {"params_over_budget": 16_146.0 - 18_000}
    assert count_trained(study) == 1
    from optuna_dashboard import get_note

    note = get_note(optuna.trial.Trial(study, t._trial_id))
    assert "16,146 parameters" in note and "| conv1 | 16×28×28 | 160 | 3 | 1 |" in note


def test_a_diverging_candidate_fails_alone(objective, monkeypatch):
    from nas.training.trainer import TrainingDiverged

    def diverge(*a, **k):
        raise TrainingDiverged("training loss is nan at epoch 1")

    monkeypatch.setattr(objectives, "train", diverge)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(params_of(bn_dropout_16k()))
    study.optimize(objective, n_trials=1, catch=(TrainingDiverged,))
    (t,) = study.get_trials()
    assert t.state == TrialState.FAIL and t.user_attrs["outcome"] == "failed"
    assert "nan" in t.user_attrs["reason"]
    assert count_trained(study) == 1  # it went to training: it used one of --trials


def test_pruner_stops_weak_candidates(objective):
    class AlwaysPrune(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    study = optuna.create_study(direction="maximize", pruner=AlwaysPrune())
    study.enqueue_trial(params_of(bn_dropout_16k()))
    study.optimize(objective, n_trials=1)
    (t,) = study.get_trials()
    assert t.state == TrialState.PRUNED and t.user_attrs["outcome"] == "pruned"
    assert len(t.user_attrs["val_acc"]) == 1 and count_trained(study) == 1


def test_the_last_epoch_is_never_pruned(tiny_mnist_dir):
    from dataclasses import replace

    class AlwaysPrune(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    tr, val = load_mnist(tiny_mnist_dir, download=False).search_splits(val_size=200)
    objective = Objective(one_stage(replace(TINY_TRAIN, epochs=1), 20_000), tr, val,
                          torch.device("cpu"))
    study = optuna.create_study(direction="maximize", pruner=AlwaysPrune())
    study.enqueue_trial(params_of(bn_dropout_16k()))
    study.optimize(objective, n_trials=1)
    assert study.get_trials()[0].state == TrialState.COMPLETE


def test_one_plan_per_trained_candidate(objective):
    """Validation, budget, receptive field, note and the built network share one plan: the
    trial plans one spec once (plan's memo records one miss), and it is the candidate's."""
    plan.cache_clear()
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(params_of(bn_dropout_16k()))
    study.optimize(objective, n_trials=1)
    assert study.get_trials()[0].state == TrialState.COMPLETE
    assert plan.cache_info().misses == 1 and plan.cache_info().hits >= 1
    plan(bn_dropout_16k())
    assert plan.cache_info().misses == 1  # the plan it made was this spec's


def test_an_architecture_already_trained_is_not_trained_again(objective, monkeypatch):
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(params_of(bn_dropout_16k()))
    study.optimize(objective, n_trials=1)
    first = study.get_trials()[0]

    def no_training(*a, **k):
        raise AssertionError("a duplicate must not be trained")

    monkeypatch.setattr(objectives, "train", no_training)
    study.enqueue_trial(params_of(bn_dropout_16k()))
    study.optimize(objective, n_trials=1)
    dup = study.get_trials()[1]
    # The sampler sees the earlier result; --trials does not count it; export never picks it.
    assert dup.state == TrialState.COMPLETE and dup.value == first.value
    assert dup.user_attrs["outcome"] == "duplicate" and "trial 0" in dup.user_attrs["reason"]
    assert count_trained(study) == 1 and not was_trained(dup)
    from nas.study.selection import completed

    assert [t.number for t in completed(study)] == [0]


def test_interrupting_a_trial_records_why(objective, monkeypatch):
    import signal

    from nas.study.processes import Interrupted

    def interrupted(*a, **k):
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(objectives, "train", interrupted)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(params_of(bn_dropout_16k()))
    with pytest.raises(Interrupted):
        study.optimize(objective, n_trials=1)
    (t,) = study.get_trials()
    assert t.state == TrialState.FAIL and t.user_attrs["outcome"] == "interrupted"
    assert t.user_attrs["reason"] == "interrupted by SIGTERM" and not was_trained(t)
