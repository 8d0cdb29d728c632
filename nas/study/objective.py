"""The Optuna objective: sample a spec, enforce the parameter budget, train, report.

A candidate over the budget (or one whose shapes collapse) is rejected before anything is built:
it is recorded with its parameter count and reason, its constraint value tells the sampler it is
infeasible (``Trial.set_constraint``), and it ends PRUNED without training. Trained candidates
report validation accuracy after every epoch, so the pruner can stop weak ones early. Whether a
finished trial trained is in its record (:func:`nas.study.record.was_trained`), not on this object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NoReturn

import optuna
import torch
from optuna.trial import FrozenTrial, Trial, TrialState

from nas.study import record
from nas.training.data import Split
from nas.arch.plan import Plan, plan
from nas.arch import space as search_space
from nas.training.space import sample_train
from nas.arch.spec import ArchSpec, SpecError
from nas.training.trainer import (EpochReport, TrainConfig, TrainingDiverged, device_name, precision_for,
                       train)


class TrialLost(Exception):
    """Another process marked this process's running trial FAIL: Optuna's heartbeat, after
    this process was silent past the grace period (paused, e.g. SIGSTOP, or starved). The
    message is the one line to print; ``trained`` says whether its training finished and was
    recorded on a new trial (else the candidate was queued again)."""

    def __init__(self, message: str, trained: bool) -> None:
        super().__init__(message)
        self.trained = trained


@dataclass
class Objective:
    """``study.optimize(Objective(...))``: one call, one candidate.

    A search-stage trial samples a candidate and trains it with ``cfg`` (the cheap schedule,
    pruned). A finalist trial (queued by :func:`nas.study.record.enqueue_finalists`, its
    architecture fixed) retrains with ``finalist_cfg`` (the full schedule) on its seed, never
    pruned.
    """

    train_split: Split
    val_split: Split
    cfg: TrainConfig
    max_params: int
    device: torch.device
    on_epoch: Callable[[Trial, EpochReport], None] | None = None  # progress display
    finalist_cfg: TrainConfig | None = None  # default: cfg
    finalist_split: Split | None = None  # the finalists' training images; default: train_split
    artifacts: Any = None  # an Optuna ArtifactStore (nas.study.artifacts.open_store); None: no files
    space: int = 1  # the search space's version (nas.arch.space.sample), the study's own
    train_space: str = "fixed"  # the training space (nas.training.space.sample_train)
    # The TrialLost the last call raised. Optuna's optimize cannot tell a trial that another
    # process finished ("Cannot tell a FAIL trial") and raises that instead: the runner looks
    # here to tell it from a bug (nas.study.runner._optimize).
    lost: TrialLost | None = None

    def __call__(self, trial: Trial) -> float:
        self.lost = None
        try:
            record.write_process(trial)
            return self._run(trial)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Failed by another process before the training finished: nothing to keep.
            record.requeue_lost_trial(trial)
            self.lost = TrialLost(f"trial {trial.number} was marked failed by another process "
                                  f"while this one was paused (Optuna's heartbeat); its "
                                  f"candidate is queued again", trained=False)
            raise self.lost from None
        except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM: redone by the next search
            try:
                record.write_outcome(trial, record.INTERRUPTED, f"interrupted by {e}")
            except Exception:  # noqa: BLE001 - the storage may be what failed; the next
                pass  # search marks a trial whose process is gone all the same
            raise

    def _run(self, trial: Trial) -> float:
        if record.stage_of(trial) == record.FINALIST:
            # The queued parameters: the finalist's architecture and training settings, on
            # the full schedule with the finalist's seed.
            spec = search_space.sample(self.space, trial, self.max_params)
            cfg = replace(sample_train(self.train_space, trial,
                                                    self.finalist_cfg or self.cfg),
                          seed=record.finalist_seed(trial))
            p = plan(spec.validate())
            record.write_candidate(trial, spec, p)
            split = self.train_split if self.finalist_split is None else self.finalist_split
            return self._train(trial, spec, p, cfg, split, prune=False)
        spec = search_space.sample(self.space, trial, self.max_params)
        try:
            p = plan(spec.validate())  # the one plan of this candidate
        except SpecError as e:
            trial.set_constraint("invalid_spec", 1.0)
            _reject(trial, f"invalid: {e}")
        record.write_candidate(trial, spec, p)
        # Feasible iff <= 0: the sampler learns where the budget's edge lies.
        trial.set_constraint("params_over_budget", float(p.params - self.max_params))
        if p.params > self.max_params:
            _reject(trial, f"{p.params:,} parameters > budget {self.max_params:,}")
        why = search_space.rejection(self.space, p)
        if why:  # e.g. too small a receptive field: infeasible for the sampler too
            trial.set_constraint("space_rule", 1.0)
            _reject(trial, why)
        cfg = sample_train(self.train_space, trial, self.cfg)
        twin = record.earlier_same_arch(trial.study, trial, record.candidate_key(trial) or "")
        if twin is not None:
            return _reuse(trial, twin)
        return self._train(trial, spec, p, cfg, self.train_split, prune=True)

    def _train(self, trial: Trial, spec: ArchSpec, p: Plan, cfg: TrainConfig,
               train_split: Split, prune: bool) -> float:
        record.write_training_start(trial, device_name(self.device), cfg.to_dict(), p,
                                    len(train_split))
        record.write_arch_artifacts(trial, self.artifacts, p)
        record.write_precision(trial, precision_for(self.device, cfg.precision))
        accs: list[float] = []
        lost = False  # another process marked the trial FAIL (see TrialLost): train on

        def report(r: EpochReport) -> None:
            nonlocal lost
            accs.append(r.accuracy)
            if not lost:
                try:
                    trial.report(r.accuracy, r.epoch)
                    record.write_curve(trial, accs)
                except optuna.exceptions.UpdateFinishedTrialError:
                    lost = True  # the training goes on; its result goes on a new trial
            if self.on_epoch is not None:
                self.on_epoch(trial, r)
            # After the last epoch the candidate is fully trained: pruning would only
            # discard a finished result. A lost trial is not pruned: its curve is not stored.
            if prune and not lost and r.epoch < cfg.epochs and trial.should_prune():
                record.write_outcome(trial, record.PRUNED, f"pruned after epoch {r.epoch}")
                raise optuna.TrialPruned(f"pruned after epoch {r.epoch}")

        try:
            result = train(spec, train_split, self.val_split, cfg, self.device,
                           callback=report)
        except (TrainingDiverged, torch.OutOfMemoryError) as e:
            record.write_outcome(trial, record.FAILED,
                                 f"{type(e).__name__}: {str(e).splitlines()[0]}")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise
        if not lost:
            try:
                record.write_timings(trial, result.epoch_seconds, result.seconds)
                if not prune and result.correct is not None:  # a finalist: image by image
                    record.write_val_correct(trial, result.correct.tolist())
                record.write_outcome(trial, record.COMPLETE)
                return result.final_accuracy
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # failed by another process just now: recorded as below
        number = record.record_for_lost_trial(trial, result.final_accuracy, accs,
                                              result.epoch_seconds, result.seconds)
        self.lost = TrialLost(f"trial {trial.number} was marked failed by another process "
                              f"while this one was paused (Optuna's heartbeat); its finished "
                              f"training is recorded as trial {number}", trained=True)
        raise self.lost


def _reuse(trial: Trial, twin: FrozenTrial) -> float:
    """The study already trained this architecture with these settings (trial ``twin``):
    take its result instead of training it twice. A completed twin's value is the sampler's
    answer here too; a pruned, failed or still-running one ends this trial pruned."""
    if twin.state == TrialState.COMPLETE and twin.value is not None:
        record.write_outcome(trial, record.DUPLICATE,
                             f"same architecture as trial {twin.number}: its result reused")
        return twin.value
    what = "still training" if twin.state == TrialState.RUNNING else record.outcome_of(twin)
    record.write_outcome(trial, record.DUPLICATE,
                         f"same architecture as trial {twin.number} ({what}): not trained again")
    raise optuna.TrialPruned(f"duplicate of trial {twin.number}")


def _reject(trial: Trial, reason: str) -> NoReturn:
    record.write_outcome(trial, record.REJECTED, reason)
    record.write_rejected_note(trial, reason)
    raise optuna.TrialPruned(f"rejected: {reason}")
