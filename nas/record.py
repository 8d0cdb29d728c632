"""The study's record: every key ``nas`` stores on an Optuna study or trial, and its readers and
writers. Nothing else names a record key.

A study holds its *identity* (what must match for trials to be comparable), the dataset, the
budget, the schedule and the versions that made it; each trial holds the candidate it sampled
(spec, parameters, receptive field), how it ended (``outcome``: rejected, complete, pruned,
failed, with a ``reason``), its per-epoch validation curve and timings, and an optuna-dashboard
note with its layer table. A replay's result is recorded on the study (a finished trial takes
no new user attributes), under ``replay:trial-N``.

The format is stable: studies written by earlier releases read back unchanged
(``tests/data/study-v0.1.0.db`` holds one).
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from nas import __version__
from nas.layers import Plan
from nas.spec import ArchSpec

# -- trial user attributes ---------------------------------------------------------------------
SPEC = "spec"  # the ArchSpec as JSON text
PARAMS = "params"
RF = "receptive_field"
OUTCOME = "outcome"  # one of OUTCOMES
REASON = "reason"
VAL_ACC = "val_acc"  # per-epoch validation accuracy
EPOCH_SECONDS = "epoch_seconds"
TRAIN_SECONDS = "train_seconds"
DEVICE = "device"
TRAIN_CONFIG = "train_config"

REJECTED, COMPLETE, PRUNED, FAILED = "rejected", "complete", "pruned", "failed"
OUTCOMES = (REJECTED, COMPLETE, PRUNED, FAILED)
TRAINED_OUTCOMES = (COMPLETE, PRUNED, FAILED)

# -- study user attributes ---------------------------------------------------------------------
IDENTITY = "identity"  # what must match to resume
DATASET = "dataset"
MAX_PARAMS = "max_params"
EPOCHS = "epochs"
VERSIONS = "versions"
LAST_COMMAND = "last_command"
_REPLAY = "replay:trial-{}"  # a trial's replay summary


class RecordError(Exception):
    """A study or trial that does not hold what ``nas`` needs (a user error: one line)."""


def versions() -> dict[str, str]:
    """The versions of everything that shapes a result."""
    import optuna_dashboard
    import torch

    return {"nas": __version__, "python": platform.python_version(),
            "torch": str(torch.__version__), "optuna": str(optuna.__version__),
            "optuna_dashboard": str(optuna_dashboard.__version__)}


# -- writing a study ---------------------------------------------------------------------------
def write_study(study: optuna.Study, identity: dict[str, Any], dataset: dict[str, Any],
                max_params: int, epochs: int) -> None:
    """What a new study records once, at creation."""
    study.set_user_attr(IDENTITY, identity)
    study.set_user_attr(DATASET, dataset)
    study.set_user_attr(MAX_PARAMS, max_params)
    study.set_user_attr(EPOCHS, epochs)
    study.set_user_attr(VERSIONS, versions())


def identity_of(study: optuna.Study) -> dict[str, Any] | None:
    return study.user_attrs.get(IDENTITY)


def write_last_command(study: optuna.Study, argv: list[str], settings: dict[str, Any]) -> None:
    study.set_user_attr(LAST_COMMAND, {"argv": argv, "settings": settings})


def max_params_of(study: optuna.Study, default: int) -> int:
    return int(study.user_attrs.get(MAX_PARAMS, default))


# -- writing a trial ---------------------------------------------------------------------------
def write_candidate(trial: Trial, spec: ArchSpec, plan: Plan) -> None:
    """The sampled architecture, before any decision about it."""
    trial.set_user_attr(SPEC, spec.to_json())
    trial.set_user_attr(PARAMS, plan.params)
    trial.set_user_attr(RF, plan.receptive_field)


def write_outcome(trial: Trial, outcome: str, reason: str = "") -> None:
    assert outcome in OUTCOMES, outcome
    trial.set_user_attr(OUTCOME, outcome)
    if reason:
        trial.set_user_attr(REASON, reason)


def write_training_start(trial: Trial, device: str, train_config: dict[str, Any],
                         plan: Plan) -> None:
    trial.set_user_attr(DEVICE, device)
    trial.set_user_attr(TRAIN_CONFIG, train_config)
    save_note(trial, trial_note(plan, trial.number))


def write_curve(trial: Trial, val_acc: list[float]) -> None:
    trial.set_user_attr(VAL_ACC, val_acc)


def write_timings(trial: Trial, epoch_seconds: list[float], seconds: float) -> None:
    trial.set_user_attr(EPOCH_SECONDS, [round(s, 3) for s in epoch_seconds])
    trial.set_user_attr(TRAIN_SECONDS, round(seconds, 3))


# -- reading trials ----------------------------------------------------------------------------
def spec_of(trial: FrozenTrial) -> ArchSpec:
    """The spec a trial trained (no ``Trial`` or sampler needed)."""
    if SPEC not in trial.user_attrs:
        raise RecordError(f"trial {trial.number} holds no nas architecture (no {SPEC!r} "
                          f"attribute)")
    return ArchSpec.from_json(trial.user_attrs[SPEC])


def outcome_of(trial: FrozenTrial) -> str | None:
    return trial.user_attrs.get(OUTCOME)


def reason_of(trial: FrozenTrial) -> str:
    return str(trial.user_attrs.get(REASON, ""))


def params_of_trial(trial: FrozenTrial) -> int:
    return int(trial.user_attrs.get(PARAMS, 0))


def rf_of(trial: FrozenTrial) -> int:
    return int(trial.user_attrs.get(RF, 0))


def curve_of(trial: FrozenTrial) -> list[float]:
    return list(trial.user_attrs.get(VAL_ACC, []))


def train_config_of(trial: FrozenTrial) -> dict[str, Any]:
    return dict(trial.user_attrs.get(TRAIN_CONFIG, {}))


def was_trained(trial: FrozenTrial) -> bool:
    """True for candidates that went to training (and ended), false for rejected or
    interrupted ones. This is what ``--trials`` counts."""
    return outcome_of(trial) in TRAINED_OUTCOMES and trial.state in (
        TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def count_trained(study: optuna.Study) -> int:
    return sum(was_trained(t) for t in study.get_trials(deepcopy=False))


def count_outcome(trials: list[FrozenTrial], outcome: str) -> int:
    return sum(outcome_of(t) == outcome for t in trials)


def completed(study: optuna.Study) -> list[FrozenTrial]:
    """Trials that completed training, best first."""
    done = [t for t in study.get_trials(deepcopy=False)
            if t.state == TrialState.COMPLETE and t.value is not None]
    return sorted(done, key=lambda t: -t.value)  # type: ignore[operator]


def select_trial(study: optuna.Study, number: int | None) -> FrozenTrial:
    """Trial ``number`` of ``study``, or its best; it must have completed training.

    Raises :class:`RecordError` otherwise.
    """
    trials = study.get_trials(deepcopy=False)
    if number is None:
        done = completed(study)
        if not done:
            raise RecordError(f"study {study.study_name!r} has no completed trial yet")
        return done[0]
    match = [t for t in trials if t.number == number]
    if not match:
        raise RecordError(f"study {study.study_name!r} has no trial {number} "
                          f"(trials 0-{len(trials) - 1})")
    t = match[0]
    if t.state != TrialState.COMPLETE or SPEC not in t.user_attrs:
        why = reason_of(t)
        raise RecordError(f"trial {number} did not complete ({t.state.name.lower()}"
                          f"{': ' + why if why else ''})")
    return t


# -- replays -----------------------------------------------------------------------------------
REPLAY_KEYS = ("seeds", "test_acc_final", "mean", "std", "challenge_holds", "weights",
               "device", "date", "train_config")


def write_replay(study: optuna.Study, trial: FrozenTrial, report: dict[str, Any],
                 note: str) -> None:
    """A replay's summary on the study (for export) and in the trial's note (for people)."""
    study.set_user_attr(_REPLAY.format(trial.number), {k: report[k] for k in REPLAY_KEYS})
    # A finished trial cannot take new user attributes, but its note lives on the study.
    save_note(optuna.trial.Trial(study, trial._trial_id), note)


def replay_of(study: optuna.Study, number: int) -> dict[str, Any] | None:
    return study.user_attrs.get(_REPLAY.format(number))


# -- checkpoints -------------------------------------------------------------------------------
def save_checkpoint(path: Path, spec: ArchSpec, state_dict: dict[str, Any],
                    train_config: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Weights plus everything that rebuilds them (nanoGPT's ``model_args`` idea)."""
    import torch

    state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    torch.save({"state_dict": state, "spec": spec.to_json(), "train_config": train_config,
                "metrics": metrics, "versions": versions()}, path)


def load_weights(path: Path) -> dict[str, Any]:
    """The state dict of a checkpoint written by :func:`save_checkpoint`, loaded without
    unpickling code (``weights_only``)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


# -- the dashboard note ------------------------------------------------------------------------
def trial_note(plan: Plan, number: int, extra: str = "") -> str:
    """The optuna-dashboard note: the architecture, as people in this field publish it."""
    return (f"## Trial {number}: {plan.params:,} parameters, receptive field "
            f"{plan.receptive_field}\n\n`{plan.spec.key()}`\n\n{plan.table()}\n{extra}")


def save_note(trial: Trial, body: str) -> None:
    from optuna_dashboard import save_note as _save

    _save(trial, body)
