"""The study's record: every key ``nas`` stores on an Optuna study or trial, and its readers and
writers. Nothing else names a record key.

A study holds its *identity* (what must match for trials to be comparable), the dataset, the
budget, the schedule and the versions that made it; each trial holds the candidate it sampled
(spec, parameters, receptive field), how it ended (``outcome``: rejected, complete, pruned,
failed, with a ``reason``), its per-epoch validation curve and timings, and an optuna-dashboard
note with its layer table. A replay's result is recorded on the study (a finished trial takes
no new user attributes), under ``replay:trial-N``.

The format is versioned (:data:`FORMAT_VERSION`, stored as ``format`` on the study): a study
without one is format 1, everything written before the version was recorded (nas 0.1.0's
``tests/data/study-v0.1.0.db`` is one), and reads back unchanged, each key missing from it
standing for its documented default. A study of a newer format than this release knows is
refused with one line (:func:`check_format`), not misread.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from nas import __version__
from nas.arch.plan import Plan, plan
from nas.arch.spec import (MAX_CLASSES, MAX_IN_CHANNELS, MAX_INPUT_SIZE, ArchSpec, SpecError,
                           short_repr)
from nas.errors import RecordError
from nas.study.artifacts import valid_artifact_id
from nas.study.processes import ProcessRecordError, check_process, this_process
from nas.training.checkpoint import versions
from nas.training.dataset import MNIST, NAMED, Dataset
from nas.training.space import train_params
from nas.training.trainer import ConfigError, TrainConfig

# -- trial user attributes ---------------------------------------------------------------------
SPEC = "spec"  # the ArchSpec as JSON text
ARCH_KEY = "arch_key"  # ArchSpec.key(): equal keys, same network
PARAMS = "params"
RF = "receptive_field"
OUTCOME = "outcome"  # one of OUTCOMES
REASON = "reason"
VAL_ACC = "val_acc"  # per-epoch validation accuracy
VAL_CORRECT = "val_correct"  # a finalist run's final epoch, per validation image (hex bitmask)
TRAIN_IMAGES = "train_images"  # images per epoch (the search stage may train on a subset)
EPOCH_SECONDS = "epoch_seconds"
TRAIN_SECONDS = "train_seconds"
DEVICE = "device"
TRAIN_CONFIG = "train_config"
PRECISION = "precision"  # what the trial trained in: bf16, fp16 or fp32 (resolved, never auto)
PROCESS = "process"  # nas.study.processes.this_process() of the process that ran the trial
STAGE = "stage"  # SEARCH (the cheap stage) or FINALIST (full schedule, one seed)
FINALIST_OF = "finalist_of"  # a finalist's search-stage trial (whose architecture it retrains)
FINALIST_SEED = "finalist_seed"
RECORDED_FOR = "recorded_for"  # a trial that holds the result of trial N, failed meanwhile
SEARCH, FINALIST = "search", "finalist"
LABEL = "label"  # a few words for optuna-dashboard's trial list: "search", "rejected", ...

# How a trial ended. Only the trained outcomes count toward --trials: a rejected candidate was
# never built, a duplicate reused an earlier trial's result, an interrupted one is redone.
REJECTED, COMPLETE, PRUNED, FAILED = "rejected", "complete", "pruned", "failed"
DUPLICATE, INTERRUPTED = "duplicate", "interrupted"
OUTCOMES = (REJECTED, COMPLETE, PRUNED, FAILED, DUPLICATE, INTERRUPTED)
TRAINED_OUTCOMES = (COMPLETE, PRUNED, FAILED)

# -- study user attributes ---------------------------------------------------------------------
IDENTITY = "identity"  # what must match to resume
DATASET = "dataset"
# What rebuilds the study's data set descriptor (nas.training.dataset.Dataset) and finds its
# files again: export states its classes and normalisation, replay reads the same data. A study
# without it (made before --dataset) is MNIST's.
DATA_SET = "data_set"
MAX_PARAMS = "max_params"
EPOCHS = "epochs"
VERSIONS = "versions"
FORMAT = "format"  # the record's format version: FORMAT_VERSION when written, 1 when missing
# 2: the format is recorded; the stage objects' keys, per-image finalist records, space
# versions and training-space labels are all optional and default as format 1 read them.
FORMAT_VERSION = 2
LAST_COMMAND = "last_command"
PARETO_BUDGETS = "pareto_budgets"  # a Pareto study's size bands' budgets, as last searched
_REPLAY = "replay:trial-{}"  # a trial's replay summary


# -- validating what is read -------------------------------------------------------------------
# A study may come from anywhere (a shared .db and its .artifacts folder): every value read from
# it is untrusted input, checked here against its schema (type, range, size) before use, and a
# bad one is a RecordError naming the study, the trial and the attribute. The readers below are
# the one place per attribute; they take the study, where they know it, for the message.
MAX_SEEDS = 1000  # in a replay record
MAX_CURVE = 1000  # epochs in a recorded curve (TrainConfig's bound)
MAX_TEXT = 4096  # characters of a recorded path, device or date


def _where(trial: FrozenTrial | int | None, study: optuna.Study | None) -> str:
    parts = [f"study {short_repr(study.study_name)}"] if study is not None else []
    if trial is not None:
        parts.append(f"trial {trial if isinstance(trial, int) else trial.number}")
    return ", ".join(parts) or "the study"


def _bad(trial: FrozenTrial | int | None, study: optuna.Study | None, key: str,
         why: str) -> RecordError:
    return RecordError(f"{_where(trial, study)}: attribute {key!r} {why}")


def _is_number(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def _is_int(v: Any, low: int = 0) -> bool:
    return type(v) is int and low <= v < 2**63


def _int_attr(trial: FrozenTrial, key: str, default: int,
              study: optuna.Study | None = None) -> int:
    v = trial.user_attrs.get(key, default)
    if not _is_int(v):
        raise _bad(trial, study, key, f"must be a non-negative integer, got {short_repr(v)}")
    return v


# -- writing a study ---------------------------------------------------------------------------
def write_study(study: optuna.Study, identity: dict[str, Any], dataset: dict[str, Any],
                max_params: int, epochs: int) -> None:
    """What a new study records once, at creation."""
    study.set_user_attr(FORMAT, FORMAT_VERSION)
    study.set_user_attr(IDENTITY, identity)
    study.set_user_attr(DATASET, dataset)
    study.set_user_attr(MAX_PARAMS, max_params)
    study.set_user_attr(EPOCHS, epochs)
    study.set_user_attr(VERSIONS, versions())
    write_dashboard_labels(study)


STUDY_NOTE = """## How to read this study (nas)

