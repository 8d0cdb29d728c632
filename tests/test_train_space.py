"""The training space: settings searched beside the architecture, and a candidate's identity
being its network and its settings."""

from __future__ import annotations

from dataclasses import replace

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import FixedTrial, create_trial

from nas.arch.zoo import bn_dropout_16k
from nas.study import record, selection
from nas.training.space import SWEEP, TRAIN_PREFIX, sample_train
from nas.training.trainer import TrainConfig


def test_fixed_suggests_nothing_and_changes_nothing():
    base = TrainConfig(epochs=7, lr=0.3)
    study = optuna.create_study()
    trial = study.ask()
    assert sample_train("fixed", trial, base) is base
    assert trial.params == {}


def test_sweep_applies_every_setting_and_keeps_what_the_stage_decides():
    base = TrainConfig(epochs=7, seed=3, precision="fp32")
    choice = {"lr": 0.4, "weight_decay": 1e-4, "label_smoothing": 0.1, "batch_size": 128,
              "ema": 0.998, "augment": 1.5}
    cfg = sample_train("sweep", FixedTrial({TRAIN_PREFIX + k: v for k, v in choice.items()}),
                       base)
    assert (cfg.lr, cfg.weight_decay, cfg.label_smoothing, cfg.batch_size, cfg.ema) == \
        (0.4, 1e-4, 0.1, 128, 0.998)
    assert cfg.rotate_deg == pytest.approx(12.0) and cfg.translate == pytest.approx(0.12)
    assert cfg.scale == pytest.approx(0.12)
    assert (cfg.epochs, cfg.seed, cfg.precision) == (7, 3, "fp32")
    with pytest.raises(ValueError, match="does not exist"):
        sample_train("tuned", FixedTrial({}), base)


def _trial(number: int, settings: dict[str, object]):
    spec = bn_dropout_16k()
    params = {TRAIN_PREFIX + k: v for k, v in settings.items()}
    return create_trial(
        value=0.9, params=params,
        distributions={k: CategoricalDistribution(SWEEP[k[len(TRAIN_PREFIX):]]) for k in params},
        user_attrs={"spec": spec.to_json(), "arch_key": spec.key()})


def test_a_candidate_is_its_network_and_its_settings():
    plain = _trial(0, {})
    assert record.candidate_key(plain) == bn_dropout_16k().key()  # studies without a space
    a = _trial(1, {"lr": 0.1, "ema": 0.0})
    b = _trial(2, {"ema": 0.0, "lr": 0.1})
    c = _trial(3, {"lr": 0.2, "ema": 0.0})
    assert record.candidate_key(a) == record.candidate_key(b)  # order of suggestion: no matter
    assert record.candidate_key(a) != record.candidate_key(c)  # other settings: other candidate
    assert record.candidate_key(a).startswith(bn_dropout_16k().key() + "|")


def test_a_sweep_study_trains_finalists_with_their_own_settings(tmp_path, tiny_mnist_dir):
    from nas.study.runner import search
    from tests.helpers import tiny_config

    cfg = tiny_config(tmp_path, tiny_mnist_dir, max_params=12_000, train_space="sweep",
                      trials=3, finalists=2, finalist_seeds=1)
    study = search(cfg, progress=False)
    assert study.user_attrs["identity"]["train_space"] == "sweep"
    by_number = {t.number: t for t in study.get_trials()}
    trained = [t for t in by_number.values() if record.was_trained(t)]
    assert len(trained) == 3
    for t in trained:
        want = sample_train("sweep", FixedTrial(t.params), cfg.proxy_schedule())
        assert TrainConfig.from_dict(record.train_config_of(t)) == want
    finals = selection.finalists(study)
    assert len(finals) == 2
    for f in finals:
        run = f.runs[0]
        source = by_number[run.user_attrs["finalist_of"]]
        got = TrainConfig.from_dict(record.train_config_of(run))
        want = replace(sample_train("sweep", FixedTrial(source.params), cfg.full_schedule), seed=0)
        assert got == want  # the source's settings, on the full schedule
        assert f.key == record.candidate_key(source)
