"""The importance line: Optuna's PED-ANOVA over the search stage's completed candidates."""

from __future__ import annotations

import random

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import create_trial

from nas.study import record
from nas.study.importance import MIN_TRIALS, importance_line, importances


def study_where_only_lr_matters(n: int) -> optuna.Study:
    rng = random.Random(0)
    study = optuna.create_study(direction="maximize")
    dists = {"train_lr": CategoricalDistribution((0.05, 0.1, 0.2, 0.4)),
             "noise": FloatDistribution(0.0, 1.0)}
    for _ in range(n):
        # "noise" is a parameter the accuracy does not depend on; the accuracy's own noise
        # (seeds) is drawn apart from it.
        lr, noise = rng.choice((0.05, 0.1, 0.2, 0.4)), rng.random()
        study.add_trial(create_trial(
            value=0.9 + lr / 10 + rng.random() * 1e-4, params={"train_lr": lr, "noise": noise},
            distributions=dists, user_attrs={record.OUTCOME: record.COMPLETE}))
    return study


def test_the_parameter_that_decides_the_accuracy_is_the_most_important():
    got = importances(study_where_only_lr_matters(60))
    assert list(got) == ["train_lr", "noise"] and got["train_lr"] > 0.9
    assert abs(sum(got.values()) - 1.0) < 1e-9
    line = importance_line(study_where_only_lr_matters(60))
    head = ("what mattered (Optuna PED-ANOVA: the best 10 of 60 search-stage candidates "
            "against all): train_lr ")
    assert line.startswith(head) and float(line[len(head):].split(",")[0]) > 0.9


def test_duplicates_and_finalists_do_not_count_and_too_few_say_nothing():
    study = study_where_only_lr_matters(MIN_TRIALS - 1)
    assert importances(study) is None and importance_line(study) is None
    t = study.trials[0]
    for attrs in ({record.OUTCOME: record.DUPLICATE},
                  {record.OUTCOME: record.COMPLETE, record.STAGE: record.FINALIST}):
        study.add_trial(create_trial(value=t.value, params=t.params,
                                     distributions=t.distributions, user_attrs=attrs))
    assert importances(study) is None  # still MIN_TRIALS - 1 that count
