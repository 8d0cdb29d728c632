"""``python -m nas.search``: an Optuna study of trained CNN candidates under a parameter budget.

Running it again with the same storage and study resumes: it adds candidates until the study
holds ``--trials`` trained ones, and never touches earlier trials. ``--workers N`` runs N
processes against the same study; a shared counter hands out exactly the remaining number of
training slots, so the total is exact whatever the number of workers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
import torch

from nas import __version__
from nas.cli import (USER_ERRORS, Parser, UserError, describe, nonneg_int, positive_float,
                     positive_int, run)
from nas.data import DEFAULT_DATA_DIR, load_mnist
from nas.layers import param_count
from nas.objectives import (OUTCOME, PARAMS, RF, Objective, count_trained, was_trained)
from nas.search_space import smallest_spec
from nas.storage import JOURNAL_PREFIX, check_url, open_storage, study_names
from nas.train import EpochReport, TrainConfig, TrainingDiverged, resolve_device

SAMPLERS = ("tpe", "random")
PRUNERS = ("hyperband", "sha", "median", "none")
MAX_REJECTS_IN_A_ROW = 2000  # a budget that the sampler can hardly meet: stop, don't spin
CHALLENGE_EPOCHS = 20


@dataclass(frozen=True)
class SearchConfig:
    """The resolved settings of a search; saved on the study, checked on resume."""

    storage: str = "sqlite:///nas.db"
    study_name: str = ""
    trials: int = 100
    workers: int = 1
    max_params: int = 20_000
    sampler: str = "tpe"
    pruner: str = "hyperband"
    device: str = "auto"
    data_dir: str = str(DEFAULT_DATA_DIR)
    n_val: int = 10_000
    split_seed: int = 0
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)

    def identity(self) -> dict[str, Any]:
        """What must match for trials to be comparable: resuming with other values is refused."""
        return {"max_params": self.max_params, "n_val": self.n_val, "split_seed": self.split_seed,
                "train": self.train.to_dict()}


def versions() -> dict[str, str]:
    import optuna_dashboard

    return {"nas": __version__, "python": platform.python_version(), "torch": str(torch.__version__),
            "optuna": str(optuna.__version__),
            "optuna_dashboard": str(optuna_dashboard.__version__)}


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():  # multivariate/group are flagged experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # constant_liar: parallel workers don't all sample the same point.
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                          constant_liar=True, n_startup_trials=10)


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs,
                                              reduction_factor=3)
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    return optuna.pruners.NopPruner()


def default_study_name(max_params: int, epochs: int) -> str:
    return f"mnist-{max_params}p-{epochs}e"


def dashboard_command(storage: str) -> str:
    if storage.startswith(JOURNAL_PREFIX):
        return f"optuna-dashboard {storage[len(JOURNAL_PREFIX):]}"
    return f"optuna-dashboard {storage}"


# -- the study ---------------------------------------------------------------------------------
def prepare_study(cfg: SearchConfig) -> optuna.Study:
    """Create the study, or check that an existing one was made with the same settings."""
    storage = open_storage(cfg.storage)
    exists = cfg.study_name in study_names(storage)
    study = optuna.create_study(storage=storage, study_name=cfg.study_name,
                                direction="maximize", load_if_exists=True)
    if exists:
        old = study.user_attrs.get("identity")
        if old is not None and old != cfg.identity():
            diff = [k for k in old if old.get(k) != cfg.identity().get(k)]
            raise UserError(f"study {cfg.study_name!r} in {cfg.storage} was made with other "
                            f"settings ({', '.join(diff)} differ): pass another --study-name")
    else:
        mnist = load_mnist(cfg.data_dir)
        study.set_user_attr("identity", cfg.identity())
        study.set_user_attr("dataset", {
            "name": "MNIST", "source": mnist.source, "train": len(mnist.train) - cfg.n_val,
            "validation": cfg.n_val, "split_seed": cfg.split_seed,
            "test": "not used during search"})
        study.set_user_attr("max_params", cfg.max_params)
        study.set_user_attr("epochs", cfg.train.epochs)
        study.set_user_attr("versions", versions())
    study.set_user_attr("last_command", {"argv": sys.argv, "settings": asdict(cfg)})
    return study


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
            for rejects in range(MAX_REJECTS_IN_A_ROW + 1):
                if rejects == MAX_REJECTS_IN_A_ROW:
                    raise UserError(f"{rejects} candidates in a row were over --max-params "
                                    f"{cfg.max_params:,} or invalid: raise the budget")
                bars.start_trial()
                # A diverged or out-of-memory candidate fails alone; anything else is a bug.
                study.optimize(objective, n_trials=1,
                               catch=(TrainingDiverged, torch.OutOfMemoryError))
                if objective.last_trained:
                    break
            tickets.finished()
            bars.trial_done()
    finally:
        bars.close()


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
        self.outer = tqdm(total=total, initial=count_trained(study), desc="trials", unit="trial",
                          disable=not enabled, dynamic_ncols=True)
        self.inner = None
        self._refresh_best()

    def _refresh_best(self) -> None:
        if not self.enabled:
            return
        done = [t for t in self.study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
        if done:
            best = max(done, key=lambda t: t.value)
            self.outer.set_postfix_str(f"best {best.value:.2%} (#{best.number}, "
                                       f"{best.user_attrs.get(PARAMS, 0):,} params)")

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
    remaining = cfg.trials - count_trained(study)
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


def summary(study: optuna.Study, cfg: SearchConfig, top: int = 5) -> str:
    """The best trials and the exact commands to browse, export and replay."""
    trials = study.get_trials(deepcopy=False)
    done = sorted((t for t in trials if t.state == optuna.trial.TrialState.COMPLETE),
                  key=lambda t: -(t.value or 0))
    n_trained = sum(was_trained(t) for t in trials)
    n_rejected = sum(t.user_attrs.get(OUTCOME) == "rejected" for t in trials)
    n_pruned = sum(t.user_attrs.get(OUTCOME) == "pruned" for t in trials)
    n_failed = sum(t.user_attrs.get(OUTCOME) == "failed" for t in trials)
    lines = [f"study {study.study_name!r} in {cfg.storage}: {n_trained} trained "
             f"({len(done)} complete, {n_pruned} pruned, {n_failed} failed), {n_rejected} "
             f"rejected before training"]
    if done:
        lines.append(f"{'trial':>6} {'val acc':>8} {'params':>7} {'RF':>4}  architecture")
        for t in done[:top]:
            lines.append(f"{t.number:>6} {t.value:>8.2%} {t.user_attrs.get(PARAMS, 0):>7,} "
                         f"{t.user_attrs.get(RF, 0):>4}  {_key(t)}")
    s, n = cfg.storage, study.study_name
    lines += ["", f"browse:  {dashboard_command(s)}",
              f"export:  python -m nas.export --storage {s} --study-name {n} --out export",
              f"replay:  python -m nas.replay --storage {s} --study-name {n} --seeds 3"]
    return "\n".join(lines)


def _key(t: optuna.trial.FrozenTrial) -> str:
    from nas.objectives import spec_of

    return spec_of(t).key()


# -- command line ------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> tuple[SearchConfig, bool]:
    d = SearchConfig()
    p = Parser(prog="python -m nas.search", description=describe(__doc__))
    p.add_argument("--trials", type=positive_int, default=d.trials,
                   help="trained candidates the study should hold (default %(default)s)")
    p.add_argument("--storage", default=d.storage,
                   help="SQLAlchemy URL or journal:PATH (default %(default)s)")
    p.add_argument("--study-name", default=None,
                   help="default mnist-<max-params>p-<epochs>e")
    p.add_argument("--max-params", type=positive_int, default=d.max_params,
                   help="hard parameter budget (default %(default)s)")
    p.add_argument("--epochs", type=positive_int, default=d.train.epochs,
                   help="training schedule length (default %(default)s)")
    p.add_argument("--allow-long", action="store_true",
                   help=f"allow --epochs above the challenge's {CHALLENGE_EPOCHS}")
    p.add_argument("--workers", type=positive_int, default=d.workers,
                   help="processes training at once on this machine (default %(default)s)")
    p.add_argument("--device", default=d.device, choices=("auto", "cuda", "cpu"))
    p.add_argument("--seed", type=nonneg_int, default=d.seed)
    p.add_argument("--data-dir", default=d.data_dir)
    p.add_argument("--val-size", type=positive_int, default=d.n_val,
                   help="validation images carved from the 60,000 (default %(default)s)")
    p.add_argument("--sampler", default=d.sampler, choices=SAMPLERS)
    p.add_argument("--pruner", default=d.pruner, choices=PRUNERS)
    p.add_argument("--batch-size", type=positive_int, default=d.train.batch_size)
    p.add_argument("--lr", type=positive_float, default=d.train.lr,
                   help="peak learning rate (default %(default)s)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step")
    p.add_argument("--deterministic", action="store_true")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    if a.epochs > CHALLENGE_EPOCHS and not a.allow_long:
        p.error(f"--epochs {a.epochs} is above the challenge's {CHALLENGE_EPOCHS}; "
                f"add --allow-long to mean it")
    train = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, compile=a.compile,
                        seed=a.seed, deterministic=a.deterministic)
    cfg = SearchConfig(
        storage=a.storage, study_name=a.study_name or default_study_name(a.max_params, a.epochs),
        trials=a.trials, workers=a.workers, max_params=a.max_params, sampler=a.sampler,
        pruner=a.pruner, device=a.device, data_dir=a.data_dir, n_val=a.val_size,
        seed=a.seed, train=train)
    return cfg, not a.no_progress


def main(argv: Sequence[str] | None = None) -> int:
    cfg, progress = parse_args(argv)
    study = search(cfg, progress=progress)
    print(summary(study, cfg))
    return 0


def cli() -> None:
    run(main, "python -m nas.search")


if __name__ == "__main__":
    cli()
