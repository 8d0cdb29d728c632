"""The study's record: every key ``nas`` stores on an Optuna study or trial, and its readers and
writers. Nothing else names a record key.

A study holds its *identity* (what must match for trials to be comparable), the dataset, the
budget, the schedule and the versions that made it; each trial holds the candidate it sampled
(spec, parameters, receptive field), how it ended (``outcome``: rejected, complete, pruned,
failed, with a ``reason``), its per-epoch validation curve and timings, and an optuna-dashboard
note with its layer table. A replay's result is recorded on the study (a finished trial takes
no new user attributes), under ``replay:trial-N``.

The format is stable: studies written by earlier releases read back unchanged
(``tests/data/study-v0.1.0.db`` holds one).
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.artifacts import download_artifact, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, Trial, TrialState

from nas import __version__
from nas.study.artifacts import MAX_ARTIFACT_BYTES, ArtifactError, valid_artifact_id
from nas.arch.plan import Plan, plan
from nas.study.processes import ProcessRecordError, check_process, is_alive, this_process
from nas.training.space import train_params
from nas.arch.spec import ArchSpec, SpecError, short_repr
from nas.training.trainer import ConfigError, TrainConfig
from nas.errors import RecordError

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

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
MAX_PARAMS = "max_params"
EPOCHS = "epochs"
VERSIONS = "versions"
LAST_COMMAND = "last_command"
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


def versions() -> dict[str, str]:
    """The versions of everything that shapes a result."""
    import optuna_dashboard
    import torch

    return {"nas": __version__, "python": platform.python_version(),
            "torch": str(torch.__version__), "optuna": str(optuna.__version__),
            "optuna_dashboard": str(optuna_dashboard.__version__)}


# -- writing a study ---------------------------------------------------------------------------
def write_study(study: optuna.Study, identity: dict[str, Any], dataset: dict[str, Any],
                max_params: int, epochs: int) -> None:
    """What a new study records once, at creation."""
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
    """What optuna-dashboard shows about the study as a whole: the objective's name
    (``val_acc``, not "Objective 0") and a note on how to read its trial states."""
    with warnings.catch_warnings():  # set_metric_names is flagged experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([VAL_ACC])
    save_note(study, STUDY_NOTE)


def identity_of(study: optuna.Study) -> dict[str, Any] | None:
    return study.user_attrs.get(IDENTITY)


def check_made_by_nas(study: optuna.Study, url: str) -> None:
    """Raise RecordError for a study that ``nas.search`` did not make (e.g. plain Optuna's)."""
    if identity_of(study) is None or study.direction != optuna.study.StudyDirection.MAXIMIZE:
        from nas.study.storage import redact

        raise RecordError(f"study {study.study_name!r} in {redact(url)} was not made by nas.search "
                          f"(it has no nas identity): pass another --study-name")


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
def record_for_lost_trial(trial: Trial, value: float, val_acc: list[float],
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
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.COMPLETE, value=value, params=old.params,
        distributions=old.distributions, user_attrs=attrs, system_attrs=old.system_attrs,
        intermediate_values={i + 1: a for i, a in enumerate(val_acc)}))
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
    """The architecture's canonical key (studies before 0.2 stored only the spec)."""
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
    settings = train_params(trial.params)
    if key is None or not settings:
        return key
    return key + "|" + json.dumps(settings, sort_keys=True, separators=(",", ":"))


def outcome_of(trial: FrozenTrial) -> str | None:
    return trial.user_attrs.get(OUTCOME)


def reason_of(trial: FrozenTrial) -> str:
    return str(trial.user_attrs.get(REASON, ""))


def params_of_trial(trial: FrozenTrial, study: optuna.Study | None = None) -> int:
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
    """bf16, fp16 or fp32; None for trials of studies before 0.2 (bf16 switches only)."""
    return trial.user_attrs.get(PRECISION)


def stage_of(trial: FrozenTrial | Trial) -> str:
    """``search`` (the cheap stage; every trial of studies before 0.2) or ``finalist``."""
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


