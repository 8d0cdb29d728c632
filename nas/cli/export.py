"""``python -m nas.export``: a trial's architecture as files that need no ``nas`` to use.

Writes ``arch.json`` (the spec), ``model.py`` (standalone PyTorch source, same parameter count,
with its ``preprocess``), ``summary.md`` (layer table, parameters, receptive field, accuracy,
the input contract) and, when a replay of the trial has produced weights, ``weights.pt`` (seed
0's: picking the best seed would be selection on the test set) and ``model.onnx``: one
self-contained file whose input is raw uint8 pixels (see :mod:`nas.export.onnx`). The weights
are read back from the study's artifact store, so a study copied with its artifact folder
exports anywhere.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import torch

from nas.arch.plan import plan
from nas.arch.spec import ArchSpec
from nas.cli.common import (ARTIFACT_DIR_HELP, Parser, add_study_args, describe, make_dir,
                            positive_int, run)
from nas.errors import UserError
from nas.export.codegen import model_source, recipe_of
from nas.export.onnx import INPUT_NAME, input_contract, metadata, write_onnx
from nas.study import pareto, record, selection, uploads
from nas.study.artifacts import artifact_dir, open_store, study_folders
from nas.study.storage import faults, load_study, open_storage, redact
from nas.study.table import write_csv
from nas.training.dataset import Dataset

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore


def export(study: optuna.Study, trial_number: int | None, out: Path,
           store: ArtifactStore | None = None, folder: Path | None = None,
           trusted: Sequence[Path] = ()) -> tuple[list[Path], str]:
    """Write the files; returns their paths and, when the trial has a replay whose weights
    were not written, why (see :class:`nas.study.record.ReplayWeights`). ``store`` is the study's
    artifact store (:func:`nas.study.artifacts.open_store`, folder ``folder``), where a replay's
    weights are; a replay recorded by nas 0.1 (an absolute path) is read only from under
    ``trusted`` (:func:`nas.study.artifacts.study_folders`). Everything is read and checked before
    anything is written: a bad record writes nothing."""
    t = selection.select_trial(study, trial_number)
    spec = record.spec_of(t, study)
    dataset = record.dataset_of(study)  # the study's: its classes, shape and normalisation
    replay = record.replay_of(study, t.number)
    # The settings that trained the exported weights: the replay's, else the trial's own.
    recipe = recipe_of(replay["train_config"] if replay else record.train_config_of(t, study))
    summary = _summary(study, t, spec, replay, recipe, dataset)
    weights = uploads.replay_checkpoint(study, t.number, spec, store, folder, trusted) \
        if replay else uploads.ReplayWeights(None)
    make_dir(out)
    written = [out / "arch.json", out / "model.py", out / "summary.md", out / "recipe.json"]
    try:
        written[0].write_text(spec.to_json(indent=2) + "\n")
        written[1].write_text(model_source(spec, recipe, dataset))
        written[2].write_text(summary)
        written[3].write_text(json.dumps(_recipe_file(recipe, replay, dataset,
                                                      record.split_size(study)), indent=2) + "\n")
        ckpt = weights.checkpoint
        if ckpt is not None:
            torch.save(ckpt, out / "weights.pt")
            written.append(out / "weights.pt")
            written.append(write_onnx(spec, ckpt["state_dict"], out / "model.onnx",
                                      metadata(spec, _test_accuracy(replay), dataset), dataset))
    except OSError as e:
        raise UserError(f"--out {out}: {e.strerror or e}") from None
    return written, weights.why_not if replay else ""


def _test_accuracy(replay: dict | None) -> str | None:
    """The replay's accuracy as the ONNX metadata states it (seed 0's weights are exported;
    the mean over seeds is the figure to quote)."""
    if not replay:
        return None
    return (f"{replay['test_acc_final'][0]:.4f} (this file: seed 0, final epoch); mean over "
            f"{len(replay['seeds'])} seed(s) {replay['mean']:.4f} ± {replay['std']:.4f}")


def _recipe_file(recipe: dict[str, object], replay: dict | None, dataset: Dataset,
                 split: int = 0) -> dict[str, object]:
    """recipe.json: every setting that trained the network, and how to train it again."""
    c, h, w = dataset.shape
    data = ("all training images of the data set (MNIST: 60,000), as nas.replay trains; "
            "selection used a 50,000/10,000 split of them, never the test set")
    if dataset.name != "MNIST":  # MNIST's words stay as they were
        data = (f"all training images of {dataset.name}, as nas.replay trains; selection used "
                f"a split of them ({split:,} for training, the rest for validation), never "
                f"the test set")
    return {"train_config": recipe,
            "data": data,
            "source": "the replay that made weights.pt" if replay else
                      "the trial's own training (no replay yet)",
            "snippet": ["import model", "net = model.fit(train_pixels, train_labels)  "
                        f"# uint8 (N, {c}, {h}, {w}) and int64 (N,)",
                        "net.eval()",
                        "predictions = net(model.preprocess(test_pixels)).argmax(1)"]}


def _summary(study: optuna.Study, t: optuna.trial.FrozenTrial, spec: ArchSpec,
             replay: dict | None, recipe: dict[str, object], dataset: Dataset) -> str:
    val = record.curve_of(t, study)
    p = plan(spec)
    lines = [f"# {study.study_name}, trial {t.number}", "",
             f"- parameters: {p.params:,} (budget {record.max_params_of(study, p.params):,})",
             f"- receptive field (before the head): {p.receptive_field}",
             f"- spec key: `{spec.key()}`"]
    final = next((f for f in selection.finalists(study)
                  if any(r.number == t.number for r in f.runs)), None)
    if final is not None:
        lines.append(f"- finalist of search-stage trial {record.finalist_of(t)}: validation "
                     f"accuracy {final.mean:.2%} ± {final.se:.2%} (mean ± SE over "
                     f"{len(final.runs)} seed(s), final epoch of {len(val)}; this trial is "
                     f"seed {record.finalist_seed(t)})")
    else:
        lines.append(f"- validation accuracy (final epoch of {len(val)}, one seed): "
                     f"{record.accuracy_of(t):.2%}")
    if replay:
        lines.append(f"- replay, final-epoch test accuracy over {len(replay['seeds'])} seed(s): "
                     f"{replay['mean']:.2%} ± {replay['std']:.2%} on {replay['device']} "
                     f"({replay['date']})")
    else:
        lines.append("- test accuracy: not measured yet (run `python -m nas.replay`)")
    lines += ["", "## Input", "",
              f"- `model.onnx` (one self-contained file) takes `{INPUT_NAME}`: "
              f"{input_contract(dataset)}.",
              f"- classes: {dataset.classes_text()}",
              "- `model.py` builds the bare network, which takes normalised floats: pass "
              "images through its `preprocess` first.",
              "", "## Training recipe", "",
              "The settings that trained this network (the replay's when there is one; also in "
              "`recipe.json`; `model.fit(pixels, labels)` "
              "trains a fresh network this way, in plain PyTorch):", "",
              "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in recipe.items()]
    return "\n".join(lines) + "\n\n## Layers\n\n" + p.table() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = Parser(prog="python -m nas.export", description=describe(__doc__))
    which = add_study_args(p)
    which.add_argument("--max-params", type=positive_int, default=None,
                       help="the best trial with at most this many parameters (a --pareto "
                            "study's answer for that budget)")
    p.add_argument("--out", type=Path, default=Path("export"),
                   help="folder to write the files to (default %(default)s)")
    p.add_argument("--artifact-dir", default=None, help=ARTIFACT_DIR_HELP)
    p.add_argument("--trials-csv", action="store_true",
                   help="also write trials.csv: every trial of the study as one row (stage, "
                        "outcome, validation accuracy, epochs, parameters, receptive field, "
                        "finalist and seed, training settings, spec key), for pandas")
    a = p.parse_args(argv)
    with faults(a.storage):  # every read of the study, not only the first, is one line
        study = load_study(open_storage(a.storage, create=False), a.study_name, a.storage)
        record.check_made_by_nas(study, a.storage)
        folder = artifact_dir(a.storage, a.artifact_dir)
        number = selection.select_trial(study, a.trial, a.max_params).number
        files, why_not = export(study, number, a.out,
                                open_store(a.storage, a.artifact_dir, create=False), folder,
                                study_folders(a.storage, a.artifact_dir))
        replayed = record.replay_of(study, number) is not None
        if a.trials_csv:
            files.append(write_csv(study, a.out / "trials.csv"))
        if record.is_pareto(study):
            files.append(write_front(study, a.out / "front.svg"))
    for path in files:
        print(path)
    if why_not:
        print(f"note: the weights of trial {number}'s replay {why_not}: architecture files "
              f"only", file=sys.stderr)
    elif not replayed:
        print(f"note: no weights yet (weights.pt and model.onnx come from a replay): run "
              f"python -m nas.replay {replay_args(a, number)}, then this export again",
              file=sys.stderr)
    return 0


def write_front(study: optuna.Study, path: Path) -> Path:
    """A Pareto study's front as an SVG at ``path`` (:func:`nas.study.pareto.front_svg`, with
    the budgets the study's search last ran with). Returns ``path``."""
    max_params = record.max_params_of(study, max((record.param_count_of(t)
                                                  for t in study.get_trials(deepcopy=False)),
                                                 default=1))
    budgets = pareto.budgets_of([b for b in record.pareto_budgets_of(study) if b <= max_params],
                                max_params)
    path.write_text(pareto.front_svg(study, budgets))
    return path


def replay_args(a: argparse.Namespace, number: int) -> str:
    """The replay command's arguments for this export's study and trial, shell-quoted (the
    storage's password, if any, redacted)."""
    args = ["--storage", redact(a.storage)]
    if a.study_name is not None:
        args += ["--study-name", a.study_name]
    args += ["--trial", str(number), "--seeds", "5"]
    if a.artifact_dir is not None:
        args += ["--artifact-dir", a.artifact_dir]
    return " ".join(shlex.quote(x) for x in args)


def cli() -> None:
    run(main, "python -m nas.export")


if __name__ == "__main__":
    cli()
