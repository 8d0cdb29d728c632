"""``python -m nas.replay``: retrain a trial from scratch on K seeds and report test accuracy.

Each seed trains the trial's recorded spec with its recorded training settings on all the study's
training images (MNIST: 60,000) and is evaluated on its test images after every epoch. The data
are the study's own (its recorded --dataset and folder); other data are refused in one line.
The figure that counts is the *final* epoch's test accuracy (choosing the best epoch would be
selection on the test set), reported per seed and as mean ± sample standard deviation.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import torch

from nas.arch.plan import plan
from nas.arch.spec import ArchSpec
from nas.arch.zoo import CHALLENGE_ACCURACY, CHALLENGE_EPOCHS, REFERENCE
from nas.cli.common import (ARTIFACT_DIR_HELP, DATASET_HELP, DEVICE_HELP, NAMED_DATA_DIR_HELP,
                            Parser, add_study_args, describe, make_dir, positive_int,
                            resolve_dataset, run)
from nas.errors import ConfigError, UserError
from nas.export.onnx import data_contract, metadata, write_onnx
from nas.study import record, selection, uploads
from nas.study.artifacts import ArtifactError, open_store
from nas.study.config import data_identity, data_words
from nas.study.processes import handle_signals
from nas.study.storage import StorageError, check_writable, faults, load_study, open_storage
from nas.training import checkpoint
from nas.training.data import MNIST as Loaded
from nas.training.sources import is_name, load_data
from nas.training.trainer import (PRECISIONS, EpochReport, TrainConfig, TrainingDiverged,
                                  check_data, device_name, resolve_device, train)

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

REPLAY_FILES = record.REPLAY_FILE_NAMES  # besides each seed's weights


@dataclass
class ReplayReport:
    study: str
    trial: int
    spec: dict[str, Any]
    params: int
    receptive_field: int
    max_params: int
    train_config: dict[str, Any]
    seeds: list[int]
    train_images: int = 0
    test_images: int = 0
    test_acc_final: list[float] = field(default_factory=list)  # one per seed
    test_acc_curves: list[list[float]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    weights: list[str] = field(default_factory=list)
    device: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    date: str = ""
    precision: str = ""  # what the seeds trained in (resolved: bf16, fp16 or fp32)
    dataset: str = "MNIST"  # the data set's name: the accuracy target is MNIST's challenge
    # What the data are and what model.onnx takes and gives: nas.export.onnx.data_contract's
    # words, which the ONNX's metadata states too.
    data: dict[str, str] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.test_acc_final)

    @property
    def std(self) -> float:
        a = self.test_acc_final
        return statistics.stdev(a) if len(a) > 1 else 0.0

    @property
    def epochs(self) -> int:
        return int(self.train_config["epochs"])

    def challenge(self) -> dict[str, bool]:
        """The challenge's checks; on other data than MNIST its accuracy target (an MNIST
        figure) is left out and the budget checks stay."""
        accuracy = {f"mean test accuracy >= {CHALLENGE_ACCURACY:.1%}":
                    self.mean >= CHALLENGE_ACCURACY} if self.dataset == "MNIST" else {}
        return {**accuracy,
                f"parameters <= {self.max_params:,}": self.params <= self.max_params,
                f"epochs <= {CHALLENGE_EPOCHS}": self.epochs <= CHALLENGE_EPOCHS}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(mean=self.mean, std=self.std, challenge=self.challenge(),
                 challenge_holds=all(self.challenge().values()))
        return d

    def markdown(self) -> str:
        rows = "\n".join(f"| {s} | {a:.2%} | {t:.1f} |" for s, a, t in
                         zip(self.seeds, self.test_acc_final, self.seconds))
        checks = "\n".join(f"- [{'x' if ok else ' '}] {k}" for k, ok in self.challenge().items())
        title = f"trial {self.trial} ({self.study})" if self.trial >= 0 else self.study
        return (f"## Replay of {title}\n\n"
                f"Final-epoch test accuracy on {self.test_images:,} test images over "
                f"{len(self.seeds)} seed(s), {self.epochs} epochs on {self.train_images:,} "
                f"training images, on {self.device}, {self.date}:\n\n"
                f"**{self.mean:.2%} ± {self.std:.2%}** (mean ± std)\n\n"
                + "".join(f"- {k}: {v}\n" for k, v in self.data.items())
                + ("\n" if self.data else "") +
                f"| seed | test acc (final epoch) | seconds |\n|---:|---:|---:|\n{rows}\n\n"
                f"Challenge:\n{checks}\n")


def replay(study: optuna.Study, trial_number: int | None, seeds: int, epochs: int | None,
           device: torch.device, data: Loaded, out: Path | None,
           deterministic: bool = False, progress: bool = True,
           precision: str | None = None, budget: int | None = None) -> ReplayReport:
    """Retrain a trial with its recorded spec and settings; saves weights and reports under
    ``out``, training on ``data`` (:func:`study_data`). The challenge check holds it to
    ``budget`` parameters (default: the study's ``--max-params``). :func:`record_replay`
    records the result on the study."""
    t = selection.select_trial(study, trial_number)
    spec = record.spec_of(t, study)
    p = plan(spec)
    cfg = TrainConfig.from_dict(record.train_config_of(t, study))
    cfg = replace(cfg, epochs=epochs or cfg.epochs, deterministic=deterministic,
                  precision=precision or cfg.precision)
    out = out or default_out(study.study_name, t.number)
    report = ReplayReport(study.study_name, t.number, spec.to_dict(), p.params,
                          p.receptive_field, budget or record.max_params_of(study, p.params),
                          cfg.to_dict(), list(range(seeds)))
    retrain(report, spec, cfg, device, data, out, progress)
    return report


def study_data(study: optuna.Study, dataset: str | None, data_dir: str | None) -> Loaded:
    """The data a replay of ``study`` trains and tests on: by default the study's own (its
    recorded ``--dataset``, read from its recorded folder or file, or from the name's own
    copy when that folder no longer exists; MNIST's shipped copy for a study made before
    ``--dataset``), else ``dataset`` / ``data_dir``. Raises UserError, one
    line, when they are not the data the study searched on: another name, shape or class
    count, or (for a study that records its data set) other training images."""
    rec = record.data_set_of(study)
    download = True
    if dataset is None and rec is not None:
        arg = rec.arg
        if not is_name(arg):
            arg, data_dir = resolve_dataset(arg, data_dir)
        elif data_dir is None:
            # Where the search read it; if that folder is gone (a study committed from another
            # checkout, or searched from a copy since deleted), the name's own copy, as a new
            # search would read it: the identity check below still refuses other images.
            # Either is read, never downloaded into (nothing is written where the user did
            # not ask).
            if rec.source and Path(rec.source).exists():
                data_dir = rec.source
            else:
                arg, data_dir = resolve_dataset(arg, None)
            download = False
    else:
        arg, data_dir = resolve_dataset(dataset or "mnist", data_dir)
    data = load_data(arg, data_dir, download)
    was = record.data_identity_of(study) or {}
    now = data_identity(data)
    # A study made before --dataset is MNIST, on whatever copy: only the name can be compared
    # (its tests and users replay it on another copy). One that records its data set is
    # compared on everything both sides hold, the training images' hash too.
    keys = set(was) & set(now) if rec is not None else {"name"}
    diff = sorted(k for k in keys if was.get(k, "MNIST") != now[k])
    if diff:
        raise UserError(f"study {study.study_name!r} was made on {data_words(was)}, not "
                        f"{data_words(now)} read from {data.source} ({', '.join(diff)} "
                        f"differ{'s' if len(diff) == 1 else ''}): leave out --dataset and "
                        f"--data-dir to replay it on its own data")
    return data


def slug(name: str) -> str:
    """``name`` as one safe file-name component: runs of anything but letters, digits, ``.``,
    ``_`` and ``-`` become ``-``, no leading dot or dash, at most 80 characters. A study name
    comes from the study file, which may come from anywhere: ``x/../../../../tmp/evil`` must
    not become a path."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")[:80].strip(".-")
    return text or "study"


