"""``python -m nas.export``: a trial's architecture as files that need no ``nas`` to use.

Writes ``arch.json`` (the spec), ``model.py`` (standalone PyTorch source, same parameter count),
``summary.md`` (layer table, parameters, receptive field, validation accuracy) and, when a
replay of the trial has produced weights, ``weights.pt`` (seed 0's: picking the best seed would
be selection on the test set) and ``model.onnx``.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import optuna
import torch

from nas import record
from nas.builder import build
from nas.cli import Parser, UserError, describe, nonneg_int, run
from nas.codegen import model_source
from nas.layers import plan
from nas.spec import ArchSpec
from nas.storage import load_study, open_storage


def export(study: optuna.Study, trial_number: int | None, out: Path) -> list[Path]:
    """Write the files; returns their paths."""
    t = record.select_trial(study, trial_number)
    spec = record.spec_of(t)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "arch.json", out / "model.py", out / "summary.md"]
    written[0].write_text(spec.to_json(indent=2) + "\n")
    written[1].write_text(model_source(spec))
    replay = record.replay_of(study, t.number)
    written[2].write_text(_summary(study, t, spec, replay))
    weights = Path(replay["weights"][0]) if replay and replay.get("weights") else None
    if weights is not None and weights.is_file():
        shutil.copyfile(weights, out / "weights.pt")
        written.append(out / "weights.pt")
        written.append(export_onnx(spec, weights, out / "model.onnx"))
    return written


def export_onnx(spec: ArchSpec, weights: Path, path: Path) -> Path:
    """ONNX of the trained network: input (N, 1, 28, 28) normalised floats, output logits."""
    model = build(spec)
    model.load_state_dict(record.load_weights(weights))
    model.eval()
    x = torch.zeros(1, spec.in_channels, spec.input_size, spec.input_size)
    torch.onnx.export(model, (x,), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True,
                      verbose=False)
    return path


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
    return "\n".join(lines) + "\n\n" + p.table() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = Parser(prog="python -m nas.export", description=describe(__doc__))
    p.add_argument("--storage", default="sqlite:///nas.db")
    p.add_argument("--study-name", default=None, help="default: the storage's only study")
    p.add_argument("--trial", type=nonneg_int, default=None, help="default: the best trial")
    p.add_argument("--out", type=Path, default=Path("export"))
    a = p.parse_args(argv)
    if a.out.exists() and not a.out.is_dir():
        raise UserError(f"--out {a.out} exists and is not a directory")
    study = load_study(open_storage(a.storage, create=False), a.study_name, a.storage)
    for path in export(study, a.trial, a.out):
        print(path)
    return 0


def cli() -> None:
    run(main, "python -m nas.export")


if __name__ == "__main__":
    cli()
