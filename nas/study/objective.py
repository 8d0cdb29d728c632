"""The Optuna objective: one trial, one candidate, trained under its stage's rules; report.

The trial's stage (:mod:`nas.study.stages`) says what it trains: a search-stage candidate over
the budget (or one whose shapes collapse) is rejected there, before anything is built, and its
constraint value tells the sampler it is infeasible (``Trial.set_constraint``). A trained
candidate reports validation accuracy after every epoch, so that a pruner (off by default) can
stop weak ones early; in a Pareto study (two objectives: accuracy and parameters) Optuna can
neither take reports nor prune, so the curve is only recorded. Whether a finished trial trained is in its record
(:func:`nas.study.record.was_trained`), not on this object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, Trial, TrialState

from nas.study import record, stages, uploads
from nas.study.config import SearchConfig, dataset_of
from nas.training.data import Split
from nas.training.dataset import MNIST
from nas.training.trainer import EpochReport, TrainingDiverged, device_name, precision_for, train


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

    Each trial trains under the rules of the stage it carries (:mod:`nas.study.stages`): a
    search-stage trial samples a candidate and trains it on the proxy schedule (the pruner may
    stop it); a finalist trial, queued with its candidate fixed, retrains it with the full
    schedule on its seed, never pruned.
    """

    cfg: SearchConfig
    train_split: Split  # the search's whole training split: each stage takes its images
    val_split: Split
    device: torch.device
    on_epoch: Callable[[Trial, EpochReport], None] | None = None  # progress display
    on_step: Callable[[int, int, int], None] | None = None  # ... inside an epoch (train's)
    artifacts: Any = None  # an Optuna ArtifactStore (nas.study.artifacts.open_store); None: none
    # The stage this process runs (None: any). A trial queued for an earlier stage that drew
    # its candidates (a starting member the search stage had no time left for) is not trained
    # when a later stage's ticket pops it: Optuna hands out the oldest queued trial first.
    running: str | None = None
    skipped: bool = False  # the last call rejected such a trial: its ticket is still unused
    # The TrialLost the last call raised. Optuna's optimize cannot tell a trial that another
    # process finished ("Cannot tell a FAIL trial") and raises that instead: the runner looks
    # here to tell it from a bug (nas.study.runner._optimize).
    lost: TrialLost | None = None

    def __post_init__(self) -> None:
        self.stages = stages.by_name(self.cfg)
        self._images = {name: s.images(self.train_split) for name, s in self.stages.items()}
        self.dataset = dataset_of(self.cfg)  # its normalisation: what the export states

    def __call__(self, trial: Trial) -> float | tuple[float, float]:
        self.lost, self.skipped = None, False
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

    def _run(self, trial: Trial) -> float | tuple[float, float]:
        stage = self.stages[record.stage_of(trial)]
        self.skipped = self.running is not None and stage.draws and stage.name != self.running
        if self.skipped:
            stages.reject(trial, f"not trained: queued for the {stage.name} stage, which had "
                                 f"ended (its timeout or --time-budget) before its turn")
        c = stage.candidate(trial, self.cfg.max_params)
        if isinstance(c, FrozenTrial):
            return _reuse(trial, c)
        acc = self._train(trial, stage, c, self._images[stage.name])
        return record.objective_values(acc, c.plan.params, bool(self.cfg.pareto))

    def _train(self, trial: Trial, stage: stages.Stage, c: stages.Candidate,
               train_split: Split) -> float:
        """Train ``c``; its final validation accuracy."""
        spec, p, cfg = c.spec, c.plan, c.cfg
        reports = not self.cfg.pareto  # Optuna takes no reports in a multi-objective study
        prune = stage.prune and reports
        record.write_training_start(trial, device_name(self.device), cfg.to_dict(), p,
                                    len(train_split))
        uploads.write_arch_artifacts(trial, self.artifacts, p)
        record.write_precision(trial, precision_for(self.device, cfg.precision))
        accs: list[float] = []
        lost = False  # another process marked the trial FAIL (see TrialLost): train on

        def report(r: EpochReport) -> None:
            nonlocal lost
            accs.append(r.accuracy)
            if not lost:
                try:
                    if reports:
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
            # MNIST is train()'s default: its call reads as it always did.
            more: dict[str, Any] = {} if self.dataset is MNIST else {"dataset": self.dataset}
            if self.on_step is not None:
                more["on_step"] = self.on_step
            result = train(spec, train_split, self.val_split, cfg, self.device,
                           callback=report, **more)
        except (TrainingDiverged, torch.OutOfMemoryError) as e:
            record.write_outcome(trial, record.FAILED,
                                 f"{type(e).__name__}: {str(e).splitlines()[0]}")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise
        if not lost:
            try:
                record.write_timings(trial, result.epoch_seconds, result.seconds)
                if stage.per_image and result.correct is not None:
                    record.write_val_correct(trial, result.correct.tolist())
                record.write_outcome(trial, record.COMPLETE)
                return result.final_accuracy
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # failed by another process just now: recorded as below
        number = record.record_for_lost_trial(trial, record.objective_values(
            result.final_accuracy, p.params, bool(self.cfg.pareto)), accs, result.epoch_seconds,
            result.seconds)
        self.lost = TrialLost(f"trial {trial.number} was marked failed by another process "
                              f"while this one was paused (Optuna's heartbeat); its finished "
                              f"training is recorded as trial {number}", trained=True)
        raise self.lost


def _reuse(trial: Trial, twin: FrozenTrial) -> float | list[float]:
    """The study already trained this architecture with these settings (trial ``twin``):
    take its result instead of training it twice. A completed twin's value is the sampler's
    answer here too; a pruned, failed or still-running one ends this trial pruned."""
    if twin.state == TrialState.COMPLETE and twin.values:
        record.write_outcome(trial, record.DUPLICATE,
                             f"same architecture as trial {twin.number}: its result reused")
        return twin.values[0] if len(twin.values) == 1 else list(twin.values)
    what = "still training" if twin.state == TrialState.RUNNING else record.outcome_of(twin)
    record.write_outcome(trial, record.DUPLICATE,
                         f"same architecture as trial {twin.number} ({what}): not trained again")
    raise optuna.TrialPruned(f"duplicate of trial {twin.number}")
