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
from nas.layers import Plan
from nas.processes import is_alive, this_process
from nas.spec import ArchSpec

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
TRAIN_IMAGES = "train_images"  # images per epoch (the search stage may train on a subset)
EPOCH_SECONDS = "epoch_seconds"
TRAIN_SECONDS = "train_seconds"
DEVICE = "device"
TRAIN_CONFIG = "train_config"
PRECISION = "precision"  # what the trial trained in: bf16, fp16 or fp32 (resolved, never auto)
PROCESS = "process"  # nas.processes.this_process() of the process that ran the trial
STAGE = "stage"  # SEARCH (the cheap stage) or FINALIST (full schedule, one seed)
FINALIST_OF = "finalist_of"  # a finalist's search-stage trial (whose architecture it retrains)
FINALIST_SEED = "finalist_seed"
RECORDED_FOR = "recorded_for"  # a trial that holds the result of trial N, failed meanwhile
SEARCH, FINALIST = "search", "finalist"

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


class RecordError(Exception):
    """A study or trial that does not hold what ``nas`` needs (a user error: one line)."""


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
        from nas.storage import redact

        raise RecordError(f"study {study.study_name!r} in {redact(url)} was not made by nas.search "
                          f"(it has no nas identity): pass another --study-name")


def write_last_command(study: optuna.Study, argv: list[str], settings: dict[str, Any]) -> None:
    """The command line and resolved settings of the last search, with every storage
    password replaced by ``***`` (:func:`nas.storage.redact`): a study is shared, a
    password is not."""
    from nas.storage import redact

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
    return int(study.user_attrs.get(MAX_PARAMS, default))


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
    if reason:
        trial.set_user_attr(REASON, reason)


def write_rejected_note(trial: Trial, reason: str) -> None:
    """The dashboard note of a rejected candidate, so that it does not read like a pruned one
    (both are PRUNED for Optuna)."""
    save_note(trial, f"## Trial {trial.number}: rejected, not trained\n\n"
                     f"rejected: {reason}, not trained\n")


def write_training_start(trial: Trial, device: str, train_config: dict[str, Any],
                         plan: Plan, train_images: int) -> None:
    trial.set_user_attr(DEVICE, device)
    trial.set_user_attr(TRAIN_CONFIG, train_config)
    trial.set_user_attr(TRAIN_IMAGES, train_images)
    save_note(trial, trial_note(plan, trial.number))


def write_precision(trial: Trial, precision: str) -> None:
    """The precision the trial's training resolved to on its device (its train_config holds
    what was asked for, e.g. auto)."""
    trial.set_user_attr(PRECISION, precision)


def write_curve(trial: Trial, val_acc: list[float]) -> None:
    trial.set_user_attr(VAL_ACC, val_acc)


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
def spec_of(trial: FrozenTrial) -> ArchSpec:
    """The spec a trial trained (no ``Trial`` or sampler needed)."""
    if SPEC not in trial.user_attrs:
        raise RecordError(f"trial {trial.number} holds no nas architecture (no {SPEC!r} "
                          f"attribute)")
    return ArchSpec.from_json(trial.user_attrs[SPEC])


def key_of(trial: FrozenTrial) -> str | None:
    """The architecture's canonical key (studies before 0.2 stored only the spec)."""
    if ARCH_KEY in trial.user_attrs:
        return str(trial.user_attrs[ARCH_KEY])
    return spec_of(trial).key() if SPEC in trial.user_attrs else None


def outcome_of(trial: FrozenTrial) -> str | None:
    return trial.user_attrs.get(OUTCOME)


def reason_of(trial: FrozenTrial) -> str:
    return str(trial.user_attrs.get(REASON, ""))


def params_of_trial(trial: FrozenTrial) -> int:
    return int(trial.user_attrs.get(PARAMS, 0))


def rf_of(trial: FrozenTrial) -> int:
    return int(trial.user_attrs.get(RF, 0))


def curve_of(trial: FrozenTrial) -> list[float]:
    return list(trial.user_attrs.get(VAL_ACC, []))


def train_config_of(trial: FrozenTrial) -> dict[str, Any]:
    return dict(trial.user_attrs.get(TRAIN_CONFIG, {}))


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


