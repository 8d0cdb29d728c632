"""The Optuna objective: sample a spec, enforce the parameter budget, train, report.

A candidate over the budget (or one whose shapes collapse) is rejected before anything is built:
it is recorded with its parameter count and reason, its constraint value tells the sampler it is
infeasible (``Trial.set_constraint``), and it ends PRUNED without training. Trained candidates
report validation accuracy after every epoch, so the pruner can stop weak ones early.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import optuna
import torch
from optuna.trial import FrozenTrial, Trial, TrialState

from nas.data import Split
from nas.layers import layer_table, param_count, receptive_field
from nas.search_space import sample_spec
from nas.spec import ArchSpec, SpecError
from nas.train import EpochReport, TrainConfig, TrainingDiverged, device_name, train

# Trial user-attribute keys: the contract that export, replay and the dashboard read.
SPEC = "spec"  # the ArchSpec as JSON text
PARAMS = "params"
RF = "receptive_field"
OUTCOME = "outcome"  # rejected | complete | pruned | failed
REASON = "reason"
VAL_ACC = "val_acc"  # per-epoch validation accuracy
EPOCH_SECONDS = "epoch_seconds"
TRAIN_SECONDS = "train_seconds"
DEVICE = "device"
TRAIN_CONFIG = "train_config"
TRAINED_OUTCOMES = ("complete", "pruned", "failed")


def spec_of(trial: FrozenTrial) -> ArchSpec:
    """The spec a trial trained (no ``Trial`` or sampler needed)."""
    return ArchSpec.from_json(trial.user_attrs[SPEC])


def was_trained(trial: FrozenTrial) -> bool:
    """True for candidates that went to training (and ended), false for rejected or
    interrupted ones. This is what ``--trials`` counts."""
    return trial.user_attrs.get(OUTCOME) in TRAINED_OUTCOMES and trial.state in (
        TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def count_trained(study: optuna.Study) -> int:
    return sum(was_trained(t) for t in study.get_trials(deepcopy=False))


def trial_note(spec: ArchSpec, number: int, extra: str = "") -> str:
    """The optuna-dashboard note: the architecture, as people in this field publish it."""
    return (f"## Trial {number}: {param_count(spec):,} parameters, receptive field "
            f"{receptive_field(spec)}\n\n`{spec.key()}`\n\n{layer_table(spec)}\n{extra}")


@dataclass
class Objective:
    """``study.optimize(Objective(...), n_trials=1)``; ``last_trained`` says whether the trial
    just run went to training (so the caller can count trained candidates only)."""

    train_split: Split
    val_split: Split
    cfg: TrainConfig
    max_params: int
    device: torch.device
    on_epoch: Callable[[Trial, EpochReport], None] | None = None  # progress display
    last_trained: bool = False

    def __call__(self, trial: Trial) -> float:
        self.last_trained = False
        spec = sample_spec(trial)
        try:
            spec.validate()
        except SpecError as e:
            trial.set_constraint("invalid_spec", 1.0)
            return self._reject(trial, f"invalid: {e}")
        n = param_count(spec)
        trial.set_user_attr(SPEC, spec.to_json())
        trial.set_user_attr(PARAMS, n)
        trial.set_user_attr(RF, receptive_field(spec))
        # Feasible iff <= 0: the sampler learns where the budget's edge lies.
        trial.set_constraint("params_over_budget", float(n - self.max_params))
        if n > self.max_params:
            return self._reject(trial, f"{n:,} parameters > budget {self.max_params:,}")

        self.last_trained = True
        trial.set_user_attr(DEVICE, device_name(self.device))
        trial.set_user_attr(TRAIN_CONFIG, self.cfg.to_dict())
        _save_note(trial, trial_note(spec, trial.number))
        accs: list[float] = []

        def report(r: EpochReport) -> None:
            accs.append(r.accuracy)
            trial.report(r.accuracy, r.epoch)
            trial.set_user_attr(VAL_ACC, accs)
            if self.on_epoch is not None:
                self.on_epoch(trial, r)
            # After the last epoch the candidate is fully trained: pruning would only
            # discard a finished result.
            if r.epoch < self.cfg.epochs and trial.should_prune():
                trial.set_user_attr(OUTCOME, "pruned")
                trial.set_user_attr(REASON, f"pruned after epoch {r.epoch}")
                raise optuna.TrialPruned(f"pruned after epoch {r.epoch}")

        try:
            result = train(spec, self.train_split, self.val_split, self.cfg, self.device,
                           callback=report)
        except (TrainingDiverged, torch.OutOfMemoryError) as e:
            trial.set_user_attr(OUTCOME, "failed")
            trial.set_user_attr(REASON, f"{type(e).__name__}: {str(e).splitlines()[0]}")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise
        trial.set_user_attr(EPOCH_SECONDS, [round(s, 3) for s in result.epoch_seconds])
        trial.set_user_attr(TRAIN_SECONDS, round(result.seconds, 3))
        trial.set_user_attr(OUTCOME, "complete")
        return result.final_accuracy

    @staticmethod
    def _reject(trial: Trial, reason: str) -> float:
        trial.set_user_attr(OUTCOME, "rejected")
        trial.set_user_attr(REASON, reason)
        raise optuna.TrialPruned(f"rejected: {reason}")


def _save_note(trial: Trial, body: str) -> None:
    from optuna_dashboard import save_note

    save_note(trial, body)


def select_trial(study: optuna.Study, number: int | None) -> FrozenTrial:
    """Trial ``number`` of ``study``, or its best; it must have completed training.

    Raises :class:`nas.storage.StorageError` (a user error) otherwise.
    """
    from nas.storage import StorageError

    trials = study.get_trials(deepcopy=False)
    if number is None:
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        if not done:
            raise StorageError(f"study {study.study_name!r} has no completed trial yet")
        return max(done, key=lambda t: t.value)  # type: ignore[arg-type,return-value]
    match = [t for t in trials if t.number == number]
    if not match:
        raise StorageError(f"study {study.study_name!r} has no trial {number} "
                           f"(trials 0-{len(trials) - 1})")
    t = match[0]
    if t.state != TrialState.COMPLETE or SPEC not in t.user_attrs:
        why = t.user_attrs.get(REASON, "")
        raise StorageError(f"trial {number} did not complete ({t.state.name.lower()}"
                           f"{': ' + why if why else ''})")
    return t
