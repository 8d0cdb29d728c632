from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from nas.data import load_mnist
from nas.spec import ArchSpec, Block, Conv3x3, Head, MaxPool
from nas.train import (DeviceError, EpochReport, TrainConfig, TrainingDiverged, one_cycle,
                       resolve_device, train)
from nas.zoo import bn_dropout_16k

FAST = TrainConfig(epochs=2, batch_size=64, lr=0.1, eval_batch_size=256)


@pytest.fixture()
def splits(tiny_mnist_dir):
    return load_mnist(tiny_mnist_dir, download=False).search_splits(n_val=200)


def test_learns_the_synthetic_task_and_reports_every_epoch(splits):
    reports: list[EpochReport] = []
    result = train(bn_dropout_16k(), *splits, replace(FAST, epochs=3), "cpu", reports.append)
    assert [r.epoch for r in reports] == [1, 2, 3]
    assert result.accuracies == [r.accuracy for r in reports]
    assert result.final_accuracy > 0.8  # chance is 0.1
    assert all(l > 0 for l in result.train_losses)


def test_same_seed_same_numbers_other_seed_other_numbers(splits):
    cfg = replace(FAST, deterministic=True)
    a = train(bn_dropout_16k(), *splits, cfg, "cpu")
    b = train(bn_dropout_16k(), *splits, cfg, "cpu")
    c = train(bn_dropout_16k(), *splits, replace(cfg, seed=1), "cpu")
    assert a.accuracies == b.accuracies and a.train_losses == b.train_losses
    assert a.train_losses != c.train_losses


def test_divergence_is_an_exception_not_a_nan_result(splits):
    no_bn = ArchSpec(stem=Conv3x3(8, bn=False), blocks=(Block((Conv3x3(8, bn=False),),
                                                               (MaxPool(),)),),
                     head=Head("flatten_linear"))
    with pytest.raises(TrainingDiverged, match="epoch 1"):
        train(no_bn, *splits, replace(FAST, lr=1e6, augment=False), "cpu")


def test_a_raising_callback_stops_training(splits):
    class Stop(Exception):
        pass

    def cb(r: EpochReport) -> None:
        raise Stop(r.epoch)

    with pytest.raises(Stop):
        train(bn_dropout_16k(), *splits, FAST, "cpu", cb)


def test_one_cycle_shape():
    total = 100
    lrs = [one_cycle(t, total, 0.25) for t in range(total)]
    assert lrs[0] == pytest.approx(0.04)
    assert max(lrs) == pytest.approx(1.0) and lrs.index(max(lrs)) == 25
    assert lrs[-1] < 0.02 and all(a >= b for a, b in zip(lrs[25:], lrs[26:]))
    assert [one_cycle(t, 1, 0.25) for t in range(1)] == [0.04]  # tiny schedules work


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda")


def test_config_round_trip():
    cfg = replace(FAST, lr=0.3, seed=7)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
