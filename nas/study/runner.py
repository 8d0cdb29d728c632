"""Running a search: worker processes, the training slots they share, signals, progress.

``search(cfg)`` adds candidates until the study holds ``cfg.trials`` trained ones, and never
touches earlier trials. With ``cfg.workers`` > 1 it runs that many processes against the same
study; a shared counter hands out exactly the remaining number of training slots, so the total
is exact whatever the number of workers.

Stopping is safe at any point. SIGTERM or SIGINT (Ctrl-C) to the search stops its workers
too: each marks its running trial FAIL with outcome ``interrupted``, and the search exits
143 or 130. A worker that dies (kill -9, out of memory) is noticed within a fraction of a
second; the search then stops the others and says which one died. Workers die with their
parent even when it is killed with SIGKILL. Trials left RUNNING by a dead process are marked
FAIL when the next search starts, so the count of trained trials stays exact.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial

from nas.arch.plan import param_count
from nas.arch.space import smallest
from nas.errors import UserError, WorkerDied
from nas.study import record, recovery, selection
from nas.study.artifacts import open_store
from nas.study.budget import (MARGIN, Rate, describe, finalist_seconds, fit_budget, hms,
                              measure_rate, own_run_seconds, plan_stages)
from nas.study.config import (SearchConfig, data_of, design_options, finalist_markdown,
                              input_of, make_pruner, make_sampler, prepare_study)
from nas.study.objective import Objective
from nas.study.processes import Interrupted, die_with_parent, handle_signals
from nas.study.stages import FinalistStage, Stage, stages_of
from nas.study.storage import (check_url, check_writable, faults, open_storage,
                               quiet_storage_faults_in_threads)
from nas.training.data import load_mnist
from nas.training.host import use_threads
from nas.training.trainer import EpochReport, TrainingDiverged, resolve_device

MAX_REJECTS_IN_A_ROW = 2000  # a budget that the sampler can hardly meet: stop, don't spin
STOP_GRACE_S = 30  # how long stopped workers get to record their interrupted trial
# The most worker processes one machine runs (--workers): on CPU, WORKERS_PER_CORE per usable
# core (more only time-slice the same cores and multiply memory); on CUDA, WORKERS_PER_GPU
# (they share one device, one CUDA context each); and on either, one per WORKER_MEMORY of the
# memory available now (a worker holds torch, the data and a candidate: 0.9 GiB peak, measured
# by nas.bench on the full MNIST).
WORKERS_PER_CORE, WORKERS_PER_GPU, WORKER_MEMORY = 4, 8, 1 << 30


def max_workers(device: torch.device, cores: int | None = None,
                memory: int | None = None) -> tuple[int, str]:
    """How many worker processes this machine can run on ``device`` (at least 1), and why, in
    words. ``cores`` (usable CPU cores) and ``memory`` (bytes available) default to this
    machine's."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
            (os.cpu_count() or 1)
    if memory is None:
        memory = _available_memory()
    if device.type == "cuda":
        n, why = WORKERS_PER_GPU, f"{WORKERS_PER_GPU} per CUDA device"
    else:
        n, why = WORKERS_PER_CORE * cores, f"{WORKERS_PER_CORE} per CPU core, {cores} cores"
    if memory is not None and memory // WORKER_MEMORY < n:
        n, why = memory // WORKER_MEMORY, (f"{WORKER_MEMORY / 2**30:.0f} GiB of memory each, "
                                           f"{memory / 2**30:.1f} GiB available")
    return max(1, int(n)), why