- **Pruned** with user attribute `outcome=rejected` (note: *rejected: ..., not trained*):
  the candidate was over the parameter budget or impossible; it was never built or trained.
  It is PRUNED only so that Optuna's sampler learns the budget's edge (its constraint).
- **Pruned** with `outcome=pruned`: trained, then stopped early by the pruner (its note
  holds the layer table, its curve the epochs it ran). `outcome=duplicate`: an architecture
  the study had already trained, not trained again.
- **Labels**: the user attribute `label` says what a trial is: `search` (a candidate on the
  search stage's proxy schedule), `finalist of #N, seed k` (trial N's candidate retrained on
  the full schedule), `rejected`, `duplicate`, `interrupted`. Search-stage and finalist values
  are on different schedules: compare finalists with finalists (table below, once there).
- **Artifacts**: every trained trial carries `arch.json` and `layers.md`; a replay's weights,
  `model.onnx` and report are study artifacts named `trial<N>-...`, linked from the trial's
  note. Open them with `optuna-dashboard --artifact-dir <database>.artifacts <storage>`.
"""


def write_dashboard_labels(study: optuna.Study) -> None:
    """What optuna-dashboard shows about the study as a whole: the objectives' names
    (``val_acc``, and ``params`` in a Pareto study, not "Objective 0") and a note on how to read its trial states."""
    with warnings.catch_warnings():  # set_metric_names is flagged experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([VAL_ACC, PARAMS][:len(study.directions)])
    save_note(study, STUDY_NOTE)


def format_of(study: optuna.Study) -> int:
    """The study's record format (1 for a study that does not say)."""
    v = study.user_attrs.get(FORMAT, 1)
    if not _is_int(v, 1):
        raise _bad(None, study, FORMAT, f"must be a format version (1 or more), got "
                                        f"{short_repr(v)}")
    return v


def check_format(study: optuna.Study) -> None:
    """Raise RecordError for a study written in a format newer than this release reads."""
    v = format_of(study)
    if v > FORMAT_VERSION:
        raise RecordError(f"study {short_repr(study.study_name)} was written by a newer nas "
                          f"(record format {v}; this nas {__version__} reads formats up to "
                          f"{FORMAT_VERSION}): upgrade nas to read it")


def identity_of(study: optuna.Study) -> dict[str, Any] | None:
    return study.user_attrs.get(IDENTITY)


def check_made_by_nas(study: optuna.Study, url: str) -> None:
    """Raise RecordError for a study that ``nas.search`` did not make (e.g. plain Optuna's),
    or one in a record format newer than this release reads (:func:`check_format`)."""
    if identity_of(study) is None or \
            [d.name.lower() for d in study.directions] not in [list(d) for d in DIRECTIONS.values()]:
        from nas.study.storage import redact

        raise RecordError(f"study {study.study_name!r} in {redact(url)} was not made by nas.search "
                          f"(it has no nas identity): pass another --study-name")
    check_format(study)