@dataclass(frozen=True)
class SearchCost:
    """What a study's training cost, from its trials' records.

    ``full_trainings`` is the issue's unit: the images trained on, in either stage (an epoch
    is one pass over the trial's training images: the whole search split, or the search
    stage's ``--proxy-subset``; rejected and duplicate candidates train nothing), divided by
    one full-schedule training's (``full_epochs`` passes over the whole ``full_images``
    split), so 1.0 is one candidate trained for the full schedule.
    ``trial_seconds`` adds up the trials' own durations (start to end, so it counts each
    worker's time once); ``span_seconds`` runs from the first trial's start to the last one's
    end, pauses between resumed runs included."""

    epochs: dict[str, int]  # stage -> epochs trained
    images: dict[str, int]  # stage -> images trained on
    full_epochs: int
    full_images: int
    trial_seconds: float
    span_seconds: float

    @property
    def full_trainings(self) -> float:
        return sum(self.images.values()) / (self.full_epochs * self.full_images)

    def line(self) -> str:
        by_stage = ", ".join(f"{self.images[s] / (self.full_epochs * self.full_images):.1f} "
                             f"in the {s} stage ({n} epochs)" for s, n in self.epochs.items())
        return (f"compute: {self.full_trainings:.1f} full-schedule trainings ({by_stage}; one = "
                f"{self.full_epochs} epochs of {self.full_images:,} images); "
                f"trials took {_hms(self.trial_seconds)} (first start to last end "
                f"{_hms(self.span_seconds)})")


def search_cost(study: optuna.Study, full_epochs: int) -> SearchCost:
    """The compute a study has spent so far (:class:`SearchCost`); running trials count the
    epochs they have recorded. Trials of studies before 0.2 trained on the whole split."""
    full_images = int(study.user_attrs.get(DATASET, {}).get("train", 0))
    trials = study.get_trials(deepcopy=False)
    epochs, images = {SEARCH: 0, FINALIST: 0}, {SEARCH: 0, FINALIST: 0}
    for t in trials:
        n = len(curve_of(t))
        epochs[stage_of(t)] += n
        images[stage_of(t)] += n * int(t.user_attrs.get(TRAIN_IMAGES, full_images))
    ended = [t for t in trials if t.datetime_start is not None and
             t.datetime_complete is not None]
    busy = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in ended)
    span = (max(t.datetime_complete for t in ended) -
            min(t.datetime_start for t in ended)).total_seconds() if ended else 0.0
    return SearchCost(epochs, images, full_epochs, max(full_images, 1), busy, span)