def _available_memory() -> int | None:
    """Bytes of memory available to new processes (Linux's MemAvailable); None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


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


def run_worker(cfg: SearchConfig, stage: Stage, tickets: Tickets, progress: bool,
               deadline: Deadline | None = None, eta: Eta | None = None) -> None:
    """Train until the tickets run out (or ``deadline`` passes). One process, one device
    context. A ticket is what the stage says (:attr:`Stage.draws`): one candidate that went to
    training (rejected and duplicate ones are free), or one queued run.

    Raises :class:`nas.study.storage.StorageError` (one line) for a storage fault, and whatever
    interrupts it (:class:`Interrupted`), after its running trial was marked FAIL.
    """
    device = resolve_device(cfg.device)
    mnist = data_of(cfg, load_mnist)
    tr, val = mnist.search_splits(cfg.val_size, cfg.split_seed)
    tr, val = tr.to(device), val.to(device)
    with faults(cfg.storage):
        storage = open_storage(cfg.storage, heartbeat=cfg.heartbeat)
        study = optuna.load_study(study_name=cfg.study_name, storage=storage,
                                  sampler=make_sampler(cfg.sampler, cfg.seed),
                                  pruner=make_pruner(cfg.pruner, cfg.proxy_schedule().epochs))
        total, done = stage.total(tickets.left.value)
        bars = _Bars(study, total, done, stage.schedule().epochs, progress, stage.unit,
                     stage, eta)
        objective = Objective(cfg, tr, val, device, on_epoch=bars.epoch,
                              on_step=bars.step if progress else None,
                              artifacts=open_store(cfg.storage, cfg.artifact_dir, create=True),
                              running=stage.name)
        # A diverged or out-of-memory candidate fails alone; anything else is a bug.
        catch = (TrainingDiverged, torch.OutOfMemoryError)
        try:
            limit = deadline or Deadline()
            while not limit.passed(study) and tickets.take():
                if not stage.draws:
                    bars.start_trial()
                    # False: its run was queued again; skipped: an earlier stage's queued
                    # trial came first. Either way this ticket takes the next one.
                    while _optimize(study, objective, bars, n_trials=1,
                                    catch=catch) is False or objective.skipped:
                        pass
                else:
                    until = _UntilTrained(bars)
                    while True:
                        lost = _optimize(study, objective, bars, n_trials=MAX_REJECTS_IN_A_ROW,
                                         callbacks=[until], catch=catch,
                                         timeout=limit.seconds_left(study))
                        if lost is None or lost:
                            until.trained = until.trained or bool(lost)
                            break
                    if not until.trained:
                        if limit.passed(study):
                            break  # --timeout: the stage ends here
                        raise UserError(f"{MAX_REJECTS_IN_A_ROW} candidates in a row were "
                                        f"over --max-params {cfg.max_params:,}, invalid or "
                                        f"already trained: raise the budget")
                tickets.finished()
                bars.trial_done()
        finally:
            bars.close()


def _optimize(study: optuna.Study, objective: Objective, bars: _Bars,
              **kwargs: Any) -> bool | None:
    """``study.optimize(objective, **kwargs)``, surviving a trial that another process failed
    meanwhile (:class:`nas.study.objective.TrialLost`: Optuna's heartbeat failed it while this
    process was paused): that is one line, and the run goes on. Returns None when no trial
    was lost, else whether the lost trial's training was recorded (on a new trial; False:
    its candidate was queued again)."""
    try:
        study.optimize(objective, **kwargs)
    except Exception:
        # Optuna's tell raises ("Cannot tell a FAIL trial", or an AssertionError in its
        # logging) after the objective raised TrialLost: the objective kept the real story.
        if objective.lost is None:
            raise
    lost, objective.lost = objective.lost, None
    if lost is None:
        return None
    bars.write(str(lost))
    return lost.trained


class _UntilTrained:
    """An Optuna callback that stops ``optimize`` at the first trial that went to training
    (rejected and duplicate candidates cost milliseconds and do not count toward
    ``--trials``), and says in one line why a trial failed."""

    def __init__(self, bars: _Bars) -> None:
        self.bars, self.trained = bars, False
        bars.start_trial()

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if record.outcome_of(trial) == record.FAILED:
            self.bars.write(f"trial {trial.number} failed: {record.reason_of(trial)}")
        if record.was_trained(trial):
            self.trained = True
            study.stop()
        else:
            self.bars.start_trial()


def _worker_main(cfg: SearchConfig, stage: Stage, tickets: Tickets, deadline: Deadline | None,
                 errors: Any) -> None:
    """A worker process: dies with its parent; SIGTERM/SIGINT stop it cleanly; a user error
    or storage fault goes back to the parent as one line."""
    die_with_parent()
    quiet_storage_faults_in_threads()  # Optuna's heartbeat thread: the worker reports it
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures get our one-line notes
    if torch.get_num_threads() > 1:  # this process's share of the cores (nas.training.host)
        use_threads(max(1, (os.cpu_count() or 1) // cfg.workers))
    try:
        with handle_signals():
            run_worker(cfg, stage, tickets, progress=False, deadline=deadline)
    except Interrupted as e:
        sys.exit(e.exit_code)  # quietly: the parent reports for all
    except UserError as e:
        errors.put(str(e))
        sys.exit(2)


@dataclass(frozen=True)
class Eta:
    """The whole run's time left, for a stage's bar: this stage's rest (from its own pace once
    a run has finished, else the plan's estimate ``stage_s``) plus the later stages' planned
    ``after_s`` seconds; never past a time budget's ``end`` (seconds since the epoch), where
    the run stops whatever the estimates say."""

    stage_s: float
    after_s: float
    end: float | None = None

    def words(self, bar: Any) -> str:
        d = bar.format_dict
        done, total, elapsed = d["n"] - d.get("initial", 0), d["total"] or 0, d["elapsed"]
        left_here = (elapsed / done * (total - d["n"]) if done > 0
                     else self.stage_s * (1 - d["n"] / total) if total else 0.0)
        left = left_here + self.after_s
        if self.end is not None:
            left = min(left, max(0.0, self.end - time.time()))
        return f"whole run ~{hms(left)} left"


class _Bars:
    """tqdm: one bar over the stage's trials with the best so far and the whole run's time
    left (:class:`Eta`), one over the current trial's epochs (moving inside an epoch)."""

    def __init__(self, study: optuna.Study, total: int, initial: int, epochs: int,
                 enabled: bool, desc: str, stage: Stage | None = None,
                 eta: Eta | None = None) -> None:
        from tqdm.auto import tqdm

        # tqdm's default lock is a multiprocessing semaphore: a worker killed with -9 would
        # leave it behind ("leaked semaphore" at exit). One process, one thread: a plain lock.
        tqdm.set_lock(threading.RLock())
        self.study, self.epochs, self.enabled, self.tqdm = study, epochs, enabled, tqdm
        self.stage, self.eta = stage, eta
        self.outer = tqdm(total=total, initial=initial, desc=desc, unit="trial",
                          disable=not enabled, dynamic_ncols=True)
        self.inner = None
        self.trial = ""
        self._refresh_best()

    def _refresh_best(self) -> None:
        if not self.enabled:
            return
        words = [w for w in (self.stage.best_so_far(self.study) if self.stage else "",
                             self.eta.words(self.outer) if self.eta else "") if w]
        self.outer.set_postfix_str("; ".join(words))

    def start_trial(self) -> None:
        if self.inner is not None:
            self.inner.close()
        self.inner = self.tqdm(total=self.epochs, desc="  epochs", leave=False,
                               disable=not self.enabled, dynamic_ncols=True,
                               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total} "
                                          "epochs [{elapsed}<{remaining}{postfix}]")

    def step(self, epoch: int, s: int, steps: int) -> None:
        """Progress inside an epoch (the trainer's ``on_step``)."""
        if self.inner is not None:
            self.inner.update(epoch - 1 + s / steps - self.inner.n)

    def epoch(self, trial: optuna.Trial, r: EpochReport) -> None:
        if self.inner is not None:
            self.inner.set_description(f"  trial {trial.number}")
            self.inner.update(r.epoch - self.inner.n)
            self.inner.set_postfix_str(f"val {r.accuracy:.2%}")

    def trial_done(self) -> None:
        self.outer.update(1)
        self._refresh_best()

    def write(self, line: str) -> None:
        """One line to stderr, above the bars."""
        self.tqdm.write(line, file=sys.stderr)

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()
        self.outer.close()