def default_out(study_name: str, trial: int | None = None) -> Path:
    """The documented default ``--out``: ``runs/replay-<study>[-trial<N>]``, always one folder
    directly under ``runs/`` (the name slugged by :func:`slug`)."""
    return Path("runs") / (f"replay-{slug(study_name)}" +
                           (f"-trial{trial}" if trial is not None else ""))


def record_replay(study: optuna.Study, report: ReplayReport,
                  store: ArtifactStore | None = None) -> None:
    """The report on the study (for export) and in the trial's dashboard note (for people);
    with ``store``, the weights, ONNX and reports as the study's artifacts."""
    t = selection.select_trial(study, report.trial)
    note = record.trial_note(plan(record.spec_of(t, study)), t.number, "\n" + report.markdown())
    out = Path(report.weights[0]).parent
    files = [Path(w) for w in report.weights] + [out / name for name in REPLAY_FILES]
    uploads.write_replay(study, t, report.to_dict(), note, store, files)


def retrain(report: ReplayReport, spec: ArchSpec, cfg: TrainConfig, device: torch.device,
            data: Loaded, out: Path, progress: bool) -> None:
    """Train ``spec`` on all training images of ``data`` once per seed of ``report``, testing
    after every epoch, normalised with ``data``'s descriptor (which the ONNX states, with its
    classes); fills ``report`` and writes weights, report.json, report.md and model.onnx under
    ``out``."""
    mnist, dataset = data, data.dataset
    check_data(spec, mnist.train, "training")  # before anything is written
    check_data(spec, mnist.test, "test")
    train_split, test_split = mnist.train.to(device), mnist.test.to(device)
    make_dir(out)
    report.train_images, report.test_images = len(train_split), len(test_split)
    report.dataset = dataset.name
    said = data_contract(dataset)
    report.data = {"data": said["dataset"], "classes": said["classes"],
                   "model.onnx input": said["input"], "model.onnx output": said["output"]}
    report.device, report.versions = device_name(device), checkpoint.versions()
    report.date = time.strftime("%Y-%m-%d")
    from tqdm.auto import tqdm

    for seed in report.seeds:
        path = out / f"seed{seed}.pt"
        done = _finished_seed(path, spec, replace(cfg, seed=seed), len(train_split))
        if done is not None:  # an interrupted replay resumes: this seed's weights are there
            _add_seed(report, path, done["test_acc_final"], done["test_acc_curve"],
                      done["seconds"], done["precision"])
            if progress:
                print(f"seed {seed}: final-epoch test accuracy {done['test_acc_final']:.2%} "
                      f"(from {path})")
            continue
        curve: list[float] = []
        bar = tqdm(total=cfg.epochs, desc=f"seed {seed}", unit="ep", disable=not progress,
                   leave=False, dynamic_ncols=True)

        def on_epoch(r: EpochReport, curve: list[float] = curve, bar: Any = bar) -> None:
            curve.append(r.accuracy)
            bar.update(1)
            bar.set_postfix_str(f"test {r.accuracy:.2%}")

        try:
            result = train(spec, train_split, test_split, replace(cfg, seed=seed), device,
                           callback=on_epoch, dataset=dataset)
        except TrainingDiverged as e:
            raise UserError(f"seed {seed} diverged ({e}); the seeds before it are in "
                            f"{out}") from None
        finally:
            bar.close()
        assert result.model is not None
        checkpoint.save_checkpoint(path, spec, result.model.state_dict(),
                               replace(cfg, seed=seed).to_dict(),
                               {"test_acc_final": result.final_accuracy, "test_acc_curve": curve,
                                "precision": result.precision,
                                "seconds": round(result.seconds, 2),
                                "train_images": len(train_split)})
        _add_seed(report, path, result.final_accuracy, curve, result.seconds, result.precision)
        if progress:
            print(f"seed {seed}: final-epoch test accuracy {result.final_accuracy:.2%} "
                  f"({result.seconds:.1f} s)")
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2))
    (out / "report.md").write_text(report.markdown() + "\n" + plan(spec).table() + "\n")
    seed0 = checkpoint.load_weights(Path(report.weights[0]))
    acc = (f"{report.test_acc_final[0]:.4f} (this file: seed 0, final epoch); mean over "
           f"{len(report.seeds)} seed(s) {report.mean:.4f} ± {report.std:.4f}")
    write_onnx(spec, seed0, out / "model.onnx", metadata(spec, acc, dataset), dataset)


