"""``python -m nas.export``: a trial's architecture as files that need no ``nas`` to use.

Writes ``arch.json`` (the spec), ``model.py`` (standalone PyTorch source, same parameter count),
``summary.md`` (layer table, parameters, receptive field, validation accuracy) and, when a
replay of the trial has produced weights, ``weights.pt`` (seed 0's: picking the best seed would
be selection on the test set) and ``model.onnx``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import optuna
import torch

from nas import record
from nas.builder import build
from nas.cli import Parser, UserError, describe, make_dir, nonneg_int, run
from nas.codegen import model_source
from nas.layers import plan
from nas.spec import ArchSpec
from nas.storage import load_study, open_storage


def export(study: optuna.Study, trial_number: int | None, out: Path) -> list[Path]:
    """Write the files; returns their paths."""
    t = record.select_trial(study, trial_number)
    spec = record.spec_of(t)
    make_dir(out)
    written = [out / "arch.json", out / "model.py", out / "summary.md"]
    try:
        written[0].write_text(spec.to_json(indent=2) + "\n")
        written[1].write_text(model_source(spec))
        replay = record.replay_of(study, t.number)
        written[2].write_text(_summary(study, t, spec, replay))
        state = _replay_weights(replay, spec)
        if state is not None:
            torch.save(state, out / "weights.pt")
            written.append(out / "weights.pt")
            written.append(export_onnx(spec, out / "weights.pt", out / "model.onnx"))
    except OSError as e:
        raise UserError(f"--out {out}: {e.strerror or e}") from None
    return written


def _replay_weights(replay: dict | None, spec: ArchSpec) -> dict | None:
    """Seed 0's checkpoint of the trial's replay, when it is still where the replay wrote it
    and is what nas wrote: a checkpoint of this very spec (the path comes from the study,
    which may have been copied from elsewhere; anything else is not copied)."""
    if not replay or not replay.get("weights"):
        return None
    return record.checkpoint_of(Path(replay["weights"][0]), spec)


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
    study = load_study(open_storage(a.storage, create=False), a.study_name, a.storage)
    record.check_made_by_nas(study, a.storage)
    for path in export(study, a.trial, a.out):
        print(path)
    return 0


def cli() -> None:
    run(main, "python -m nas.export")


if __name__ == "__main__":
    cli()