def search(cfg: SearchConfig, progress: bool = True) -> optuna.Study:
    """Run (or resume) the search: the search stage until the study holds ``cfg.trials``
    trained candidates (or ``cfg.timeout`` seconds pass), then the finalist stage: the
    ``cfg.finalists`` best retrained with the full schedule on ``cfg.finalist_seeds`` seeds.
    The test images are never read."""
    started = time.time()
    check_url(cfg.storage)
    check_writable(cfg.storage)
    device = resolve_device(cfg.device)  # fail before any work if e.g. cuda is absent
    most, why = max_workers(device)
    if cfg.workers > most:
        raise UserError(f"--workers {cfg.workers} is more than this machine can run: at most "
                        f"{most} ({why})")
    data = data_of(cfg, load_mnist)  # a fault of the data: one line before anything is written
    least = param_count(smallest(cfg.space, input_of(cfg)))
    if least > cfg.max_params:
        raise UserError(f"--max-params {cfg.max_params:,} is below the smallest network in the "
                        f"search space ({least:,} parameters)")
    n_train = len(data.train)
    if cfg.val_size >= n_train:
        raise UserError(f"--val-size {cfg.val_size:,} leaves no training images "
                        f"(the data has {n_train:,})")
    if cfg.full_schedule.batch_size > n_train - cfg.val_size:
        raise UserError(f"--batch-size {cfg.full_schedule.batch_size:,} is larger than the "
                        f"{n_train - cfg.val_size:,} training images")
    if cfg.proxy_subset is not None and cfg.proxy_subset < cfg.full_schedule.batch_size:
        raise UserError(f"--proxy-subset {cfg.proxy_subset:,} is smaller than the batch size "
                        f"({cfg.full_schedule.batch_size:,})")
    study = prepare_study(cfg)
    trained = record.count_trained(study)
    if trained and cfg.kept_design:  # what the command line left out, the study decided
        _say(f"resuming study {cfg.study_name!r} with the design it was made with: "
             f"{design_options(cfg, cfg.kept_design)}")
    runs_done = sum(len(f.runs) for f in selection.finalists(study))
    n_split = n_train - cfg.val_size
    cfg, rate, planned = _plan(cfg, device, trained, runs_done, n_split, started, progress)
    end = started + cfg.time_budget if cfg.time_budget is not None else None
    # --timeout ends the search stage (sized to --time-budget before it began); the later
    # stages are sized to what the budget leaves once the earlier ones have run.
    timeout_end = time.time() + cfg.timeout if cfg.timeout else None
    for i, stage in enumerate(stages_of(cfg)):
        deadline = Deadline(timeout_end if stage.draws else None)
        if end is not None and rate is not None:
            with faults(cfg.storage):
                stage, window = stage.within(study, end - time.time(), cfg.workers,
                                             _own_run_seconds(cfg, rate, n_split))
            if window is not None:
                deadline = Deadline(end - window.last_start_s)
                planned[i] = window.seconds
                if window.how:
                    _say(window.how)
            elif stage.draws and cfg.finalists > 0:
                deadline = Deadline(deadline.at, Reserve(cfg, rate, n_split, end))
        with faults(cfg.storage):
            tickets = stage.queue(study)
        if tickets:
            eta = Eta(planned[i], sum(planned[i + 1:]), end) if planned else None
            _run_stage(cfg, stage, tickets, progress, deadline, eta)
            with faults(cfg.storage):
                cut = deadline.passed(study)
                waiting = sum(t.state == optuna.trial.TrialState.WAITING
                              and record.stage_of(t) == stage.name
                              for t in study.get_trials(deepcopy=False))
            if cut and not stage.draws and waiting:
                _say(f"--time-budget: {waiting} {stage.unit} still queued stay queued (the "
                     f"same command goes on with them)")
            elif cut and deadline.reserve is not None:
                _say(f"--time-budget: the search stage ended after "
                     f"{record.count_trained(study)} of {cfg.trials} candidates, keeping the "
                     f"time the best of them need as finalists")
    if cfg.finalists > 0:
        with faults(cfg.storage):  # the pick, where optuna-dashboard shows the study
            record.write_finalist_note(study, finalist_markdown(study, cfg.full_schedule.epochs))
    return study


