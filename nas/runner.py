"""Running a search: worker processes, the training slots they share, progress bars.

``search(cfg)`` adds candidates until the study holds ``cfg.trials`` trained ones, and never
touches earlier trials. With ``cfg.workers`` > 1 it runs that many processes against the same
study; a shared counter hands out exactly the remaining number of training slots, so the total
is exact whatever the number of workers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from typing import Any

import optuna
import torch

from nas import record
from nas.cli import USER_ERRORS, UserError
from nas.data import load_mnist
from nas.layers import param_count
from nas.objectives import Objective
from nas.search_space import smallest_spec
from nas.storage import check_url, open_storage
from nas.study import SearchConfig, make_pruner, make_sampler, prepare_study
from nas.train import EpochReport, TrainingDiverged, resolve_device

MAX_REJECTS_IN_A_ROW = 2000  # a budget that the sampler can hardly meet: stop, don't spin


# -- workers -----------------------------------------------------------------------------------
class Tickets:
    """Training slots shared by the workers of one run: ``take()`` is atomic across processes."""

    def __init__(self, n: int, ctx: Any = mp) -> None:
        self.left = ctx.Value("i", n)
        self.done = ctx.Value("i", 0)

    def take(self) -> bool:
        with self.left.get_lock():
            if self.left.value <= 0:
                return False
            self.left.value -= 1
            return True

    def finished(self) -> None:
        with self.done.get_lock():
            self.done.value += 1


def run_worker(cfg: SearchConfig, tickets: Tickets, worker: int, progress: bool) -> None:
    """Train candidates until the tickets run out. One process, one device context."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if cfg.workers > 1 and torch.get_num_threads() > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // cfg.workers))
    device = resolve_device(cfg.device)
    study = optuna.load_study(study_name=cfg.study_name, storage=open_storage(cfg.storage),
                              sampler=make_sampler(cfg.sampler, cfg.seed + worker),
                              pruner=make_pruner(cfg.pruner, cfg.train.epochs))
    mnist = load_mnist(cfg.data_dir)
    tr, val = mnist.search_splits(cfg.n_val, cfg.split_seed)
    tr, val = tr.to(device), val.to(device)
    bars = _Bars(study, cfg.trials, cfg.train.epochs, enabled=progress)
    objective = Objective(tr, val, cfg.train, cfg.max_params, device, on_epoch=bars.epoch)
    try:
        while tickets.take():
            until = _UntilTrained(bars)
            # A diverged or out-of-memory candidate fails alone; anything else is a bug.
            study.optimize(objective, n_trials=MAX_REJECTS_IN_A_ROW, callbacks=[until],
                           catch=(TrainingDiverged, torch.OutOfMemoryError))
            if not until.trained:
                raise UserError(f"{MAX_REJECTS_IN_A_ROW} candidates in a row were over "
                                f"--max-params {cfg.max_params:,} or invalid: raise the budget")
            tickets.finished()
            bars.trial_done()
    finally:
        bars.close()


class _UntilTrained:
    """An Optuna callback that stops ``optimize`` at the first trial that went to training
    (rejected candidates cost milliseconds and do not count toward ``--trials``)."""

    def __init__(self, bars: _Bars) -> None:
        self.bars, self.trained = bars, False
        bars.start_trial()

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if record.was_trained(trial):
            self.trained = True
            study.stop()
        else:
            self.bars.start_trial()


def _worker_main(cfg: SearchConfig, tickets: Tickets, worker: int) -> None:
    try:
        run_worker(cfg, tickets, worker, progress=False)
    except USER_ERRORS as e:
        print(f"nas.search worker {worker}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


class _Bars:
    """tqdm: one bar over trained trials with the best accuracy so far, one over epochs."""

    def __init__(self, study: optuna.Study, total: int, epochs: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.study, self.epochs, self.enabled, self.tqdm = study, epochs, enabled, tqdm
        self.outer = tqdm(total=total, initial=record.count_trained(study), desc="trials",
                          unit="trial",
                          disable=not enabled, dynamic_ncols=True)
        self.inner = None
        self._refresh_best()

    def _refresh_best(self) -> None:
        if not self.enabled:
            return
        done = record.completed(self.study)
        if done:
            best = done[0]
            self.outer.set_postfix_str(f"best {best.value:.2%} (#{best.number}, "
                                       f"{record.params_of_trial(best):,} params)")

    def start_trial(self) -> None:
        if self.inner is not None:
            self.inner.close()
        self.inner = self.tqdm(total=self.epochs, desc="  epochs", unit="ep", leave=False,
                               disable=not self.enabled, dynamic_ncols=True)

    def epoch(self, trial: optuna.Trial, r: EpochReport) -> None:
        if self.inner is not None:
            self.inner.set_description(f"  trial {trial.number}")
            self.inner.update(1)
            self.inner.set_postfix_str(f"val {r.accuracy:.2%}")

    def trial_done(self) -> None:
        self.outer.update(1)
        self._refresh_best()

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()
        self.outer.close()


def search(cfg: SearchConfig, progress: bool = True) -> optuna.Study:
    """Run (or resume) the search until the study holds ``cfg.trials`` trained candidates."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our bars and summary say it all
    check_url(cfg.storage)
    resolve_device(cfg.device)  # fail before any work if e.g. cuda is absent
    if param_count(smallest_spec()) > cfg.max_params:
        raise UserError(f"--max-params {cfg.max_params:,} is below the smallest network in the "
                        f"search space ({param_count(smallest_spec()):,} parameters)")
    n_train = len(load_mnist(cfg.data_dir).train)
    if cfg.n_val >= n_train:
        raise UserError(f"--val-size {cfg.n_val:,} leaves no training images "
                        f"(the data has {n_train:,})")
    study = prepare_study(cfg)
    remaining = cfg.trials - record.count_trained(study)
    if remaining <= 0:
        return study
    if cfg.workers == 1:
        run_worker(cfg, Tickets(remaining), 0, progress)
        return study
    ctx = mp.get_context("spawn")  # CUDA cannot be forked; one context per process
    tickets = Tickets(remaining, ctx)
    procs = [ctx.Process(target=_worker_main, args=(cfg, tickets, w), daemon=False)
             for w in range(cfg.workers)]
    for p in procs:
        p.start()
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.trials, initial=cfg.trials - remaining, desc=f"trials ({cfg.workers} "
               f"workers)", unit="trial", disable=not progress, dynamic_ncols=True)
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(0.5)
            bar.n = cfg.trials - remaining + tickets.done.value
            bar.refresh()
    finally:
        for p in procs:
            p.join()
        bar.close()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise UserError(f"{len(bad)} worker(s) exited with an error (exit codes {bad}); the "
                        f"trials they finished are in the study")
    return study