def write_last_command(study: optuna.Study, argv: list[str], settings: dict[str, Any]) -> None:
    """The command line and resolved settings of the last search, with every storage
    password replaced by ``***`` (:func:`nas.study.storage.redact`): a study is shared, a
    password is not."""
    from nas.study.storage import redact

    def hide(value: Any) -> Any:
        if isinstance(value, str):
            return redact(value)
        if isinstance(value, dict):
            return {k: hide(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [hide(v) for v in value]
        return value

    study.set_user_attr(LAST_COMMAND, {"argv": hide(list(argv)), "settings": hide(settings)})


def max_params_of(study: optuna.Study, default: int) -> int:
    v = study.user_attrs.get(MAX_PARAMS, default)
    if not _is_int(v, 1):
        raise _bad(None, study, MAX_PARAMS, f"must be a positive integer, got {short_repr(v)}")
    return v


def write_pareto_budgets(study: optuna.Study, budgets: Sequence[int]) -> None:
    """The budgets whose bands the search (re)started now shares its finalists among."""
    study.set_user_attr(PARETO_BUDGETS, list(budgets))


def pareto_budgets_of(study: optuna.Study) -> tuple[int, ...]:
    """A Pareto study's budgets, ascending (empty where none is recorded)."""
    v = study.user_attrs.get(PARETO_BUDGETS, [])
    if not isinstance(v, list) or len(v) > 64 or not all(_is_int(b, 1) for b in v):
        raise _bad(None, study, PARETO_BUDGETS, f"must be a list of positive integers, got "
                                                f"{short_repr(v)}")
    return tuple(sorted(v))


# -- the data set -----------------------------------------------------------------------------
MAX_NAME = 200  # characters of a data set's or a class's name


@dataclass(frozen=True)
class DataSetRecord:
    """What a study records of its data: the descriptor, the ``--dataset`` argument that read
    it (a name, or the absolute path of a folder or .npz) and the folder or file it was read
    from (``source``)."""

    dataset: Dataset
    arg: str
    source: str


def write_data_set(study: optuna.Study, dataset: Dataset, arg: str, source: str) -> None:
    """Record ``dataset`` (every field an export needs: name, classes, shape, mean, std,
    the class noun, the flip default, the content hash), the ``--dataset`` argument and the
    source folder or file, once, when the study is made."""
    study.set_user_attr(DATA_SET, {
        "arg": arg, "source": source, "name": dataset.name,
        "description": dataset.description, "classes": list(dataset.classes),
        "shape": list(dataset.shape), "mean": dataset.mean, "std": dataset.std,
        "class_noun": dataset.class_noun, "hflip": dataset.hflip, "sha256": dataset.sha256})


def _text(v: Any, most: int, empty: bool = False) -> bool:
    """A printable one-line string of at most ``most`` characters (it reaches texts, file
    metadata and generated source)."""
    return isinstance(v, str) and (empty or v != "") and len(v) <= most and v.isprintable()


def data_set_of(study: optuna.Study) -> DataSetRecord | None:
    """The study's data set record, checked (it may come from anywhere); None for a study
    made before ``--dataset`` (its data are MNIST: :func:`dataset_of`)."""
    rec = study.user_attrs.get(DATA_SET)
    if rec is None:
        return None

    def bad(why: str) -> RecordError:
        return _bad(None, study, DATA_SET, why)

    if not isinstance(rec, dict):
        raise bad(f"must be a mapping, got {short_repr(rec)}")
    for key, most in (("arg", MAX_TEXT), ("source", MAX_TEXT), ("name", MAX_NAME),
                      ("description", MAX_NAME), ("class_noun", MAX_NAME)):
        if not _text(rec.get(key), most):
            raise bad(f"field {key!r} must be a line of text of at most {most:,} characters, "
                      f"got {short_repr(rec.get(key))}")
    classes, shape = rec.get("classes"), rec.get("shape")
    if not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES or \
            not all(_text(c, MAX_NAME, empty=True) for c in classes):
        raise bad(f"field 'classes' must be a list of 2 to {MAX_CLASSES:,} class names, got "
                  f"{short_repr(classes)}")
    if not isinstance(shape, list) or len(shape) != 3 or \
            not all(_is_int(v, 1) for v in shape) or shape[0] > MAX_IN_CHANNELS or \
            max(shape[1:]) > MAX_INPUT_SIZE:
        raise bad(f"field 'shape' must be [channels, height, width] within "
                  f"{MAX_IN_CHANNELS}x{MAX_INPUT_SIZE}x{MAX_INPUT_SIZE}, got {short_repr(shape)}")
    mean, std = rec.get("mean"), rec.get("std")
    if not (_is_number(mean) and 0 <= mean <= 1 and _is_number(std) and 0 < std <= 1):
        raise bad(f"fields 'mean' and 'std' must be pixel statistics on [0, 1] (std above 0), "
                  f"got {short_repr(mean)} and {short_repr(std)}")
    sha = rec.get("sha256")
    if sha is not None and not (isinstance(sha, str) and len(sha) == 64 and
                                all(ch in "0123456789abcdef" for ch in sha)):
        raise bad(f"field 'sha256' must be 64 hex digits or null, got {short_repr(sha)}")
    if type(rec.get("hflip")) is not bool:
        raise bad(f"field 'hflip' must be true or false, got {short_repr(rec.get('hflip'))}")
    named = NAMED.get(rec["arg"].strip().lower())
    if named is not None:  # a named data set is the code's own descriptor
        return DataSetRecord(named, rec["arg"], rec["source"])
    dataset = Dataset(name=rec["name"], description=rec["description"],
                      classes=tuple(classes), shape=(shape[0], shape[1], shape[2]),
                      mean=float(mean), std=float(std), files=MNIST.files, sha256=sha,
                      class_noun=rec["class_noun"], hflip=rec["hflip"])
    return DataSetRecord(dataset, rec["arg"], rec["source"])


def dataset_of(study: optuna.Study) -> Dataset:
    """The descriptor of the data the study trained on: its record's, else MNIST's (a study
    made before ``--dataset``)."""
    rec = data_set_of(study)
    return rec.dataset if rec is not None else MNIST


def data_identity_of(study: optuna.Study) -> dict[str, Any] | None:
    """The data part of the study's identity (name, training images, SHA-256, and for
    studies made since ``--dataset`` shape and classes), or None when it has none."""
    identity = identity_of(study)
    data = identity.get("data") if isinstance(identity, dict) else None
    return data if isinstance(data, dict) else None


# -- writing a trial ---------------------------------------------------------------------------
def write_process(trial: Trial) -> None:
    """Which process runs the trial, so that a later command can tell if it died."""
    trial.set_user_attr(PROCESS, this_process())


def write_candidate(trial: Trial, spec: ArchSpec, plan: Plan) -> None:
    """The sampled architecture, before any decision about it."""
    trial.set_user_attr(SPEC, spec.to_json())
    trial.set_user_attr(ARCH_KEY, spec.key())
    trial.set_user_attr(PARAMS, plan.params)
    trial.set_user_attr(RF, plan.receptive_field)


def write_outcome(trial: Trial, outcome: str, reason: str = "") -> None:
    assert outcome in OUTCOMES, outcome
    trial.set_user_attr(OUTCOME, outcome)
    if outcome in (DUPLICATE, INTERRUPTED, FAILED, PRUNED):  # what the trial list shows
        label = label_of(trial)
        trial.set_user_attr(LABEL, outcome if label == SEARCH else f"{label} ({outcome})")
    if reason:
        trial.set_user_attr(REASON, reason)


def write_rejected_note(trial: Trial, reason: str) -> None:
    """The dashboard note and label of a rejected candidate, so that it does not read like a
    pruned one (both are PRUNED for Optuna)."""
    trial.set_user_attr(LABEL, "rejected")
    save_note(trial, f"## Trial {trial.number}: rejected, not trained\n\n"
                     f"rejected: {reason}, not trained\n")


def label_of(trial: FrozenTrial | Trial) -> str:
    """What a trial is, in a few words: ``search`` or ``finalist of #73, seed 1``."""
    if stage_of(trial) == FINALIST:
        return (f"finalist of #{trial.user_attrs.get(FINALIST_OF)}, seed "
                f"{trial.user_attrs.get(FINALIST_SEED)}")
    return SEARCH


def write_training_start(trial: Trial, device: str, train_config: dict[str, Any],
                         plan: Plan, train_images: int) -> None:
    """What a trial trains with, its label, and its dashboard note (its layer table under a
    heading that says which trial, and for a finalist whose)."""
    trial.set_user_attr(DEVICE, device)
    trial.set_user_attr(TRAIN_CONFIG, train_config)
    trial.set_user_attr(TRAIN_IMAGES, train_images)
    label = label_of(trial)
    trial.set_user_attr(LABEL, label)
    heading = f"Trial {trial.number}" + (f": {label}" if label != SEARCH else "")
    save_note(trial, trial_note(plan, trial.number, heading=heading))


def write_precision(trial: Trial, precision: str) -> None:
    """The precision the trial's training resolved to on its device (its train_config holds
    what was asked for, e.g. auto)."""
    trial.set_user_attr(PRECISION, precision)


def write_curve(trial: Trial, val_acc: list[float]) -> None:
    trial.set_user_attr(VAL_ACC, val_acc)


def encode_correct(correct: Sequence[bool]) -> dict[str, Any]:
    """Per-image right/wrong as stored: the count and the bits as one hex number."""
    bits = "".join("1" if c else "0" for c in correct)
    return {"n": len(bits), "hex": f"{int(bits, 2):0{(len(bits) + 3) // 4}x}" if bits else ""}


def write_val_correct(trial: Trial, correct: Sequence[bool]) -> None:
    """Which validation images the final network got right, so that two finalists are
    compared on the same images (:func:`compare`)."""
    trial.set_user_attr(VAL_CORRECT, encode_correct(correct))


def val_correct_of(trial: FrozenTrial) -> list[bool] | None:
    """What :func:`write_val_correct` wrote; None when the trial has no (readable) record."""
    rec = trial.user_attrs.get(VAL_CORRECT)
    if not isinstance(rec, dict) or not isinstance(rec.get("n"), int) or \
            not isinstance(rec.get("hex"), str) or not 0 < rec["n"] <= 10_000_000:
        return None
    try:
        bits = f"{int(rec['hex'], 16):0{rec['n']}b}"
    except ValueError:
        return None
    return [b == "1" for b in bits] if len(bits) == rec["n"] else None


def write_timings(trial: Trial, epoch_seconds: list[float], seconds: float) -> None:
    trial.set_user_attr(EPOCH_SECONDS, [round(s, 3) for s in epoch_seconds])
    trial.set_user_attr(TRAIN_SECONDS, round(seconds, 3))


# -- a trial failed while its process was paused -----------------------------------------------
def record_for_lost_trial(trial: Trial, value: float | tuple[float, float], val_acc: list[float],
                          epoch_seconds: list[float], seconds: float) -> int:
    """Record the finished training of ``trial`` on a new COMPLETE trial and return its number.

    For ``trial`` that another process marked FAIL meanwhile (Optuna's heartbeat, after this
    process was silent past the grace period, e.g. stopped with SIGSTOP): a finished trial
    takes no value or attribute any more, so the result goes on a trial added with
    ``study.add_trial``, with the same parameters, distributions, constraints (system
    attributes) and attributes, plus :data:`RECORDED_FOR` naming the failed one. The failed
    trial keeps no outcome, so it is not counted as trained; the new one is, once."""
    study = trial.study
    old = study._storage.get_trial(trial._trial_id)
    attrs = {**old.user_attrs, VAL_ACC: list(val_acc), OUTCOME: COMPLETE,
             EPOCH_SECONDS: [round(s, 3) for s in epoch_seconds],
             TRAIN_SECONDS: round(seconds, 3), RECORDED_FOR: old.number,
             REASON: f"trained as trial {old.number}, which another process marked failed "
                     f"while this one was paused (Optuna's heartbeat)"}
    values = list(value) if isinstance(value, tuple) else [value]  # what the objective returns
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.COMPLETE, values=values, params=old.params,
        distributions=old.distributions, user_attrs=attrs, system_attrs=old.system_attrs,
        # Optuna keeps no intermediate values in a multi-objective study
        intermediate_values={i + 1: a for i, a in enumerate(val_acc)} if len(values) == 1
        else None))
    added = [t.number for t in study.get_trials(deepcopy=False)
             if t.user_attrs.get(RECORDED_FOR) == old.number]
    return added[-1]