@dataclass(frozen=True)
class Reserve:
    """Under a time budget, the time the finalist stage needs, kept from the search stage:
    no new candidate starts once what is left until ``end`` would not also retrain the best
    candidates so far as planned (``cfg``'s finalists and seeds, each run costed from its
    candidate's own search-stage epochs; candidates not yet there at the reference network's
    cost) after one more candidate. Where they no longer fit whatever the search stage does
    (a slow candidate became the best late), it keeps nothing: the search stage runs to its
    timeout and the finalist stage is sized to what is left (FinalistStage.within)."""

    cfg: SearchConfig
    rate: Rate
    n_split: int
    end: float

    def search_until(self, study: optuna.Study) -> float | None:
        cfg = self.cfg
        search_plan, final_plan = plan_stages(cfg, 1, 1, self.n_split)
        run_seconds = _own_run_seconds(cfg, self.rate, self.n_split)
        runs = [run_seconds(t) for t in FinalistStage(cfg).sources(study)]
        runs += [final_plan.run_seconds(self.rate)] * (cfg.finalists - len(runs))
        need, _ = finalist_seconds(runs, [0] * len(runs), cfg.finalist_seeds, cfg.workers)
        if need / MARGIN > self.end - time.time():
            return None
        return self.end - need / MARGIN - search_plan.run_seconds(self.rate)