def _finished_seed(path: Path, spec: ArchSpec, cfg: TrainConfig,
                   train_images: int) -> dict[str, Any] | None:
    """The metrics of ``path`` if it holds this very training run, finished (same spec, same
    settings and seed, a full curve on all training images); else None: train it (again)."""
    ckpt = checkpoint.checkpoint_of(path, spec)
    if ckpt is None or ckpt.get("train_config") != cfg.to_dict():
        return None
    m = ckpt.get("metrics", {})
    keys = ("test_acc_final", "test_acc_curve", "seconds", "precision", "train_images")
    if not all(k in m for k in keys) or len(m["test_acc_curve"]) != cfg.epochs or \
            m["train_images"] != train_images:
        return None  # e.g. written before replays recorded their seconds
    return m


def _add_seed(report: ReplayReport, path: Path, acc: float, curve: list[float],
              seconds: float, precision: str) -> None:
    report.precision = precision
    report.test_acc_final.append(acc)
    report.test_acc_curves.append(list(curve))
    report.seconds.append(round(seconds, 2))
    report.weights.append(str(path.resolve()))


def main(argv: Sequence[str] | None = None) -> int:
    """The command; SIGTERM and SIGINT end it as one line (nas.cli.common.run), the seeds
    already written kept for the same command to reuse."""
    with handle_signals():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    p = Parser(prog="python -m nas.replay", description=describe(__doc__))
    which = add_study_args(p)
    p.add_argument("--spec", default=None,
                   help="instead of a trial: an arch.json, or a reference network ("
                        + ", ".join(REFERENCE) + "), trained with the default settings or "
                        "--recipe's")
    p.add_argument("--recipe", default=None,
                   help="with --spec: training settings from a JSON file (an exported "
                        "recipe.json), the rest default; e.g. a search's recipe on a hand "
                        "design")
    p.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None,
                   help="with --spec: mirror a random half of each batch left-right (default: "
                        "the --recipe's setting, else the data set's: on for fashion-mnist, "
                        "off for digits and for data nas knows nothing about; a trial trains "
                        "with its own)")
    which.add_argument("--max-params", type=positive_int, default=None,
                       help="the best trial with at most this many parameters (a --pareto "
                            "study's answer for that budget), held to it by the challenge "
                            "check; with --spec, the budget that check uses (default: the "
                            "study's --max-params; 20,000 with --spec)")
    p.add_argument("--seeds", type=positive_int, default=3,
                   help="independent retrainings, seeds 0..K-1 (default %(default)s)")
    p.add_argument("--epochs", type=positive_int, default=None, help="default: the study's")
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"),
                   help=DEVICE_HELP)
    p.add_argument("--dataset", default=None,
                   help=DATASET_HELP.replace("(default %(default)s)", "(default: the study's "
                                             "own, read where its search read it (or the "
                                             "name's own copy if that folder is gone); mnist with "
                                             "--spec)"))
    p.add_argument("--data-dir", default=None,
                   help=NAMED_DATA_DIR_HELP.replace("(default: ", "(default: the folder the "
                                                    "study's search read; with --dataset or "
                                                    "--spec, "))
    p.add_argument("--out", type=Path, default=None,
                   help="folder for the weights, reports and model.onnx (default "
                        "runs/replay-<study>-trial<N>, the study name made a safe file name)")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="default: the trial's recorded setting (auto for --spec: by device)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic kernels: same seed, same device, same numbers; slower "
                        "(default: off)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (default: shown)")
    p.add_argument("--artifact-dir", default=None, help=ARTIFACT_DIR_HELP)
    a = p.parse_args(argv)
    if a.recipe is not None and a.spec is None:
        p.error("--recipe goes with --spec (a study's trial trains with its own settings)")
    if a.hflip is not None and a.spec is None:
        p.error("--hflip goes with --spec (a study's trial trains with its own settings)")
    device = resolve_device(a.device)
    if a.spec is not None:
        spec = load_spec(a.spec)
        data = load_data(*resolve_dataset(a.dataset or "mnist", a.data_dir))
        # Mirroring as the search on this data does it (Dataset.hflip), unless the recipe (a
        # search's own settings) or --hflip says otherwise: "replayed the same way".
        base = load_recipe(a.recipe) if a.recipe is not None else TrainConfig(
            hflip=data.dataset.hflip)
        cfg = replace(base, deterministic=a.deterministic, precision=a.precision or "auto",
                      hflip=base.hflip if a.hflip is None else a.hflip)
        cfg = replace(cfg, epochs=a.epochs or cfg.epochs)
        name = Path(a.spec).stem if a.spec not in REFERENCE else a.spec
        p = plan(spec)
        r = ReplayReport(name, -1, spec.to_dict(), p.params, p.receptive_field,
                         a.max_params or 20_000,
                         cfg.to_dict(), list(range(a.seeds)))
        retrain(r, spec, cfg, device, data, a.out or default_out(name),
                progress=not a.no_progress)
    else:
        check_writable(a.storage)  # the result is recorded on the study: say so before training
        with faults(a.storage):  # every read of the study, not only the first, is one line
            study = load_study(open_storage(a.storage, create=False), a.study_name, a.storage)
            record.check_made_by_nas(study, a.storage)
            store = open_store(a.storage, a.artifact_dir, create=True)  # the study exists
            number = selection.select_trial(study, a.trial, a.max_params).number
            data = study_data(study, a.dataset, a.data_dir)  # refused before any training
        try:  # training and writing --out: a file fault there is the output folder's
            r = replay(study, number, a.seeds, a.epochs, device, data, a.out,
                       a.deterministic, progress=not a.no_progress, precision=a.precision,
                       budget=a.max_params)
        except OSError as e:
            raise UserError(f"--out: {e.strerror or e}"
                            f"{': ' + str(e.filename) if e.filename else ''}") from None
    _print(r)
    if a.spec is None:
        try:  # after printing: a fault here loses no result
            with faults(a.storage):
                record_replay(study, r, store)
        except StorageError as e:
            raise StorageError(f"the result above was not recorded on the study: {e}") from None
        except ArtifactError as e:  # the artifact folder's fault, not the storage's
            raise ArtifactError(f"the result above was not recorded on the study: {e}") \
                from None
    return 0