def requeue_lost_trial(trial: Trial) -> None:
    """Queue ``trial``'s candidate again (same parameters; a finalist with its stage, source
    and seed) after another process marked it FAIL before its training finished: it was not
    trained, and the next trial of any worker takes it up."""
    old = trial.study._storage.get_trial(trial._trial_id)
    keep = {k: old.user_attrs[k] for k in (STAGE, FINALIST_OF, FINALIST_SEED, SPEC, ARCH_KEY)
            if k in old.user_attrs and stage_of(old) == FINALIST}
    trial.study.enqueue_trial(old.params, user_attrs=keep or None)


# -- reading trials ----------------------------------------------------------------------------
def spec_of(trial: FrozenTrial, study: optuna.Study | None = None) -> ArchSpec:
    """The spec a trial trained (no ``Trial`` or sampler needed). Raises RecordError, naming
    the study (when given), the trial and why, for a missing, non-text or invalid spec
    (:meth:`ArchSpec.from_json` bounds its size and depth) or one without a plan (shapes,
    :data:`nas.arch.plan.MAX_PARAMS`)."""
    if SPEC not in trial.user_attrs:
        raise RecordError(f"{_where(trial, study)} holds no nas architecture (no {SPEC!r} "
                          f"attribute)")
    text = trial.user_attrs[SPEC]
    if not isinstance(text, str):
        raise _bad(trial, study, SPEC, f"must be JSON text, got {type(text).__name__}")
    try:
        spec = ArchSpec.from_json(text)
        plan(spec)  # memoised; a trained trial's spec has one, a tampered one may not
    except SpecError as e:
        raise _bad(trial, study, SPEC, f"is not a valid spec: {e}") from None
    return spec