@dataclass(frozen=True)
class Deadline:
    """When a stage starts no new run: after ``at`` (seconds since the epoch; None: no such
    time), and for the search stage under a time budget also once the time left is what the
    finalists need (``reserve``)."""

    at: float | None = None
    reserve: Reserve | None = None

    def until(self, study: optuna.Study) -> float | None:
        times = [self.at, self.reserve.search_until(study) if self.reserve else None]
        return min((t for t in times if t is not None), default=None)

    def passed(self, study: optuna.Study) -> bool:
        until = self.until(study)
        return until is not None and time.time() >= until

    def seconds_left(self, study: optuna.Study) -> float | None:
        until = self.until(study)
        return None if until is None else max(0.0, until - time.time())


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _plan(cfg: SearchConfig, device: torch.device, trained: int, runs_done: int,
          n_split: int, started: float,
          progress: bool) -> tuple[SearchConfig, Rate | None, list[float]]:
    """Say what the run will do and about how long it takes here (with progress shown, or a
    time budget): the ``trained`` candidates and ``runs_done`` finalist runs a resumed study
    holds are not counted again. With ``cfg.time_budget``, fit the run into it
    (nas.study.budget.fit_budget). Returns the settings to run with, the rate measured on this
    device (None: nothing measured) and each stage's estimated seconds (in the order of
    :func:`stages_of`; empty when nothing was measured)."""
    if cfg.time_budget is None and not progress:
        return cfg, None, []
    rate = measure_rate(device, cfg)
    remaining = max(cfg.trials - trained, 0)
    if cfg.time_budget is not None and remaining:
        try:
            fitted, how = fit_budget(replace(cfg, trials=remaining),
                                     started + cfg.time_budget - time.time(), rate, n_split)
        except ValueError as e:
            raise UserError(str(e)) from None
        cfg = replace(fitted, trials=fitted.trials + trained)
        remaining = fitted.trials
        _say(how)
    runs_left = max(cfg.finalists * cfg.finalist_seeds - runs_done, 0)
    stages = plan_stages(cfg, remaining, runs_left, n_split)
    _say("plan (an estimate, from a measured rate):\n" + "\n".join(describe(stages, rate)))
    return cfg, rate, [s.seconds(rate) for s in stages]


def _own_run_seconds(cfg: SearchConfig, rate: Rate,
                     n_split: int) -> Callable[[FrozenTrial], float]:
    """What one full-schedule run of a search-stage candidate costs here, from its own
    epochs (nas.study.budget.own_run_seconds)."""
    search_plan, final_plan = plan_stages(cfg, 1, 1, n_split)

    def run_seconds(trial: FrozenTrial) -> float:
        return own_run_seconds(record.epoch_seconds_of(trial), search_plan, final_plan, rate)

    return run_seconds