def _hms(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


def completed(study: optuna.Study) -> list[FrozenTrial]:
    """Search-stage trials that completed training, best first (duplicates, which repeat an
    earlier trial's value, left out)."""
    done = [t for t in study.get_trials(deepcopy=False)
            if t.state == TrialState.COMPLETE and t.value is not None
            and outcome_of(t) != DUPLICATE and stage_of(t) == SEARCH]
    return sorted(done, key=lambda t: -t.value)  # type: ignore[operator]


@dataclass(frozen=True)
class Finalist:
    """One architecture retrained with the full schedule on several seeds."""

    key: str
    runs: tuple[FrozenTrial, ...]  # complete finalist trials, by seed

    @property
    def accs(self) -> list[float]:
        return [float(t.value) for t in self.runs]  # type: ignore[arg-type]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accs)

    @property
    def std(self) -> float:
        return statistics.stdev(self.accs) if len(self.runs) > 1 else 0.0

    @property
    def se(self) -> float:
        """Standard error of the mean over seeds (0 with one seed: unknown, not small)."""
        return self.std / math.sqrt(len(self.runs)) if len(self.runs) > 1 else 0.0

    def per_image(self) -> list[float] | None:
        """Each validation image's share of seeds that got it right; None unless every run
        recorded its images (:func:`write_val_correct`) on the same number of images."""
        rows = [val_correct_of(t) for t in self.runs]
        if not rows or any(r is None for r in rows) or len({len(r) for r in rows}) != 1:
            return None
        return [sum(col) / len(col) for col in zip(*rows)]  # type: ignore[arg-type]


@dataclass(frozen=True)
class Comparison:
    """The best finalist against the runner-up (:func:`compare`)."""

    difference: float  # best mean minus runner-up mean (validation accuracy)
    se_seeds: float  # standard error of that difference from the seed-to-seed spread
    se_paired: float | None  # ... from the per-image differences on the same images
    images: int  # how many validation images the paired figure uses (0: none)

    @property
    def se(self) -> float:
        """The larger of the two standard errors (the paired one where it exists)."""
        return max(self.se_seeds, self.se_paired or 0.0)

    @property
    def tie(self) -> bool:
        """The best is not ahead by more than its standard error (or nothing says so: one
        seed each and no per-image record)."""
        return self.se == 0.0 or self.difference <= self.se


def compare(best: Finalist, runner_up: Finalist) -> Comparison:
    """How far ``best`` is ahead of ``runner_up``: the difference of means, its standard
    error from the seeds (sqrt(se_a^2 + se_b^2)), and, where both recorded their images, the
    paired standard error over the same validation images (each image's share of seeds
    right, differenced: SE = stdev / sqrt(N))."""
    diff = best.mean - runner_up.mean
    se_seeds = math.hypot(best.se, runner_up.se)
    a, b = best.per_image(), runner_up.per_image()
    if a is None or b is None or len(a) != len(b) or len(a) < 2:
        return Comparison(diff, se_seeds, None, 0)
    d = [x - y for x, y in zip(a, b)]
    return Comparison(diff, se_seeds, statistics.stdev(d) / math.sqrt(len(d)), len(d))


def finalists(study: optuna.Study) -> list[Finalist]:
    """The finalists with their complete runs, best mean validation accuracy first (more
    seeds first where means tie: a mean over more seeds is the surer one)."""
    groups: dict[str, list[FrozenTrial]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if stage_of(t) == FINALIST and t.value is not None:
            groups.setdefault(candidate_key(t) or "", []).append(t)
    out = [Finalist(k, tuple(sorted(ts, key=lambda t: _int_attr(t, FINALIST_SEED, 0, study))))
           for k, ts in groups.items()]
    return sorted(out, key=lambda f: (-f.mean, -len(f.runs)))


def enqueue_finalists(study: optuna.Study, k: int, seeds: int) -> int:
    """Queue the finalist runs still missing for the ``k`` best search-stage architectures,
    ``seeds`` seeds each: a run already complete, queued or running is not queued again,
    so a resumed search finishes an interrupted stage. Returns how many runs are pending
    (queued now or earlier)."""
    trials = study.get_trials(deepcopy=False)
    have = {(candidate_key(t), t.user_attrs.get(FINALIST_SEED)) for t in trials
            if stage_of(t) == FINALIST and t.state in (TrialState.COMPLETE, TrialState.RUNNING,
                                                       TrialState.WAITING)}
    pending = sum(stage_of(t) == FINALIST and t.state == TrialState.WAITING for t in trials)
    for source in completed(study)[:k]:
        for seed in range(seeds):
            if (candidate_key(source), seed) not in have:
                study.enqueue_trial(source.params, user_attrs={
                    STAGE: FINALIST, FINALIST_OF: source.number, FINALIST_SEED: seed,
                    SPEC: source.user_attrs[SPEC], ARCH_KEY: key_of(source)})
                pending += 1
    return pending


def finalist_of(trial: FrozenTrial) -> int | None:
    """The search-stage trial whose candidate a finalist run retrains."""
    number = trial.user_attrs.get(FINALIST_OF)
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def finalist_seed(trial: Trial) -> int:
    return int(trial.user_attrs[FINALIST_SEED])


def select_trial(study: optuna.Study, number: int | None) -> FrozenTrial:
    """Trial ``number`` of ``study``, or its best: the first run of the best finalist when
    the study has finalists, else the search-stage trial with the best validation accuracy.
    It must have completed training. Raises :class:`RecordError` otherwise.
    """
    trials = study.get_trials(deepcopy=False)
    if number is None:
        best = finalists(study)
        if best:
            return best[0].runs[0]
        done = completed(study)
        if not done:
            raise RecordError(f"study {study.study_name!r} has no completed trial yet")
        return done[0]
    match = [t for t in trials if t.number == number]
    if not match:
        raise RecordError(f"study {study.study_name!r} has no trial {number} "
                          f"(trials 0-{len(trials) - 1})")
    t = match[0]
    if t.state != TrialState.COMPLETE or SPEC not in t.user_attrs or \
            outcome_of(t) == DUPLICATE:
        stale = dict(stale_trials(study)).get(t.number)
        why = stale or reason_of(t)
        raise RecordError(f"trial {number} did not complete ({t.state.name.lower()}"
                          f"{': ' + why if why else ''})")
    return t


def earlier_same_arch(study: optuna.Study, trial: Trial, key: str) -> FrozenTrial | None:
    """The first search-stage trial before ``trial`` that trained (or is training) the
    candidate ``key`` (:func:`candidate_key`: architecture and training settings), if any.
    Lower numbers win, so of two workers that drew the same candidate at once exactly one
    trains it."""
    for t in study.get_trials(deepcopy=False):
        if t.number >= trial.number:
            break
        if stage_of(t) != SEARCH:
            continue
        if outcome_of(t) in (REJECTED, DUPLICATE, INTERRUPTED) or SPEC not in t.user_attrs:
            continue
        if t.state in (TrialState.FAIL, TrialState.WAITING) and outcome_of(t) != FAILED:
            continue  # died before it finished: nothing to reuse
        if candidate_key(t) == key:
            return t
    return None


# -- processes that died -----------------------------------------------------------------------
def stale_trials(study: optuna.Study,
                 this_process_ended: bool = False) -> list[tuple[int, str]]:
    """(number, reason) of RUNNING trials whose process has died, as far as this machine can
    tell; with ``this_process_ended``, also those of this process (which is interrupted and
    runs no trial any more). Reads only."""
    out, me = [], this_process()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        proc = t.user_attrs.get(PROCESS)
        if proc is None:
            continue
        try:
            proc = check_process(proc)
        except ProcessRecordError as e:
            raise _bad(t, study, PROCESS, f"is not a process record: {e}") from None
        if this_process_ended and proc == me:
            out.append((t.number, "interrupted"))
        elif is_alive(proc) is False:
            out.append((t.number, f"its process (pid {proc.get('pid')} on "
                                  f"{proc.get('hostname', '?')}) died"))
    return out


def fail_stale_trials(study: optuna.Study, this_process_ended: bool = False) -> list[int]:
    """Mark RUNNING trials whose process died FAIL, outcome ``interrupted``, with the reason;
    then let Optuna's heartbeat fail those of other machines that went silent (RDB storages).
    Returns the numbers this machine marked."""
    storage, marked = study._storage, []
    ids = {t.number: t._trial_id for t in study.get_trials(deepcopy=False)}
    for number, reason in stale_trials(study, this_process_ended):
        try:
            storage.set_trial_user_attr(ids[number], OUTCOME, INTERRUPTED)
            storage.set_trial_user_attr(ids[number], REASON, reason)
            storage.set_trial_state_values(ids[number], state=TrialState.FAIL)
            marked.append(number)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # it finished, or another process marked it, meanwhile
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return marked


# -- replays -----------------------------------------------------------------------------------
REPLAY_KEYS = ("seeds", "test_acc_final", "mean", "std", "challenge_holds", "weights",
               "device", "date", "train_config", "precision")


REPLAY_ARTIFACTS = "artifacts"  # in a replay record: {file name: artifact id}


def write_replay(study: optuna.Study, trial: FrozenTrial, report: dict[str, Any],
                 note: str, store: ArtifactStore | None = None,
                 files: Sequence[Path] = ()) -> None:
    """A replay's summary on the study (for export) and in the trial's note (for people).

    With ``store``, ``files`` (each seed's weights, ``model.onnx``, the reports) are uploaded
    first. Optuna refuses artifacts on a finished trial (UpdateFinishedTrialError), and a
    replay comes after its trial finished, so they are *study* artifacts named
    ``trial<N>-<name>``; the record keeps their ids under :data:`REPLAY_ARTIFACTS` and names
    the weights by file name, never by a local path, and the note links them. Without a
    store (or from nas 0.1) ``weights`` holds the absolute paths the replay wrote.
    """
    rec = {k: report[k] for k in REPLAY_KEYS}
    if store is not None and files:
        ids = {}
        with tempfile.TemporaryDirectory() as tmp:
            for f in files:
                named = Path(tmp) / f"trial{trial.number}-{f.name}"
                named.write_bytes(f.read_bytes())  # the upload takes its name from the path
                ids[f.name] = upload_artifact(artifact_store=store, file_path=str(named),
                                              study_or_trial=study,
                                              mimetype=_MIMETYPES.get(f.suffix))
        rec[REPLAY_ARTIFACTS] = ids
        rec["weights"] = [Path(w).name for w in rec["weights"]]
        links = "\n".join(f"- [trial{trial.number}-{name}](/artifacts/{study._study_id}/{aid})"
                          for name, aid in ids.items())
        note += (f"\n### Replay files (study artifacts)\n\n{links}\n\nAlso under the "
                 f"study's Artifacts tab.\n")
    study.set_user_attr(_REPLAY.format(trial.number), rec)
    # A finished trial cannot take new user attributes, but its note lives on the study.
    save_note(optuna.trial.Trial(study, trial._trial_id), note)


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


REPLAY_FILE_NAMES = ("model.onnx", "report.md", "report.json")  # a replay's files besides weights


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
    :func:`replay_of` (RecordError). No checkpoint: ``why_not`` says why."""
    replay = replay_of(study, number)
    if replay is None:
        return ReplayWeights(None, "do not exist (no replay recorded)")
    first = replay["weights"][0]
    ids = replay.get(REPLAY_ARTIFACTS)
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


# -- artifacts ---------------------------------------------------------------------------------
# The files themselves live in an Optuna artifact store (nas.study.artifacts.open_store: by default a
# folder beside the database); Optuna links them to a trial or study by artifact id, so a
# database copied with its artifact folder keeps every link.
ARCH_FILE, LAYERS_FILE = "arch.json", "layers.md"  # a trained trial's artifacts
_MIMETYPES = {".pt": "application/octet-stream", ".onnx": "application/octet-stream",
              ".md": "text/markdown", ".json": "application/json"}


def write_arch_artifacts(trial: Trial, store: ArtifactStore | None, plan: Plan) -> None:
    """Attach the trial's architecture as artifacts: ``arch.json`` (the spec, what
    ``nas.replay --spec`` takes) and ``layers.md`` (the layer table). No store: nothing."""
    if store is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in ((ARCH_FILE, plan.spec.to_json(indent=2) + "\n"),
                           (LAYERS_FILE, trial_note(plan, trial.number))):
            path = Path(tmp) / name
            path.write_text(text)
            upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial,
                            mimetype=_MIMETYPES[path.suffix])


def artifact_names(trial: FrozenTrial, storage: optuna.storages.BaseStorage) -> list[str]:
    """The file names of a trial's artifacts."""
    return sorted(m.filename for m in optuna.artifacts.get_all_artifact_meta(
        trial, storage=storage))


# -- checkpoints -------------------------------------------------------------------------------
def save_checkpoint(path: Path, spec: ArchSpec, state_dict: dict[str, Any],
                    train_config: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Weights plus everything that rebuilds them (nanoGPT's ``model_args`` idea)."""
    import torch

    state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    torch.save({"state_dict": state, "spec": spec.to_json(), "train_config": train_config,
                "metrics": metrics, "versions": versions()}, path)


def checkpoint_of(path: Path, spec: ArchSpec) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it is one :func:`save_checkpoint` wrote for ``spec``:
    its spec, and a state dict with exactly the tensors (names, shapes, floating dtypes) that
    ``build(spec)`` has, so loading it cannot fail. None for a missing file or anything else
    (a checkpoint may come from a downloaded artifact folder)."""
    import torch

    from nas.arch.build import build

    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a checkpoint at all
        return None
    if not isinstance(ckpt, dict) or ckpt.get("spec") != spec.to_json() or \
            not isinstance(ckpt.get("state_dict"), dict):
        return None
    with torch.device("meta"):  # shapes only: nothing allocated
        want = {k: (tuple(v.shape), v.is_floating_point())
                for k, v in build(spec).state_dict().items()}
    have = ckpt["state_dict"]
    if set(have) != set(want) or not all(
            isinstance(v, torch.Tensor) and (tuple(v.shape), v.is_floating_point()) == want[k]
            for k, v in have.items()):
        return None
    return ckpt


def load_weights(path: Path) -> dict[str, Any]:
    """The state dict of a checkpoint written by :func:`save_checkpoint`, loaded without
    unpickling code (``weights_only``)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


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