def key_of(trial: FrozenTrial) -> str | None:
    """The architecture's canonical key (nas 0.1.0's studies stored only the spec)."""
    if ARCH_KEY in trial.user_attrs:
        key = trial.user_attrs[ARCH_KEY]
        if not isinstance(key, str):
            raise _bad(trial, None, ARCH_KEY, f"must be text, got {short_repr(key)}")
        return key
    return spec_of(trial).key() if SPEC in trial.user_attrs else None


def candidate_key(trial: FrozenTrial | Trial) -> str | None:
    """What makes two trials the same candidate: the architecture's key and, for studies that
    search training settings, those settings (the trial's ``train_`` parameters). A study
    without a training space has candidate keys equal to architecture keys, as before."""
    key = key_of(trial)  # type: ignore[arg-type]
    # A queued trial has no parameters of its own until it has suggested them: its settings
    # are the ones it was queued with (compared on params, a waiting finalist looked like a
    # new candidate and every resume queued it again).
    params = {**queued_params(trial), **trial.params} if isinstance(trial, FrozenTrial) \
        else trial.params  # what it was queued with (maybe a part), then what it suggested
    settings = train_params(params)
    if key is None or not settings:
        return key
    return key + "|" + json.dumps(settings, sort_keys=True, separators=(",", ":"))


