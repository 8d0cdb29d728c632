"""``python -m nas.export``: a trial's architecture as files that need no ``nas`` to use.

Writes ``arch.json`` (the spec), ``model.py`` (standalone PyTorch source, same parameter count,
with its ``preprocess``), ``summary.md`` (layer table, parameters, receptive field, accuracy,
the input contract) and, when a replay of the trial has produced weights, ``weights.pt`` (seed
0's: picking the best seed would be selection on the test set) and ``model.onnx``: one
self-contained file whose input is raw uint8 pixels (see :mod:`nas.onnx_export`). The weights
are read back from the study's artifact store, so a study copied with its artifact folder
exports anywhere.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import torch

from nas import record
from nas.artifacts import artifact_dir, open_store
from nas.cli import (ARTIFACT_DIR_HELP, Parser, UserError, describe, make_dir, nonneg_int,
                     run)
from nas.codegen import model_source
from nas.layers import plan
from nas.onnx_export import INPUT_CONTRACT, INPUT_NAME, metadata, write_onnx
from nas.spec import ArchSpec
from nas.storage import faults, load_study, open_storage

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore


def export(study: optuna.Study, trial_number: int | None, out: Path,
           store: ArtifactStore | None = None) -> list[Path]:
    """Write the files; returns their paths. ``store`` is the study's artifact store
    (:func:`nas.artifacts.open_store`), where a replay's weights are; without it only the
    weights of a replay recorded by nas 0.1 (an absolute path) can be found."""
    t = record.select_trial(study, trial_number)
    spec = record.spec_of(t)
    make_dir(out)
    written = [out / "arch.json", out / "model.py", out / "summary.md"]
    try:
        written[0].write_text(spec.to_json(indent=2) + "\n")
        written[1].write_text(model_source(spec))
        replay = record.replay_of(study, t.number)
        written[2].write_text(_summary(study, t, spec, replay))
        ckpt = record.replay_checkpoint(study, t.number, spec, store)
        if ckpt is not None:
            torch.save(ckpt, out / "weights.pt")
            written.append(out / "weights.pt")
            written.append(write_onnx(spec, ckpt["state_dict"], out / "model.onnx",
                                      metadata(spec, _test_accuracy(replay))))
    except OSError as e:
        raise UserError(f"--out {out}: {e.strerror or e}") from None
    return written


def _test_accuracy(replay: dict | None) -> str | None:
    """The replay's accuracy as the ONNX metadata states it (seed 0's weights are exported;
    the mean over seeds is the figure to quote)."""
    if not replay:
        return None
    return (f"{replay['test_acc_final'][0]:.4f} (this file: seed 0, final epoch); mean over "
            f"{len(replay['seeds'])} seed(s) {replay['mean']:.4f} ± {replay['std']:.4f}")


def _summary(study: optuna.Study, t: optuna.trial.FrozenTrial, spec: ArchSpec,
             replay: dict | None) -> str:
    val = record.curve_of(t)
    p = plan(spec)
    lines = [f"# {study.study_name}, trial {t.number}", "",
             f"- parameters: {p.params:,} (budget {record.max_params_of(study, p.params):,})",
             f"- receptive field: {p.receptive_field}",
             f"- validation accuracy (final epoch of {len(val)}): {t.value:.2%}",
             f"- spec key: `{spec.key()}`"]
    if replay:
        lines.append(f"- replay, final-epoch test accuracy over {len(replay['seeds'])} seed(s): "
                     f"{replay['mean']:.2%} ± {replay['std']:.2%} on {replay['device']} "
                     f"({replay['date']})")
    else:
        lines.append("- test accuracy: not measured yet (run `python -m nas.replay`)")
    lines += ["", "## Input", "",
              f"- `model.onnx` (one self-contained file) takes `{INPUT_NAME}`: "
              f"{INPUT_CONTRACT}.",
              "- `model.py` builds the bare network, which takes normalised floats: pass "
              "images through its `preprocess` first."]
    return "\n".join(lines) + "\n\n## Layers\n\n" + p.table() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = Parser(prog="python -m nas.export", description=describe(__doc__))
    p.add_argument("--storage", default="sqlite:///nas.db",
                   help="the study's storage: SQLAlchemy URL or journal:PATH "
                        "(default %(default)s)")
    p.add_argument("--study-name", default=None, help="default: the storage's only study")
    p.add_argument("--trial", type=nonneg_int, default=None, help="default: the best trial")
    p.add_argument("--out", type=Path, default=Path("export"),
                   help="folder to write the files to (default %(default)s)")
    p.add_argument("--artifact-dir", default=None, help=ARTIFACT_DIR_HELP)
    a = p.parse_args(argv)
    with faults(a.storage):  # every read of the study, not only the first, is one line
        study = load_study(open_storage(a.storage, create=False), a.study_name, a.storage)
        record.check_made_by_nas(study, a.storage)
        files = export(study, a.trial, a.out,
                       open_store(a.storage, a.artifact_dir, create=False))
        number = record.select_trial(study, a.trial).number
        replayed = record.replay_of(study, number) is not None
    for path in files:
        print(path)
    if replayed and a.out / "model.onnx" not in files:
        print(f"note: the weights of trial {number}'s replay are not in "
              f"{artifact_dir(a.storage, a.artifact_dir)} (copy the artifact folder with the "
              f"database, or pass --artifact-dir): architecture files only", file=sys.stderr)
    return 0


def cli() -> None:
    run(main, "python -m nas.export")


if __name__ == "__main__":
    cli()
