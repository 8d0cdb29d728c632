"""``python -m nas.search``: an Optuna study of trained CNN candidates under a parameter budget.

Running it again with the same storage and study resumes: it adds candidates until the study
holds ``--trials`` trained ones, and never touches earlier trials. ``--workers N`` runs N
processes against the same study; a shared counter hands out exactly the remaining number of
training slots, so the total is exact whatever the number of workers.
"""

from __future__ import annotations

from collections.abc import Sequence

from nas.cli import (ARTIFACT_DIR_HELP, DATA_DIR_HELP, DEVICE_HELP, Parser, describe,
                     nonneg_int, positive_float, positive_int, run)
from nas.runner import search
from nas.search_space import SPACE_VERSIONS, TRAIN_SPACES
from nas.study import PRUNERS, SAMPLERS, SearchConfig, default_study_name, summary
from nas.train import PRECISIONS, TrainConfig
from nas.zoo import CHALLENGE_EPOCHS


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
    p.add_argument("--proxy-epochs", type=nonneg_int, default=d.proxy_epochs,
                   help="the search stage's own complete short schedule, at most --epochs; 0: "
                        "the full --epochs schedule (default %(default)s)")
    p.add_argument("--proxy-subset", type=nonneg_int, default=d.proxy_subset,
                   help="the search stage trains on at most this many images of the training "
                        "split (a fixed, seeded subset; the finalists train on all); 0: all "
                        "(default %(default)s)")
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
    p.add_argument("--data-dir", default=d.data_dir, help=DATA_DIR_HELP)
    p.add_argument("--val-size", type=positive_int, default=d.n_val,
                   help="validation images carved from the 60,000 (default %(default)s)")
    p.add_argument("--sampler", default=d.sampler, choices=SAMPLERS,
                   help="tpe: multivariate TPE with constant liar, learns the budget's edge; "
                        "random: uniform (default %(default)s)")
    p.add_argument("--pruner", default=d.pruner, choices=PRUNERS,
                   help="stops weak candidates after an epoch or two; the last epoch is never "
                        "pruned (default %(default)s)")
    p.add_argument("--space", type=int, default=d.space, choices=SPACE_VERSIONS,
                   help="search space version: 1 draws absolute widths; 2 draws the shape and "
                        "relative widths and scales them to fill --max-params, with one label "
                        "per network and a receptive-field floor for global-pool heads (a "
                        "study keeps the version it was made with) (default %(default)s)")
    p.add_argument("--train-space", default=d.train_space, choices=TRAIN_SPACES,
                   help="fixed: every candidate trains with --lr, --batch-size and the default "
                        "recipe; sweep: the search also chooses learning rate, weight decay, "
                        "label smoothing, batch size, weight EMA and augmentation strength, "
                        "and a candidate is its network and its settings (default %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=d.train.batch_size,
                   help="training batch size (default %(default)s)")
    p.add_argument("--lr", type=positive_float, default=d.train.lr,
                   help="peak learning rate (default %(default)s)")
    p.add_argument("--precision", default=d.train.precision, choices=PRECISIONS,
                   help="training precision (default %(default)s: bf16 on CUDA >= 8.0 and on "
                        "CPUs with bf16 units, fp16 with a gradient scaler on CUDA 7.x, else fp32)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels: same seed, same device, same numbers; slower "
                        "(default: off)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--artifact-dir", default=None, help=ARTIFACT_DIR_HELP)
    a = p.parse_args(argv)
    if a.study_name is not None and not a.study_name.strip():
        p.error("--study-name must not be empty (leave it out for the default)")
    if a.epochs > CHALLENGE_EPOCHS and not a.allow_long:
        p.error(f"--epochs {a.epochs} is above the challenge's {CHALLENGE_EPOCHS}; "
                f"add --allow-long to mean it")
    train = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, compile=a.compile,
                        seed=a.seed, deterministic=a.deterministic, precision=a.precision)
    cfg = SearchConfig(
        storage=a.storage, study_name=a.study_name or default_study_name(a.max_params, a.epochs),
        trials=a.trials, workers=a.workers, max_params=a.max_params, sampler=a.sampler,
        pruner=a.pruner, device=a.device, data_dir=a.data_dir, n_val=a.val_size,
        seed=a.seed, train=train, proxy_epochs=a.proxy_epochs or None,
        proxy_subset=a.proxy_subset or None, finalists=a.finalists,
        finalist_seeds=a.finalist_seeds, timeout=a.timeout, artifact_dir=a.artifact_dir,
        space=a.space, train_space=a.train_space)
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
