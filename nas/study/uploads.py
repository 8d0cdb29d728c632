"""The files a study attaches as Optuna artifacts, and reading them back safely.

A trained trial attaches its architecture (``arch.json``, ``layers.md``); a replay attaches
each seed's weights, ``model.onnx`` and its reports to the study (a finished trial takes no
new artifacts). The files live in an Optuna artifact store (:func:`nas.study.artifacts.
open_store`: by default a folder beside the database); Optuna links them by artifact id, so a
database copied with its artifact folder keeps every link. Reading back trusts nothing: ids
must be plain names inside the folder, checkpoints must hold exactly their spec's tensors.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.artifacts import download_artifact, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, Trial

from nas.arch.plan import Plan
from nas.arch.spec import ArchSpec
from nas.errors import ArtifactError
from nas.study import record
from nas.study.artifacts import MAX_ARTIFACT_BYTES
from nas.training.checkpoint import checkpoint_of

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore


def write_replay(study: optuna.Study, trial: FrozenTrial, report: dict[str, Any],
                 note: str, store: ArtifactStore | None = None,
                 files: Sequence[Path] = ()) -> None:
    """A replay's summary on the study (for export) and in the trial's note (for people).

    With ``store``, ``files`` (each seed's weights, ``model.onnx``, the reports) are uploaded
    first. Optuna refuses artifacts on a finished trial (UpdateFinishedTrialError), and a
    replay comes after its trial finished, so they are *study* artifacts named
    ``trial<N>-<name>``; the record keeps their ids under
    :data:`nas.study.record.REPLAY_ARTIFACTS` and names the weights by file name, never by a
    local path, and the note links them. Without a store (or from nas 0.1) ``weights`` holds
    the absolute paths the replay wrote.
    """
    rec = {k: report[k] for k in record.REPLAY_KEYS}
    if store is not None and files:
        ids = {}
        with tempfile.TemporaryDirectory() as tmp:
            for f in files:
                named = Path(tmp) / f"trial{trial.number}-{f.name}"
                named.write_bytes(f.read_bytes())  # the upload takes its name from the path
                ids[f.name] = upload_artifact(artifact_store=store, file_path=str(named),
                                              study_or_trial=study,
                                              mimetype=_MIMETYPES.get(f.suffix))
        rec[record.REPLAY_ARTIFACTS] = ids
        rec["weights"] = [Path(w).name for w in rec["weights"]]
        links = "\n".join(f"- [trial{trial.number}-{name}](/artifacts/{study._study_id}/{aid})"
                          for name, aid in ids.items())
        note += (f"\n### Replay files (study artifacts)\n\n{links}\n\nAlso under the "
                 f"study's Artifacts tab.\n")
    record.write_replay_record(study, trial.number, rec)
    # A finished trial cannot take new user attributes, but its note lives on the study.
    record.save_note(optuna.trial.Trial(study, trial._trial_id), note)


@dataclass(frozen=True)
class ReplayWeights:
    """Seed 0's checkpoint of a replay, or why there is none: ``why_not`` completes "the
    weights of trial N's replay ..." (e.g. "are not in nas.db.artifacts (...)", "were refused:
    ...")."""

    checkpoint: dict[str, Any] | None
    why_not: str = ""


def replay_checkpoint(study: optuna.Study, number: int, spec: ArchSpec,
                      store: ArtifactStore | None, folder: Path | None = None,
                      trusted: Sequence[Path] = ()) -> ReplayWeights:
    """Seed 0's checkpoint of trial ``number``'s replay (seed 0's: picking the best seed
    would be selection on the test set), read back from the artifact store by id.

    Only files inside the study's own folders are read: ``store`` (a
    :class:`nas.study.artifacts.CheckedStore`, whose folder ``folder`` is, for the messages) refuses
    ids that resolve outside it; a replay recorded before artifacts (nas 0.1) names an absolute
    path, read only if it resolves, symlinks included, to a regular file under one of
    ``trusted`` (the artifact folder and the database's folder: nas 0.1 wrote runs/ beside
    it). A path elsewhere is refused without being opened. The record itself is checked by
    :func:`nas.study.record.replay_of` (RecordError). No checkpoint: ``why_not`` says why."""
    replay = record.replay_of(study, number)
    if replay is None:
        return ReplayWeights(None, "do not exist (no replay recorded)")
    first = replay["weights"][0]
    ids = replay.get(record.REPLAY_ARTIFACTS)
    where = folder if folder is not None else "the artifact folder"
    hint = "copy the artifact folder with the database, or pass --artifact-dir"
    if not ids:
        return _checkpoint_by_path(Path(first), spec, trusted)
    if first not in ids:
        return ReplayWeights(None, f"were refused: the record names weights {first!r:.80}, "
                                   f"which are not among its artifacts")
    if store is None:
        return ReplayWeights(None, f"are not in {where} (no such folder: {hint})")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.pt"
        try:
            download_artifact(artifact_store=store, file_path=str(path),
                              artifact_id=ids[first])
        except ArtifactNotFound:
            return ReplayWeights(None, f"are not in {where} ({hint})")
        except ValueError as e:  # the store refused the id (nas.study.artifacts.ArtifactRefused)
            return ReplayWeights(None, f"were refused: {e}")
        except OSError as e:
            raise ArtifactError(f"artifact folder {where}: {e.strerror or e}") from None
        ckpt = checkpoint_of(path, spec)
    if ckpt is None:
        return ReplayWeights(None, f"were refused: artifact {ids[first]} ({first}) is not a "
                                   f"checkpoint of this trial's spec")
    return ReplayWeights(ckpt)


def _checkpoint_by_path(path: Path, spec: ArchSpec, trusted: Sequence[Path]) -> ReplayWeights:
    """A nas 0.1 record's weights: an absolute path, read only inside ``trusted``."""
    if not path.is_absolute():
        return ReplayWeights(None, f"were refused: the record names {str(path)!r:.80}, not an "
                                   f"absolute path as nas 0.1 wrote")
    real = path.resolve()
    roots = [r.resolve() for r in trusted]
    if not any(real.is_relative_to(r) for r in roots):
        places = " or ".join(str(r) for r in roots) or "no folder of this study"
        return ReplayWeights(None, f"were refused: the record names {path}, outside {places} "
                                   f"(nas reads a study's files only from its own folders)")
    if not real.exists():
        return ReplayWeights(None, f"are not at {path}, where the record says")
    if not real.is_file() or real.stat().st_size > MAX_ARTIFACT_BYTES:
        return ReplayWeights(None, f"were refused: {path} is not a checkpoint file")
    ckpt = checkpoint_of(real, spec)
    if ckpt is None:
        return ReplayWeights(None, f"were refused: {path} is not a checkpoint of this "
                                   f"trial's spec")
    return ReplayWeights(ckpt)


_MIMETYPES = {".pt": "application/octet-stream", ".onnx": "application/octet-stream",
              ".md": "text/markdown", ".json": "application/json"}


def write_arch_artifacts(trial: Trial, store: ArtifactStore | None, plan: Plan) -> None:
    """Attach the trial's architecture as artifacts: ``arch.json`` (the spec, what
    ``nas.replay --spec`` takes) and ``layers.md`` (the layer table). No store: nothing."""
    if store is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in ((record.ARCH_FILE, plan.spec.to_json(indent=2) + "\n"),
                           (record.LAYERS_FILE, record.trial_note(plan, trial.number))):
            path = Path(tmp) / name
            path.write_text(text)
            upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial,
                            mimetype=_MIMETYPES[path.suffix])


def artifact_names(trial: FrozenTrial, storage: optuna.storages.BaseStorage) -> list[str]:
    """The file names of a trial's artifacts."""
    return sorted(m.filename for m in optuna.artifacts.get_all_artifact_meta(
        trial, storage=storage))