def queued_params(trial: FrozenTrial) -> dict[str, Any]:
    """The parameters the trial was (or will be) run with: those it was queued with
    (``enqueue_trial``) while it waits, else those it suggested."""
    return dict(trial.system_attrs.get("fixed_params", trial.params))


def was_interrupted(trial: FrozenTrial) -> bool:
    """A trial that ended FAIL because its process was interrupted or died, before its
    training finished: its candidate was never trained."""
    return trial.state == TrialState.FAIL and outcome_of(trial) == INTERRUPTED


def train_seconds_of(trial: FrozenTrial, study: optuna.Study | None = None) -> float | None:
    """How long the trial's training took, start to end (None: not recorded)."""
    v = trial.user_attrs.get(TRAIN_SECONDS)
    if v is None:
        return None
    if not _is_number(v) or v < 0:
        raise _bad(trial, study, TRAIN_SECONDS, f"must be a number of seconds, got "
                                                f"{short_repr(v)}")
    return float(v)


def epoch_seconds_of(trial: FrozenTrial, study: optuna.Study | None = None) -> list[float]:
    """How long each of the trial's epochs took, evaluation included ([]: not recorded)."""
    v = trial.user_attrs.get(EPOCH_SECONDS)
    if v is None:
        return []
    if not isinstance(v, list) or not all(_is_number(s) and s >= 0 for s in v):
        raise _bad(trial, study, EPOCH_SECONDS, f"must be a list of seconds, got "
                                                f"{short_repr(v)}")
    return [float(s) for s in v]


def outcome_of(trial: FrozenTrial) -> str | None:
    return trial.user_attrs.get(OUTCOME)


# -- objective values: validation accuracy first; a Pareto study adds parameters (minimised) --
DIRECTIONS = {False: ("maximize",), True: ("maximize", "minimize")}  # by "is it a Pareto study"


def accuracy_of(trial: FrozenTrial) -> float | None:
    """The trial's validation accuracy (its first objective value), None without a value. A
    Pareto study's trials have two values, so Optuna's ``trial.value`` raises there: every
    reader goes through this."""
    values = trial.values
    return float(values[0]) if values else None


def objective_values(accuracy: float, params: int, pareto: bool) -> float | tuple[float, float]:
    """What the objective returns for a trained candidate: its accuracy, or (accuracy,
    parameters) in a Pareto study (:data:`DIRECTIONS`)."""
    return (accuracy, float(params)) if pareto else accuracy


def is_pareto(study: optuna.Study) -> bool:
    """Whether ``study`` has the Pareto search's two objectives."""
    return len(study.directions) == 2


def reason_of(trial: FrozenTrial) -> str:
    return str(trial.user_attrs.get(REASON, ""))


def param_count_of(trial: FrozenTrial, study: optuna.Study | None = None) -> int:
    return _int_attr(trial, PARAMS, 0, study)


def rf_of(trial: FrozenTrial, study: optuna.Study | None = None) -> int:
    return _int_attr(trial, RF, 0, study)


