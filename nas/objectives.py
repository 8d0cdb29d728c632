"""The Optuna objective: sample a spec, enforce the parameter budget, train, report.

A candidate over the budget (or one whose shapes collapse) is rejected before anything is built:
it is recorded with its parameter count and reason, its constraint value tells the sampler it is
infeasible (``Trial.set_constraint``), and it ends PRUNED without training. Trained candidates
report validation accuracy after every epoch, so the pruner can stop weak ones early. Whether a
finished trial trained is in its record (:func:`nas.record.was_trained`), not on this object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NoReturn

import optuna
import torch
from optuna.trial import FrozenTrial, Trial, TrialState

from nas import record
from nas.data import Split
from nas.layers import Plan, plan
from nas import search_space
from nas.spec import ArchSpec, SpecError
from nas.train import (EpochReport, TrainConfig, TrainingDiverged, device_name, precision_for,
                       train)


@dataclass
class Objective:
    """``study.optimize(Objective(...))``: one call, one candidate.

    A search-stage trial samples a candidate and trains it with ``cfg`` (the cheap schedule,
    pruned). A finalist trial (queued by :func:`nas.record.enqueue_finalists`, its
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
    artifacts: Any = None  # an Optuna ArtifactStore (nas.artifacts.open_store); None: no files
    space: int = 1  # the search space's version (nas.search_space.sample), the study's own
    train_space: str = "fixed"  # the training space (nas.search_space.sample_train)

    def __call__(self, trial: Trial) -> float:
        record.write_process(trial)
        try:
            return self._run(trial)
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
            cfg = replace(search_space.sample_train(self.train_space, trial,
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
        cfg = search_space.sample_train(self.train_space, trial, self.cfg)
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

        def report(r: EpochReport) -> None:
            accs.append(r.accuracy)
            trial.report(r.accuracy, r.epoch)
            record.write_curve(trial, accs)
            if self.on_epoch is not None:
                self.on_epoch(trial, r)
            # After the last epoch the candidate is fully trained: pruning would only
            # discard a finished result.
            if prune and r.epoch < cfg.epochs and trial.should_prune():
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
        record.write_timings(trial, result.epoch_seconds, result.seconds)
        if not prune and result.correct is not None:  # a finalist: compared image by image
            record.write_val_correct(trial, result.correct.tolist())
        record.write_outcome(trial, record.COMPLETE)
        return result.final_accuracy


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