def _print(r: ReplayReport) -> None:
    accs = ", ".join(f"{x:.2%}" for x in r.test_acc_final)
    what = f"trial {r.trial}" if r.trial >= 0 else r.study
    print(f"{what} ({r.params:,} parameters, {r.epochs} epochs, {len(r.seeds)} seeds, "
          f"{r.device}): final-epoch test accuracy {r.mean:.2%} ± {r.std:.2%} [{accs}]")
    for k, ok in r.challenge().items():
        print(f"  {'PASS' if ok else 'FAIL'}  {k}")
    out = Path(r.weights[0]).parent
    print(f"weights, report and ONNX: {out}/ (seed0.pt ..., report.json, report.md, "
          f"model.onnx)", flush=True)


MAX_RECIPE_BYTES = 64_000


def load_recipe(arg: str) -> TrainConfig:
    """``--recipe``: training settings from a JSON file (an exported ``recipe.json``, or a
    trial's ``train_config``); settings it leaves out keep their defaults. Raises UserError in
    one line for a file that is missing, too large, not JSON or not training settings."""
    path = Path(arg)
    try:
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise UserError(f"--recipe {arg}: larger than {MAX_RECIPE_BYTES:,} bytes, not a "
                            f"recipe")
        d = json.loads(path.read_text())
        if isinstance(d, dict) and isinstance(d.get("train_config"), dict):
            d = d["train_config"]  # an exported recipe.json: the settings and their story
        if not isinstance(d, dict) or not d.keys() & TrainConfig.__dataclass_fields__.keys():
            raise UserError(f"--recipe {arg}: holds no training setting (expected an "
                            f"exported recipe.json or a train_config mapping)")
        return TrainConfig.from_dict(d)
    except OSError as e:
        raise UserError(f"--recipe {arg}: {e.strerror or e}") from None
    except (ValueError, TypeError, ConfigError) as e:  # not JSON; a wrong field or value
        raise UserError(f"--recipe {arg}: not training settings "
                        f"({str(e).splitlines()[0][:200]})") from None


def load_spec(arg: str) -> ArchSpec:
    """A reference network by name, or a spec from a JSON file (e.g. an exported arch.json)."""
    if arg in REFERENCE:
        return REFERENCE[arg]()
    path = Path(arg)
    if not path.is_file():
        raise UserError(f"--spec {arg!r} is neither a file nor a reference network "
                        f"({', '.join(REFERENCE)})")
    return ArchSpec.from_json(path.read_text())


def cli() -> None:
    run(main, "python -m nas.replay")


if __name__ == "__main__":
    cli()
