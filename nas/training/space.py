"""The training space: training settings as a second, separately labelled space.

Labels start with ``train_``; the settings are frozen together with the architecture, so a
candidate is its network *and* its settings (:func:`nas.study.record.candidate_key`). "fixed"
suggests nothing: every candidate trains with the search's own settings. "sweep" searches the
settings below; each is a short grid of values around the default, so that a repeated candidate
is recognised and not trained twice. Dropout is part of the architecture (its spec).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from nas.arch.space import Suggester

if TYPE_CHECKING:  # the trainer (and torch) are not needed to sample
    from nas.training.trainer import TrainConfig

TRAIN_PREFIX = "train_"
TRAIN_SPACES = ("fixed", "sweep")
SWEEP: dict[str, tuple] = {
    "lr": (0.05, 0.1, 0.2, 0.4),  # peak of the one-cycle schedule
    "weight_decay": (0.0, 1e-4, 5e-4, 1e-3),
    "label_smoothing": (0.0, 0.05, 0.1),
    "batch_size": (128, 256, 512),
    "ema": (0.0, 0.99, 0.998),  # weight averaging: the averaged network is evaluated
    "augment": (0.5, 1.0, 1.5),  # scales rotation, translation and scale of the augmentation
}


def sample_train(space: str, trial: Suggester, base: TrainConfig) -> TrainConfig:
    """``base`` with the training space's suggestions applied (``fixed``: ``base`` itself).
    Epochs, seed, precision and the rest of ``base`` stay: the stage decides them."""
    if space == "fixed":
        return base
    if space != "sweep":
        raise ValueError(f"training space {space!r} does not exist ({TRAIN_SPACES})")
    v = {name: trial.suggest_categorical(TRAIN_PREFIX + name, choices)
         for name, choices in SWEEP.items()}
    k = float(v.pop("augment"))
    return replace(base, lr=float(v["lr"]), weight_decay=float(v["weight_decay"]),
                   label_smoothing=float(v["label_smoothing"]), batch_size=int(v["batch_size"]),
                   ema=float(v["ema"]), rotate_deg=base.rotate_deg * k,
                   translate=base.translate * k, scale=base.scale * k)


def train_params(params: dict[str, object]) -> dict[str, object]:
    """The training-space part of a trial's parameters."""
    return {k: v for k, v in sorted(params.items()) if k.startswith(TRAIN_PREFIX)}