def curve_of(trial: FrozenTrial, study: optuna.Study | None = None) -> list[float]:
    """The per-epoch validation accuracies: at most MAX_CURVE numbers in [0, 1]."""
    curve = trial.user_attrs.get(VAL_ACC, [])
    if not isinstance(curve, list) or len(curve) > MAX_CURVE or \
            not all(_is_number(a) and 0 <= a <= 1 for a in curve):
        raise _bad(trial, study, VAL_ACC, f"must be a list of at most {MAX_CURVE} accuracies "
                                          f"in [0, 1], got {short_repr(curve)}")
    return list(curve)


def train_config_of(trial: FrozenTrial, study: optuna.Study | None = None) -> dict[str, Any]:
    """The training settings the trial recorded, checked as :meth:`TrainConfig.from_dict`
    checks them (keys it does not know, such as 0.1's bf16 switches, are kept and ignored).
    A field of the wrong type or range is a RecordError naming it."""
    cfg = trial.user_attrs.get(TRAIN_CONFIG, {})
    try:
        TrainConfig.from_dict(cfg)
    except ConfigError as e:
        raise _bad(trial, study, TRAIN_CONFIG, f"is not a valid training config: {e}") from None
    except TypeError as e:  # not a mapping with text keys
        raise _bad(trial, study, TRAIN_CONFIG, f"is not a valid training config: {e}") from None
    return dict(cfg)


def precision_of(trial: FrozenTrial) -> str | None:
    """bf16, fp16 or fp32; None for trials of nas 0.1.0's studies (bf16 switches only)."""
    return trial.user_attrs.get(PRECISION)


def stage_of(trial: FrozenTrial | Trial) -> str:
    """``search`` (the cheap stage; every trial of nas 0.1.0's studies) or ``finalist``."""
    return str(trial.user_attrs.get(STAGE, SEARCH))


def was_trained(trial: FrozenTrial) -> bool:
    """True for search-stage candidates that went to training (and ended), false for
    rejected, duplicate or interrupted ones and for finalists. This is what ``--trials``
    counts."""
    return outcome_of(trial) in TRAINED_OUTCOMES and stage_of(trial) == SEARCH and \
        trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def count_trained(study: optuna.Study) -> int:
    return sum(was_trained(t) for t in study.get_trials(deepcopy=False))


def count_outcome(trials: list[FrozenTrial], outcome: str) -> int:
    return sum(outcome_of(t) == outcome for t in trials)


def finalist_of(trial: FrozenTrial) -> int | None:
    """The search-stage trial whose candidate a finalist run retrains."""
    number = trial.user_attrs.get(FINALIST_OF)
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def finalist_seed(trial: FrozenTrial | Trial, study: optuna.Study | None = None) -> int:
    """The seed a finalist run trains with (0 where none is recorded)."""
    return _int_attr(trial, FINALIST_SEED, 0, study)  # type: ignore[arg-type]


def finalist_attrs(source: FrozenTrial, seed: int) -> dict[str, Any]:
    """What a queued finalist run of search-stage trial ``source`` carries: its stage, where
    it came from, its seed, and the candidate it retrains."""
    return {STAGE: FINALIST, FINALIST_OF: source.number, FINALIST_SEED: seed,
            SPEC: source.user_attrs[SPEC], ARCH_KEY: key_of(source)}


def has_spec(trial: FrozenTrial) -> bool:
    """Whether the trial got as far as recording its candidate."""
    return SPEC in trial.user_attrs


def train_images_of(trial: FrozenTrial, default: int) -> int:
    """Images per epoch the trial trained on (trials before the proxy subset: ``default``)."""
    return _int_attr(trial, TRAIN_IMAGES, default)


def split_size(study: optuna.Study) -> int:
    """The training split's size the study records (0 where it records none)."""
    n = study.user_attrs.get(DATASET, {}).get("train", 0)
    return n if _is_int(n) else 0


def process_of(trial: FrozenTrial, study: optuna.Study | None = None) -> dict[str, Any] | None:
    """The process record of the process that ran the trial (None: not recorded), checked."""
    proc = trial.user_attrs.get(PROCESS)
    if proc is None:
        return None
    try:
        return check_process(proc)
    except ProcessRecordError as e:
        raise _bad(trial, study, PROCESS, f"is not a process record: {e}") from None


def mark_interrupted(storage: optuna.storages.BaseStorage, trial_id: int, reason: str) -> None:
    """Record on a trial another process ran that it was interrupted, and why."""
    storage.set_trial_user_attr(trial_id, OUTCOME, INTERRUPTED)
    storage.set_trial_user_attr(trial_id, REASON, reason)


