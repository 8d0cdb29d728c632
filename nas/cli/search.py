"""``python -m nas.search``: an Optuna study of trained CNN candidates under a parameter budget.

Running it again with the same storage and study resumes: it adds candidates until the study
holds ``--trials`` trained ones, and never touches earlier trials. ``--workers N`` runs N
processes against the same study; a shared counter hands out exactly the remaining number of
training slots, so the total is exact whatever the number of workers.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace

import optuna

from nas.arch.plan import param_count
from nas.arch.space import SPACE_VERSIONS, smallest
from nas.arch.zoo import CHALLENGE_EPOCHS
from nas.cli.common import (ARTIFACT_DIR_HELP, DATASET_HELP, DEVICE_HELP, NAMED_DATA_DIR_HELP,
                            Parser, describe, nonneg_int, positive_float, positive_int,
                            resolve_dataset, run)
from nas.errors import UserError
from nas.study.budget import parse_duration
from nas.study.config import (DESIGN, PRUNERS, SAMPLERS, SearchConfig, default_study_name,
                              input_of, study_design, summary)
from nas.study.pareto import budgets_of, halvings
from nas.study.runner import search
from nas.training.dataset import NAMED
from nas.training.sources import is_name, name_of
from nas.training.space import TRAIN_SPACES
from nas.training.trainer import PRECISIONS, TrainConfig


def duration(text: str) -> float:
    """argparse type: a positive duration (90, 90s, 20m, 1.5h) in seconds."""
    try:
        return parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a duration such as 90s, 20m or 2h, got "
                                         f"{text!r}") from None


# -- command line ------------------------------------------------------------------------------
# A first run that means something in a few minutes on a 2-core CPU: a handful of candidates
# on a complete 2-epoch schedule over 3,000 images (BatchNorm networks reach ~90 % there, so
# the ranking is not chance), then the best two retrained for 3 epochs on the whole split.
QUICK = {"trials": 8, "epochs": 3, "proxy_epochs": 2, "proxy_subset": 3_000, "finalists": 2,
         "finalist_seeds": 1}

EXAMPLES = """examples:
  python -m nas.search --quick                  a first run: a few minutes on a 2-core CPU
  python -m nas.search --trials 100             the default search (<= 20,000 parameters)
  python -m nas.search --time-budget 2h         as much of the default search as fits in 2 h
  python -m nas.search --max-params 8000 --epochs 15 --storage sqlite:///s8k.db
  python -m nas.search --dataset fashion-mnist  Fashion-MNIST (Debian: dataset-fashion-mnist)
  python -m nas.search --dataset my.npz         your own images (README: "Your own data")