def finalists(study: optuna.Study) -> list[Finalist]:
    """The finalists with their complete runs, best mean validation accuracy first (more
    seeds first where means tie: a mean over more seeds is the surer one)."""
    groups: dict[str, list[FrozenTrial]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if stage_of(t) == FINALIST and t.value is not None:
            groups.setdefault(key_of(t) or "", []).append(t)
    out = [Finalist(k, tuple(sorted(ts, key=lambda t: t.user_attrs.get(FINALIST_SEED, 0))))
           for k, ts in groups.items()]
    return sorted(out, key=lambda f: (-f.mean, -len(f.runs)))


def enqueue_finalists(study: optuna.Study, k: int, seeds: int) -> int:
    """Queue the finalist runs still missing for the ``k`` best search-stage architectures,
    ``seeds`` seeds each: a run already complete, queued or running is not queued again,
    so a resumed search finishes an interrupted stage. Returns how many runs are pending
    (queued now or earlier)."""
    trials = study.get_trials(deepcopy=False)
    have = {(key_of(t), t.user_attrs.get(FINALIST_SEED)) for t in trials
            if stage_of(t) == FINALIST and t.state in (TrialState.COMPLETE, TrialState.RUNNING,
                                                       TrialState.WAITING)}
    pending = sum(stage_of(t) == FINALIST and t.state == TrialState.WAITING for t in trials)
    for source in completed(study)[:k]:
        for seed in range(seeds):
            if (key_of(source), seed) not in have:
                study.enqueue_trial(source.params, user_attrs={
                    STAGE: FINALIST, FINALIST_OF: source.number, FINALIST_SEED: seed,
                    SPEC: source.user_attrs[SPEC], ARCH_KEY: key_of(source)})
                pending += 1
    return pending


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
    architecture ``key``, if any. Lower numbers win, so of two workers that drew the same
    network at once exactly one trains it."""
    for t in study.get_trials(deepcopy=False):
        if t.number >= trial.number:
            break
        if stage_of(t) != SEARCH:
            continue
        if outcome_of(t) in (REJECTED, DUPLICATE, INTERRUPTED) or SPEC not in t.user_attrs:
            continue
        if t.state in (TrialState.FAIL, TrialState.WAITING) and outcome_of(t) != FAILED:
            continue  # died before it finished: nothing to reuse
        if key_of(t) == key:
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
    return study.user_attrs.get(_REPLAY.format(number))


def replay_checkpoint(study: optuna.Study, number: int, spec: ArchSpec,
                      store: ArtifactStore | None) -> dict[str, Any] | None:
    """Seed 0's checkpoint of trial ``number``'s replay (seed 0's: picking the best seed
    would be selection on the test set), read back from the artifact store by id; for a
    replay recorded before artifacts (nas 0.1), from the absolute path it recorded, if that
    file is still there. None when there is no replay, the store or file is missing, or the
    file is not a checkpoint of ``spec``."""
    replay = replay_of(study, number)
    if not replay or not replay.get("weights"):
        return None
    first = str(replay["weights"][0])
    ids = replay.get(REPLAY_ARTIFACTS)
    if not ids:
        return checkpoint_of(Path(first), spec)
    if store is None or Path(first).name not in ids:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.pt"
        try:
            download_artifact(artifact_store=store, file_path=str(path),
                              artifact_id=ids[Path(first).name])
        except ArtifactNotFound:
            return None
        return checkpoint_of(path, spec)


# -- artifacts ---------------------------------------------------------------------------------
# The files themselves live in an Optuna artifact store (nas.artifacts.open_store: by default a
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
    """The checkpoint at ``path`` if it is one :func:`save_checkpoint` wrote for ``spec``;
    None for a missing file or anything else."""
    import torch

    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a checkpoint at all
        return None
    if not isinstance(ckpt, dict) or ckpt.get("spec") != spec.to_json() or \
            not isinstance(ckpt.get("state_dict"), dict):
        return None
    return ckpt


def load_weights(path: Path) -> dict[str, Any]:
    """The state dict of a checkpoint written by :func:`save_checkpoint`, loaded without
    unpickling code (``weights_only``)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


# -- the dashboard note ------------------------------------------------------------------------
def trial_note(plan: Plan, number: int, extra: str = "") -> str:
    """The optuna-dashboard note: the architecture, as people in this field publish it."""
    return (f"## Trial {number}: {plan.params:,} parameters, receptive field "
            f"{plan.receptive_field}\n\n`{plan.spec.key()}`\n\n{plan.table()}\n{extra}")


def save_note(trial: Trial | optuna.Study, body: str) -> None:
    from optuna_dashboard import save_note as _save

    _save(trial, body)