def write_replay_record(study: optuna.Study, number: int, rec: dict[str, Any]) -> None:
    """Trial ``number``'s replay summary (:data:`REPLAY_KEYS`, artifact ids), on the study:
    a finished trial takes no new user attributes."""
    study.set_user_attr(_REPLAY.format(number), rec)


# -- replays -----------------------------------------------------------------------------------
REPLAY_KEYS = ("seeds", "test_acc_final", "mean", "std", "challenge_holds", "weights",
               "device", "date", "train_config", "precision")


REPLAY_ARTIFACTS = "artifacts"  # in a replay record: {file name: artifact id}


def replay_of(study: optuna.Study, number: int) -> dict[str, Any] | None:
    """Trial ``number``'s replay record, checked against its schema (what :func:`write_replay`
    writes, nas 0.1's included): None when there is none; a RecordError naming the study, the
    trial and the field for one that is not a replay record."""
    key = _REPLAY.format(number)
    rec = study.user_attrs.get(key)
    if rec is None:
        return None

    def bad(why: str) -> RecordError:
        return _bad(number, study, key, why)

    if not isinstance(rec, dict):
        raise bad(f"must be a mapping, got {type(rec).__name__}")
    seeds, accs, weights = rec.get("seeds"), rec.get("test_acc_final"), rec.get("weights")
    if not isinstance(seeds, list) or not 1 <= len(seeds) <= MAX_SEEDS or \
            not all(_is_int(s) for s in seeds):
        raise bad(f"seeds must be a list of 1 to {MAX_SEEDS} seed numbers, got "
                  f"{short_repr(seeds)}")
    if not isinstance(accs, list) or len(accs) != len(seeds) or \
            not all(_is_number(a) and 0 <= a <= 1 for a in accs):
        raise bad(f"test_acc_final must be a list of {len(seeds)} accuracies in [0, 1], got "
                  f"{short_repr(accs)}")
    for name in ("mean", "std"):
        if not _is_number(rec.get(name)) or not 0 <= rec[name] <= 1:
            raise bad(f"{name} must be a number in [0, 1], got {short_repr(rec.get(name))}")
    if not isinstance(weights, list) or len(weights) != len(seeds) or \
            not all(isinstance(w, str) and 0 < len(w) <= MAX_TEXT for w in weights):
        raise bad(f"weights must be a list of {len(seeds)} file names, got "
                  f"{short_repr(weights)}")
    for name in ("device", "date"):
        if not isinstance(rec.get(name), str) or len(rec[name]) > MAX_TEXT:
            raise bad(f"{name} must be text, got {short_repr(rec.get(name))}")
    if "challenge_holds" in rec and not isinstance(rec["challenge_holds"], bool):
        raise bad(f"challenge_holds must be true or false, got "
                  f"{short_repr(rec['challenge_holds'])}")
    ids = rec.get(REPLAY_ARTIFACTS)
    if ids is not None:
        if not isinstance(ids, dict) or len(ids) > MAX_SEEDS + len(REPLAY_FILE_NAMES) or \
                not all(isinstance(n, str) and valid_artifact_id(i) for n, i in ids.items()):
            raise bad(f"{REPLAY_ARTIFACTS} must map file names to artifact ids, got "
                      f"{short_repr(ids)}")
        if any(Path(w).name != w or w in (".", "..") for w in weights):
            raise bad(f"weights must be plain file names, got {short_repr(weights)}")
    return rec


# -- artifact names (the files: nas.study.uploads) ----------------------------------------------
ARCH_FILE, LAYERS_FILE = "arch.json", "layers.md"  # a trained trial's artifacts
REPLAY_FILE_NAMES = ("model.onnx", "report.md", "report.json")  # a replay's files besides weights


# -- the dashboard note ------------------------------------------------------------------------
def trial_note(plan: Plan, number: int, extra: str = "", heading: str | None = None) -> str:
    """The optuna-dashboard note: the architecture, as people in this field publish it."""
    return (f"## {heading or f'Trial {number}'}: {plan.params:,} parameters, receptive "
            f"field {plan.receptive_field}\n\n`{plan.spec.key()}`\n\n{plan.table()}\n{extra}")


def write_finalist_note(study: optuna.Study, table: str) -> None:
    """The study's dashboard note with the finalist table (mean ± SE over seeds, the pick and
    whether it is a tie) under the guide to its trial states. optuna-dashboard's "Best Trial"
    is the single best run, which can be a lucky seed: the pick is the best *mean*, here."""
    save_note(study, STUDY_NOTE + "\n## Finalists: the pick\n\n" + table + "\n")


def save_note(trial: Trial | optuna.Study, body: str) -> None:
    from optuna_dashboard import save_note as _save

    _save(trial, body)