The search stage trains every candidate on a short complete proxy schedule
(--proxy-epochs, at most --epochs, on --proxy-subset images); the finalist stage then
retrains the --finalists best on the full --epochs schedule and the whole training split,
--finalist-seeds times each: those runs come on top of --trials. Nothing is pruned unless
--pruner asks for it. The same command again resumes the study."""


RESUMED = " for a new study; a resumed study keeps its own"


def parse_args(argv: Sequence[str] | None) -> tuple[SearchConfig, bool]:
    d = SearchConfig()
    p = Parser(prog="python -m nas.search", description=describe(__doc__), epilog=EXAMPLES,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a first run in a few minutes on a CPU: " + ", ".join(
                       f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items())
                   + " (options given explicitly win; default study name ends in -quick)")
    p.add_argument("--time-budget", type=duration, default=None,
                   help="wall time for the whole run (e.g. 90s, 20m, 2h): the search measures "
                        "this device, sizes its stages to fit (fewer finalist seeds, then "
                        "finalists, then candidates), says how, and ends within it with a "
                        "pick (default: none)")
    p.add_argument("--trials", type=positive_int, default=d.trials,
                   help="candidates to train in the search stage; finalist runs come on top "
                        "(default %(default)s)")
    p.add_argument("--storage", default=d.storage,
                   help="SQLAlchemy URL or journal:PATH (default %(default)s)")
    p.add_argument("--study-name", default=None,
                   help="default <data set>-<max-params>p-<epochs>e, e.g. mnist-20000p-20e")
    p.add_argument("--max-params", type=positive_int, default=d.max_params,
                   help="hard parameter budget (default %(default)s)")
    p.add_argument("--epochs", type=positive_int, default=d.full_schedule.epochs,
                   help="the full schedule: the finalists train this long, the search stage's "
                        "proxy min(--proxy-epochs, this) (default %(default)s)")
    p.add_argument("--proxy-epochs", type=nonneg_int, default=None,
                   help="the search stage's own complete short schedule, at most --epochs; 0: "
                        f"the full --epochs schedule (default: {d.proxy_epochs}{RESUMED})")
    p.add_argument("--proxy-subset", type=nonneg_int, default=None,
                   help="the search stage trains on at most this many images of the training "
                        "split (a fixed, seeded subset; the finalists train on all); 0: all "
                        f"(default: {d.proxy_subset}{RESUMED})")
    p.add_argument("--finalists", type=nonneg_int, default=d.finalists,
                   help="best candidates retrained at the end with the full schedule on "
                        "--finalist-seeds seeds; the best mean wins (default %(default)s; "
                        "0: none)")
    p.add_argument("--finalist-seeds", type=positive_int, default=d.finalist_seeds,
                   help="seeds per finalist (default %(default)s)")
    p.add_argument("--timeout", type=positive_float, default=None,
                   help="seconds for the search stage: it ends then even short of --trials; "
                        "the finalists follow (default: none)")
    p.add_argument("--allow-long", action="store_true",
                   help=f"allow --epochs above the challenge's {CHALLENGE_EPOCHS}")
    p.add_argument("--workers", type=positive_int, default=d.workers,
                   help="processes training at once on this machine (default %(default)s)")
    p.add_argument("--device", default=d.device, choices=("auto", "cuda", "cpu"),
                   help=DEVICE_HELP)
    p.add_argument("--seed", type=nonneg_int, default=d.seed,
                   help="seeds the sampler (mixed with each trial's number, so a resumed search "
                        "draws new candidates) and every candidate's training: weight init, "
                        "batch order, augmentation; not the validation split (default "
                        "%(default)s)")
    p.add_argument("--dataset", default=d.dataset, help=DATASET_HELP)
    p.add_argument("--data-dir", default=None, help=NAMED_DATA_DIR_HELP)
    p.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None,
                   help="augment with left-right mirror images (default: the data set's: on "
                        "for fashion-mnist, off for mnist and for a folder or .npz)")
    p.add_argument("--val-size", type=positive_int, default=d.val_size,
                   help="validation images carved from the 60,000 (default %(default)s)")
    p.add_argument("--sampler", default=d.sampler, choices=SAMPLERS,
                   help="tpe: multivariate TPE with constant liar, learns the budget's edge; "
                        "random: uniform (default %(default)s)")
    p.add_argument("--pruner", default=d.pruner, choices=PRUNERS,
                   help="stops weak candidates after an epoch or two; the last epoch is never "
                        "pruned (default %(default)s: nothing is pruned)")
    p.add_argument("--space", type=int, default=None, choices=SPACE_VERSIONS,
                   help="search space version: 1 draws absolute widths; 2 draws the shape and "
                        "relative widths and scales them to fill --max-params, with one label "
                        "per network and a receptive-field floor for global-pool heads "
                        f"(default: {d.space}{RESUMED})")
    p.add_argument("--train-space", default=None, choices=TRAIN_SPACES,
                   help="fixed: every candidate trains with --lr, --batch-size and the default "
                        "recipe; sweep: the search also chooses learning rate, weight decay, "
                        "label smoothing, batch size, weight EMA and augmentation strength, "
                        "and a candidate is its network and its settings "
                        f"(default: {d.train_space}{RESUMED})")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help=f"training batch size, with --train-space fixed (default: "
                        f"{d.full_schedule.batch_size})")
    p.add_argument("--lr", type=positive_float, default=None,
                   help=f"peak learning rate, with --train-space fixed (default: "
                        f"{d.full_schedule.lr})")
    p.add_argument("--precision", default=d.full_schedule.precision, choices=PRECISIONS,
                   help="training precision (default %(default)s: bf16 on CUDA >= 8.0 and on "
                        "CPUs with bf16 units, fp16 with a gradient scaler on CUDA 7.x, else fp32)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels: same seed, same device, same numbers; slower "
                        "(default: off)")
    p.add_argument("--pareto", nargs="?", const="halvings", default=None, metavar="BUDGETS",
                   help="one study for every size up to --max-params: two objectives "
                        "(validation accuracy up, parameters down), the finalists shared among "
                        "the size bands these budgets cut (comma-separated, e.g. "
                        "5000,8000,10000; bare: --max-params halved while the space's smallest "
                        "network fits); export and replay --max-params N then pick the best "
                        "under N (default: one objective, one budget)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--artifact-dir", default=None, help=ARTIFACT_DIR_HELP)
    a = p.parse_args(argv)
    if a.quick:  # the preset fills in what was not given on the command line
        given = p.parse_args(argv, namespace=argparse.Namespace(**{k: None for k in QUICK}))
        for k, v in QUICK.items():
            if getattr(given, k) is None:
                setattr(a, k, v)
    if a.study_name is not None and not a.study_name.strip():
        p.error("--study-name must not be empty (leave it out for the default)")
    if a.epochs > CHALLENGE_EPOCHS and not a.allow_long:
        p.error(f"--epochs {a.epochs} is above the challenge's {CHALLENGE_EPOCHS}; "
                f"add --allow-long to mean it")
    try:
        dataset, data_dir = resolve_dataset(a.dataset, a.data_dir)
    except UserError as e:
        p.error(str(e))
    # Digits are never mirrored; clothing is (Dataset.hflip); --hflip/--no-hflip decide.
    hflip = a.hflip if a.hflip is not None else (is_name(dataset) and NAMED[dataset].hflip)
    train = TrainConfig(epochs=a.epochs, batch_size=a.batch_size or d.full_schedule.batch_size,
                        lr=a.lr or d.full_schedule.lr, compile=a.compile, seed=a.seed,
                        deterministic=a.deterministic, precision=a.precision, hflip=hflip)
    name = a.study_name or default_study_name(a.max_params, a.epochs, name_of(dataset)) + (
        "-pareto" if a.pareto is not None else "") + ("-quick" if a.quick else "")
    unset = [k for k in DESIGN if getattr(a, k) is None]
    cfg = SearchConfig(
        storage=a.storage, study_name=name,
        trials=a.trials, workers=a.workers, max_params=a.max_params, sampler=a.sampler,
        pruner=a.pruner, device=a.device, dataset=dataset, data_dir=data_dir,
        val_size=a.val_size, seed=a.seed, full_schedule=train,
        proxy_epochs=d.proxy_epochs if a.proxy_epochs is None else a.proxy_epochs or None,
        proxy_subset=d.proxy_subset if a.proxy_subset is None else a.proxy_subset or None,
        finalists=a.finalists, finalist_seeds=a.finalist_seeds, timeout=a.timeout,
        artifact_dir=a.artifact_dir, space=a.space or d.space,
        train_space=a.train_space or d.train_space, time_budget=a.time_budget)
    # What the command line leaves out of the design, a resumed study keeps as it was made
    # (the search says so once the study has opened).
    cfg = study_design(cfg, unset)
    if cfg.train_space == "sweep" and (a.lr is not None or a.batch_size is not None):
        p.error("--lr and --batch-size set a fixed recipe, and --train-space sweep (the "
                "default for a new study) chooses them per candidate: add --train-space fixed")
    if a.pareto is not None:
        if a.pruner != "none":
            p.error(f"--pruner {a.pruner} cannot go with --pareto: Optuna prunes no "
                    f"multi-objective study (the search stage's short proxy and promotion "
                    f"within size bands are the Pareto search's multi-fidelity)")
        cfg = replace(cfg, pareto=pareto_budgets(p, a.pareto, cfg))
    return cfg, not a.no_progress


def pareto_budgets(p: argparse.ArgumentParser, text: str, cfg: SearchConfig) -> tuple[int, ...]:
    """``--pareto``'s budgets, with ``--max-params`` last (nas.study.pareto.budgets_of)."""
    if text == "halvings":
        return halvings(cfg.max_params, param_count(smallest(cfg.space, input_of(cfg))))
    try:
        words = [int(w.replace("_", "")) for w in text.split(",") if w.strip()]
        return budgets_of(words, cfg.max_params)
    except ValueError as e:
        p.error(f"--pareto: {e}" if "--" in str(e) else
                f"--pareto must be budgets such as 5000,8000,10000, got {text!r}")
    raise AssertionError  # p.error exits


def main(argv: Sequence[str] | None = None) -> int:
    cfg, progress = parse_args(argv)
    # This process's own logging: the bars, the one-line notes and the summary say it all
    # (the library leaves Optuna's log level alone; worker processes set their own).
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = search(cfg, progress=progress)
    print(summary(study, cfg))
    return 0


def cli() -> None:
    run(main, "python -m nas.search")


if __name__ == "__main__":
    cli()