def _run_stage(cfg: SearchConfig, stage: Stage, n: int, progress: bool,
               deadline: Deadline | None, eta: Eta | None = None) -> None:
    """``n`` tickets of ``stage``, in this process or in ``cfg.workers`` worker processes."""
    if cfg.workers > 1:
        _supervise(cfg, stage, n, progress, deadline, eta)
        return
    try:
        with handle_signals():
            run_worker(cfg, stage, Tickets(n), progress, deadline, eta)
    except Interrupted:
        with faults(cfg.storage):  # what the interrupt left RUNNING in this process
            study = optuna.load_study(study_name=cfg.study_name, storage=open_storage(
                cfg.storage, heartbeat=cfg.heartbeat))
            recovery.fail_stale_trials(study, this_process_ended=True)
        raise


def _supervise(cfg: SearchConfig, stage: Stage, n: int, progress: bool,
               deadline: Deadline | None, eta: Eta | None = None) -> None:
    """Run ``cfg.workers`` worker processes until the ``n`` tickets run out; stop them all on
    a signal, on a worker's error or death."""
    from tqdm.auto import tqdm

    tqdm.set_lock(threading.RLock())  # see _Bars
    ctx = mp.get_context("spawn")  # CUDA cannot be forked; one context per process
    tickets, errors = Tickets(n, ctx), ctx.SimpleQueue()
    procs = [ctx.Process(target=_worker_main, args=(cfg, stage, tickets, deadline, errors),
                         name=f"worker {w}") for w in range(cfg.workers)]
    total, done = stage.total(n)
    watched: optuna.Study | None = None  # opened at the first finished trial, for the bar
    bar = tqdm(total=total, initial=done, desc=f"{stage.unit} ({cfg.workers} workers)",
               unit="trial",
               disable=not progress, dynamic_ncols=True)
    try:
        with handle_signals():
            for p in procs:
                try:
                    p.start()
                except OSError as e:  # e.g. EAGAIN: the process limit
                    raise UserError(f"could not start {p.name}: {e.strerror or e}; "
                                    f"try fewer --workers") from None
            while any(p.is_alive() for p in procs):
                time.sleep(0.2)
                # update(), not refresh(): tqdm then redraws at most every mininterval and
                # only on progress, so a log file gets a line per trial, not five a second.
                if done + tickets.done.value != bar.n:
                    bar.update(done + tickets.done.value - bar.n)
                    if progress:
                        with faults(cfg.storage):
                            watched = watched or optuna.load_study(
                                study_name=cfg.study_name, storage=open_storage(cfg.storage))
                            bar.set_postfix_str("; ".join(w for w in (
                                stage.best_so_far(watched), eta.words(bar) if eta else "")
                                if w))
                _check(procs, errors)
            _check(procs, errors)
    except BaseException as e:
        # The workers get the signal the search got (so their trials say which), else SIGTERM.
        _stop(procs, getattr(e, "signum", signal.SIGTERM))
        with faults(cfg.storage):
            study = optuna.load_study(study_name=cfg.study_name, storage=open_storage(
                cfg.storage, heartbeat=cfg.heartbeat))
            recovery.fail_stale_trials(study)  # trials of workers that had to be killed
        raise
    finally:
        bar.close()


def _check(procs: list[Any], errors: Any) -> None:
    """Raise at once if a worker ended with an error or was killed."""
    for p in procs:
        if p.exitcode in (None, 0):
            continue
        if not errors.empty():
            raise UserError(f"{p.name}: {errors.get()}")
        if p.exitcode < 0:
            how = f"was killed by {signal.Signals(-p.exitcode).name}"
        elif p.exitcode > 128:
            how = f"was stopped by {signal.Signals(p.exitcode - 128).name}"
        else:
            how = f"exited with status {p.exitcode}"
        raise WorkerDied(f"{p.name} (pid {p.pid}) {how}; the other workers were stopped and "
                         f"its trial marked failed: run the same command to go on")


def _stop(procs: list[Any], signum: int) -> None:
    """``signum`` to every live worker, a grace period to record its trial, then SIGKILL.
    Workers that were never started (a signal or error while starting them) are skipped:
    multiprocessing cannot join those."""
    procs = [p for p in procs if p.pid is not None]
    for p in procs:
        if p.is_alive():
            os.kill(p.pid, signum)
    deadline = time.monotonic() + STOP_GRACE_S
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()
