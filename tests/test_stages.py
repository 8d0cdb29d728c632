"""The stages as objects: each one's schedule, images, queue and tickets."""

from __future__ import annotations

import optuna
import torch
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from nas.arch.zoo import bn_dropout_16k
from nas.study import record
from nas.study.config import SearchConfig
from nas.study.stages import FinalistStage, SearchStage, by_name, stages_of
from nas.training.data import Split
from nas.training.trainer import TrainConfig

CFG = SearchConfig(full_schedule=TrainConfig(epochs=15), proxy_epochs=4, proxy_subset=300,
                   trials=5, finalists=2, finalist_seeds=3)


def test_each_stage_says_what_it_trains():
    search, final = stages_of(CFG)
    assert [s.name for s in (search, final)] == [record.SEARCH, record.FINALIST]
    assert by_name(CFG)[record.FINALIST].__class__ is FinalistStage
    assert (search.schedule().epochs, final.schedule().epochs) == (4, 15)
    split = Split(torch.zeros(1000, 28, 28, dtype=torch.uint8), torch.arange(1000) % 10)
    assert (len(search.images(split)), len(final.images(split))) == (300, 1000)
    # The proxy subset is the same images whoever asks (seeded by the split's seed).
    assert torch.equal(search.images(split).y, SearchStage(CFG).images(split).y)
    assert (search.prune, final.prune, search.per_image, final.per_image) == \
        (True, False, False, True)
    assert search.total(3) == (5, 2) and final.total(3) == (3, 0)


def _interrupted(study: optuna.Study, lr: float, stage: str = record.SEARCH) -> None:
    attrs = {record.OUTCOME: record.INTERRUPTED}
    if stage != record.SEARCH:
        attrs[record.STAGE] = stage
    study.add_trial(create_trial(state=TrialState.FAIL, params={"train_lr": lr},
                                 distributions={"train_lr": CategoricalDistribution((0.1, 0.2))},
                                 user_attrs=attrs))


def test_an_interrupted_candidate_is_queued_again_once():
    study = optuna.create_study(direction="maximize")
    study.add_trial(create_trial(value=0.5, user_attrs={record.OUTCOME: record.COMPLETE}))
    _interrupted(study, 0.1)
    _interrupted(study, 0.2)
    stage = SearchStage(CFG)
    assert stage.queue(study) == 4  # one of five trained: four tickets
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert sorted(record.queued_params(t)["train_lr"] for t in waiting) == [0.1, 0.2]
    stage.queue(study)  # a second resume queues nothing twice
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 2
    # The re-queued 0.1 is interrupted in its turn: queued once more, still once.
    (again,) = [t for t in waiting if record.queued_params(t)["train_lr"] == 0.1]
    study._storage.set_trial_state_values(again._trial_id, TrialState.RUNNING)
    record.mark_interrupted(study._storage, again._trial_id, "interrupted")
    study._storage.set_trial_state_values(again._trial_id, TrialState.FAIL)
    stage.queue(study)
    now = study.get_trials(states=(TrialState.WAITING,))
    assert sorted(record.queued_params(t)["train_lr"] for t in now) == [0.1, 0.2]
    assert again.number not in [t.number for t in now]


def test_search_stage_queues_nothing_when_its_trials_are_trained():
    study = optuna.create_study(direction="maximize")
    _interrupted(study, 0.1)
    assert SearchStage(SearchConfig(trials=0)).queue(study) == 0
    assert not study.get_trials(states=(TrialState.WAITING,))


def _searched(study: optuna.Study, value: float, lr: float) -> None:
    spec = bn_dropout_16k(dropout=value / 10)  # a distinct architecture per candidate
    study.add_trial(create_trial(
        value=value, params={"train_lr": lr},
        distributions={"train_lr": CategoricalDistribution((0.1, 0.2))},
        user_attrs={record.OUTCOME: record.COMPLETE, record.SPEC: spec.to_json(),
                    record.ARCH_KEY: spec.key()}))


def test_finalists_waiting_or_running_are_not_queued_again_on_resume():
    """Was: a queued finalist of a study with training settings has no params until it runs,
    so its candidate key lacked the settings and every resume queued all finalists again."""
    study = optuna.create_study(direction="maximize")
    for value, lr in ((0.9, 0.1), (0.8, 0.2), (0.7, 0.1)):
        _searched(study, value, lr)
    stage = FinalistStage(CFG)  # 2 finalists x 3 seeds
    assert stage.queue(study) == 6
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert sorted((record.queued_params(t)["train_lr"], record.finalist_seed(t))
                  for t in waiting) == [(0.1, 0), (0.1, 1), (0.1, 2), (0.2, 0), (0.2, 1), (0.2, 2)]
    for _ in range(2):  # a resume, and one more
        assert stage.queue(study) == 6
        assert len(study.get_trials(states=(TrialState.WAITING,))) == 6
    # One starts running, one is interrupted: only the interrupted one is queued again.
    running, broken = waiting[0], waiting[1]
    study._storage.set_trial_state_values(running._trial_id, TrialState.RUNNING)
    study._storage.set_trial_state_values(broken._trial_id, TrialState.RUNNING)
    record.mark_interrupted(study._storage, broken._trial_id, "interrupted")
    study._storage.set_trial_state_values(broken._trial_id, TrialState.FAIL)
    assert stage.queue(study) == 5
    again = [t for t in study.get_trials(states=(TrialState.WAITING,))
             if t.number > waiting[-1].number]
    assert [(record.queued_params(t), record.finalist_seed(t)) for t in again] == \
        [(record.queued_params(broken), record.finalist_seed(broken))]
