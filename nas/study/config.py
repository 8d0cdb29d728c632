"""A search's study: its settings, its sampler and pruner, creating or resuming it, and the
summary a search ends with.

A study is identified by the settings that make its trials comparable (budget, split, training
schedule); resuming it with other values is refused.
"""

from __future__ import annotations

import hashlib
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from nas.arch.space import SPACE_VERSIONS, Input, start_members
from nas.errors import StorageError, UserError
from nas.study import artifacts, cost, pareto, record, recovery, selection
from nas.study.importance import importance_line
from nas.study.storage import (GRACE_S, HEARTBEAT_S, JOURNAL_PREFIX, faults, file_of,
                               has_password, open_storage, redact, study_names)
from nas.training.data import DEFAULT_DATA_DIR
from nas.training.data import MNIST as Loaded
from nas.training.data import load_mnist
from nas.training.dataset import MNIST, NAMED, Dataset
from nas.training.sources import is_name, load_data
from nas.training.space import TRAIN_SPACES
from nas.training.trainer import TrainConfig

SAMPLERS = ("tpe", "random")
# Settings that studies of earlier releases did not record, and the value they trained with:
# such a study resumes only with that value (the pruned full schedule on the whole split).
UNRECORDED = {"proxy_epochs": None, "proxy_subset": None, "space": 1, "train_space": "fixed",
              "pareto": []}
# The search's design: the settings whose defaults changed with version 2 of the space (the
# space, the training sweep, the search stage's proxy). A command line that leaves one out
# resumes a study with the study's own value (study_design), so the command that made a study
# goes on resuming it after an upgrade; a new study takes SearchConfig's default.
DESIGN = ("space", "train_space", "proxy_epochs", "proxy_subset")
PRUNERS = ("hyperband", "sha", "median", "none")
START_TRIALS = 10  # TPE's random startup (n_startup_trials below)


@dataclass(frozen=True)
class SearchConfig:
    """The resolved settings of a search; saved on the study, checked on resume."""

    storage: str = "sqlite:///nas.db"
    study_name: str = ""
    trials: int = 100
    workers: int = 1
    max_params: int = 20_000
    sampler: str = "tpe"
    # The default design follows the fidelity study (results/fidelity-20000p-15e.md, README
    # "Two stages"): a cheap complete proxy that keeps the true top 5 in its top 5, no pruning
    # of a 4-epoch schedule, and the fine decision left to 5 finalists on the full schedule,
    # 3 seeds each.
    pruner: str = "none"
    device: str = "auto"
    # --dataset: a name (mnist, fashion-mnist) or the path of a folder of IDX files or a .npz
    # (nas.training.sources); data_dir is where a name is read from (None for a path).
    dataset: str = "mnist"
    data_dir: str | None = str(DEFAULT_DATA_DIR)
    val_size: int = 10_000  # validation images carved from the training files
    split_seed: int = 0
    seed: int = 0
    full_schedule: TrainConfig = field(default_factory=TrainConfig)  # what finalists train
    proxy_epochs: int | None = 4  # the search stage's own short schedule; None: the full one
    # At most this many training images in the search stage; None: the whole split. 20,000:
    # at 8,000 parameters 10,000 images (156 steps) left one architecture at 95.9 % or 84.5 %
    # by the seed (README "Results").
    proxy_subset: int | None = 20_000
    finalists: int = 5  # architectures retrained with the full schedule at the end
    finalist_seeds: int = 3  # seeds of each finalist: the measured seed std is ~0.2 points
    timeout: float | None = None  # seconds for the search stage (Optuna's timeout)
    # The trials' files; None: beside the database (nas.study.artifacts).
    artifact_dir: str | None = None
    # The search space's version (nas.arch.space): what a new study samples. Version 2 with
    # the training sweep and a 20,000-image proxy is the default since it was measured against
    # version 1 at 8,000 parameters (README "Results": 99.44 % against 99.00 %, 5 test seeds
    # each); a study made with version 1 keeps it (DESIGN below).
    space: int = 2
    # The training space (nas.training.space.sample_train): "fixed" trains every candidate with
    # ``train``; "sweep" searches learning rate, weight decay, label smoothing, batch size, EMA
    # and augmentation strength along with the architecture.
    train_space: str = "sweep"
    time_budget: float | None = None  # seconds for the whole run (nas.study.budget.fit_budget)
    # --pareto: a study of two objectives, accuracy up and parameters down, over every size up
    # to max_params; these are the budgets (ascending, the last max_params) whose size bands
    # share the finalists and that candidates are built to (nas.study.pareto): part of the
    # study's identity. Empty: one objective, one budget.
    pareto: tuple[int, ...] = ()
    # Optuna's heartbeat on RDB storages: seconds between a running trial's heartbeats, and
    # of silence after which another process marks the trial FAIL (short ones in tests only).
    heartbeat: tuple[int, int] = (HEARTBEAT_S, GRACE_S)
    # The design settings (DESIGN) this run took from the study it resumes because the command
    # line left them out, where they are not a new study's default (study_design): the search
    # says so once the study has opened. Not part of the identity.
    kept_design: tuple[str, ...] = ()

    def proxy_schedule(self) -> TrainConfig:
        """The search stage's training settings: the full ones on the proxy schedule."""
        full = self.full_schedule
        return replace(full, epochs=min(self.proxy_epochs or full.epochs, full.epochs))

    def identity(self) -> dict[str, Any]:
        """What must match for trials to be comparable: resuming with other values is refused.
        (How many finalists, on how many seeds, may change from run to run.)"""
        return {"max_params": self.max_params, "n_val": self.val_size,  # the stored key
                "split_seed": self.split_seed,
                "train": self.full_schedule.to_dict(), "proxy_epochs": self.proxy_epochs,
                "proxy_subset": self.proxy_subset, "space": self.space,
                "train_space": self.train_space, "pareto": list(self.pareto)}


def data_of(cfg: SearchConfig, loader: Callable[..., Loaded] | None = None) -> Loaded:
    """The search's data, loaded once per process (every worker loads its own). A named data
    set is read by ``loader`` (default this module's ``load_mnist``; the runner passes its
    own: the tests replace both to prove that no search reads the test split), a path by
    :func:`nas.training.sources.load_data`."""
    if is_name(cfg.dataset):
        dataset = NAMED[cfg.dataset.strip().lower()]
        return (loader or load_mnist)(cfg.data_dir if cfg.data_dir is not None
                                      else dataset.default_dir, True, dataset)
    return load_data(cfg.dataset, cfg.data_dir)


def dataset_of(cfg: SearchConfig) -> Dataset:
    """The search's descriptor: a named data set's own without reading a file (its files are
    checked against it when loaded), a path's from its contents."""
    if is_name(cfg.dataset):
        return NAMED[cfg.dataset.strip().lower()]
    return data_of(cfg).dataset


def input_of(cfg: SearchConfig) -> Input:
    """What every candidate's spec takes from the search's data: channels, size, classes."""
    d = dataset_of(cfg)
    return Input(d.channels, d.size[0], d.num_classes)


def _design_value(key: str, v: Any) -> bool:
    """Whether ``v``, read from a study (untrusted), is a value the design setting ``key``
    can take."""
    if key == "space":
        return type(v) is int and v in SPACE_VERSIONS
    if key == "train_space":
        return v in TRAIN_SPACES
    return v is None or (type(v) is int and 0 < v < 2**31)  # proxy_epochs, proxy_subset


def study_design(cfg: SearchConfig, unset: Sequence[str]) -> SearchConfig:
    """``cfg`` with each setting named in ``unset`` (of :data:`DESIGN`: those the command line
    left out) set to the value the study ``cfg.study_name`` in ``cfg.storage`` was made with
    (``cfg`` itself for a new study); ``kept_design`` names those that differ from a new
    study's default. A study of a release that did not record a
    setting trained with :data:`UNRECORDED`'s value. A recorded value of the wrong kind is
    not taken (resuming then stops at the identity check, one line). Writes nothing: a
    storage file that does not exist yet holds no study, and a storage that cannot be read
    here (a server database without Optuna's tables yet, a fault) is left to the search to
    set up or report."""
    file = file_of(cfg.storage)
    if not unset or (file is not None and not file.is_file()):
        return cfg
    try:
        storage = open_storage(cfg.storage, create=False, heartbeat=cfg.heartbeat)
        with faults(cfg.storage):
            if cfg.study_name not in study_names(storage):
                return cfg
            old = record.identity_of(optuna.load_study(study_name=cfg.study_name,
                                                       storage=storage))
    except StorageError:  # prepare_study meets it again, and says it in one line
        return cfg
    if not isinstance(old, dict):
        return cfg  # not nas's: prepare_study says so
    recorded = {**UNRECORDED, **old}
    taken = {k: recorded[k] for k in unset if k in DESIGN and _design_value(k, recorded[k])}
    # Worth a word only where the study's value is not what a new study would get.
    default = SearchConfig()
    other = tuple(k for k, v in taken.items() if v != getattr(default, k))
    return replace(cfg, **taken, kept_design=other)


def design_options(cfg: SearchConfig, keys: Sequence[str] = DESIGN) -> str:
    """The options that give ``cfg``'s design settings ``keys``, e.g. ``--space 1
    --train-space fixed --proxy-subset 0`` (0: a proxy switched off)."""
    return " ".join(f"--{k.replace('_', '-')} {getattr(cfg, k) or 0}" for k in keys)


def data_identity(data: Loaded) -> dict[str, Any]:
    """The data's part of a study's identity: the fingerprint studies have always recorded
    (name, training images, SHA-256) and the image shape and class count. A study made before
    the last two were recorded compares only what it has (:func:`_differences`)."""
    return {**data.fingerprint(), "shape": list(data.dataset.shape),
            "classes": data.dataset.num_classes}


def data_words(identity: dict[str, Any]) -> str:
    """A data identity in a few words: ``Fashion-MNIST (1x28x28, 10 classes, 60,000 training
    images, sha256 1f243a60...)``; what an older study did not record is left out."""
    parts = []
    if isinstance(identity.get("shape"), list):
        parts.append("x".join(map(str, identity["shape"])))
    if "classes" in identity:
        parts.append(f"{identity['classes']} classes")
    if isinstance(identity.get("train"), int):
        parts.append(f"{identity['train']:,} training images")
    if isinstance(identity.get("sha256"), str):
        parts.append(f"sha256 {identity['sha256'][:8]}...")
    return f"{identity.get('name', 'MNIST')} ({', '.join(parts)})"


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The search's sampler, seeded per trial (see :class:`TrialSeeded`)."""
    def make(trial_seed: int) -> optuna.samplers.BaseSampler:
        if name == "random":
            return optuna.samplers.RandomSampler(seed=trial_seed)
        with warnings.catch_warnings():  # multivariate/group are flagged experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # constant_liar: parallel workers don't all sample the same point.
            return optuna.samplers.TPESampler(seed=trial_seed, multivariate=True, group=True,
                                              constant_liar=True,
                                              n_startup_trials=START_TRIALS)

    return TrialSeeded(make, seed)


class TrialSeeded(optuna.samplers.BaseSampler):
    """A sampler made afresh for every trial, seeded from ``(seed, trial number)``.

    Trial numbers are handed out by the storage, once each, across processes and restarts. So
    a resumed search, or a second process on the same study, never replays the random draws
    of earlier trials (a sampler seeded once per process would propose the same first
    candidates on every start), while one uninterrupted run with a given ``--seed`` stays
    reproducible. TPE keeps no state between trials beyond its random generator: it reads the
    history from the study each time.
    """

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._make, self._seed = make, seed
        self._inner = make(seed)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        mixed = hashlib.sha256(f"{self._seed}/{trial.number}".encode()).digest()
        self._inner = self._make(int.from_bytes(mixed[:4], "little"))
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._inner.after_trial(study, trial, state, values)


def make_pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs,
                                              reduction_factor=3)
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    return optuna.pruners.NopPruner()


def default_study_name(max_params: int, epochs: int, dataset: Dataset | str = MNIST) -> str:
    """``<data set>-<max_params>p-<epochs>e``, the data set's name (a descriptor's, or a
    name as :func:`nas.training.sources.name_of` gives it) lowercased: for MNIST exactly
    ``mnist-20000p-20e``, the name studies have always had."""
    slug = dataset.slug if isinstance(dataset, Dataset) else dataset.lower()
    return f"{slug}-{max_params}p-{epochs}e"


STORAGE_VAR = "NAS_STORAGE"  # what printed commands say instead of a URL with a password


def shell_storage(storage: str) -> str:
    """``storage`` as a shell word for a printed command: quoted (shlex), or, for a URL with
    a password, ``"$NAS_STORAGE"`` (the password is never printed; :func:`storage_note` says
    what to set it to)."""
    return f'"${STORAGE_VAR}"' if has_password(storage) else shlex.quote(storage)


def storage_note(storage: str) -> str | None:
    """The line that goes with commands printed for a storage with a password; else None."""
    if not has_password(storage):
        return None
    return (f"(set {STORAGE_VAR} to {redact(storage)} with its password, which is not printed: "
            f"read -rs {STORAGE_VAR}; export {STORAGE_VAR})")


def dashboard_command(storage: str, artifact_dir: str | None = None) -> str:
    """The optuna-dashboard command that shows the study and its artifacts, shell-quoted; a
    password stays out of it (:func:`shell_storage`)."""
    files = f" --artifact-dir {shlex.quote(str(artifacts.artifact_dir(storage, artifact_dir)))}"
    if storage.startswith(JOURNAL_PREFIX):
        return f"optuna-dashboard {shlex.quote(storage[len(JOURNAL_PREFIX):])}{files}"
    return f"optuna-dashboard {shell_storage(storage)}{files}"


# -- the study ---------------------------------------------------------------------------------
def prepare_study(cfg: SearchConfig) -> optuna.Study:
    """Create the study, or check that an existing one was made by nas with the same settings
    and the same data. Stale trials of dead processes are marked FAIL first."""
    mnist = data_of(cfg)
    identity = {**cfg.identity(), "data": data_identity(mnist)}
    storage = open_storage(cfg.storage, heartbeat=cfg.heartbeat)
    with faults(cfg.storage):
        exists = cfg.study_name in study_names(storage)
        study = optuna.create_study(storage=storage, study_name=cfg.study_name,
                                    directions=record.DIRECTIONS[bool(cfg.pareto)],
                                    load_if_exists=True)
        if exists:
            old = _identity_of(study)
            record.check_made_by_nas(study, cfg.storage)  # and its format: one we can read
            diff = _differences({**UNRECORDED, **old}, identity)
            if any(d.startswith("data.") for d in diff):
                # Other data: name the study's and this run's, and how to get the study's.
                was = old.get("data", {}) if isinstance(old.get("data"), dict) else {}
                raise UserError(f"study {cfg.study_name!r} in {redact(cfg.storage)} was made on "
                                f"{data_words(was)}, not {data_words(identity['data'])} "
                                f"({', '.join(d for d in diff if d.startswith('data.'))} "
                                f"differ): pass its --dataset and --data-dir, or another "
                                f"--study-name")
            if diff:
                space = {**UNRECORDED, **old}["space"]
                hint = f" (it samples search space version {space}: pass --space {space})" \
                    if diff == ["space"] else ""
                raise UserError(f"study {cfg.study_name!r} in {redact(cfg.storage)} was made "
                                f"with other "
                                f"settings ({', '.join(diff)} differ): pass another "
                                f"--study-name{hint}")
            recovery.fail_stale_trials(study)
        else:
            record.write_study(study, identity, {
                "name": mnist.dataset.name, "source": mnist.source,
                "train": len(mnist.train) - cfg.val_size,
                "validation": cfg.val_size, "split_seed": cfg.split_seed,
                "test": "not used during search"}, cfg.max_params, cfg.full_schedule.epochs)
            record.write_data_set(study, mnist.dataset, cfg.dataset, mnist.source)
        record.write_last_command(study, sys.argv, asdict(cfg))
        if cfg.pareto:
            record.write_pareto_budgets(study, cfg.pareto)
    return study


def enqueue_start(study: optuna.Study, cfg: SearchConfig, remaining: int) -> int:
    """Queue the first candidates of a study that has trained nothing and queued nothing:
    ``START_TRIALS`` (at most ``remaining``) distinct random members that fit the budget
    (:func:`nas.arch.space.random_members`, seeded by ``--seed``). They are TPE's random
    startup, drawn uniformly over the *feasible* members: under a tight budget a sampler that
    has seen only rejections searches blind (at 8,000 parameters 9 in 10 uniform draws are over
    it, and TPE's first 300 draws found none). Returns how many were queued."""
    trials = study.get_trials(deepcopy=False)
    if any(record.was_trained(t) or t.state == TrialState.WAITING for t in trials):
        return 0
    try:
        members = start_members(cfg.space, min(START_TRIALS, remaining), cfg.max_params,
                                cfg.seed, input_of(cfg))
    except ValueError:  # a budget at the space's edge: the sampler finds its own way
        return 0
    for params in members:
        study.enqueue_trial(params, skip_if_exists=True)
    return len(members)


def _identity_of(study: optuna.Study, wait_s: float = 5.0) -> dict[str, Any] | None:
    """The study's identity; a study another process has just created gets a moment to
    write it before it is taken for a foreign one."""
    deadline = time.monotonic() + wait_s
    while True:
        identity = record.identity_of(study)
        if identity is not None or study.get_trials(deepcopy=False) or \
                time.monotonic() > deadline:
            return identity
        time.sleep(0.2)
        study = optuna.load_study(study_name=study.study_name, storage=study._storage)


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Keys whose values differ. Only keys both sides have count: a setting a study from an
    earlier release did not record cannot be compared (it trained with that release's
    defaults), anything it did record must match."""
    out = []
    for k in old.keys() & new.keys():
        if isinstance(old[k], dict) and isinstance(new[k], dict):
            out += [f"{k}.{d}" for d in _differences(old[k], new[k])]
        elif old[k] != new[k]:
            out.append(k)
    return sorted(out)


def finalist_markdown(study: optuna.Study, epochs: int) -> str:
    """The finalist table as Markdown, for the study's dashboard note."""
    final = selection.finalists(study)
    if not final:
        return "No finalist has finished yet."
    rows = [f"Validation accuracy after the full {epochs}-epoch schedule; the first row is the "
            f"pick.", "", "| trial | finalist of | mean | ± SE | std | seeds | params | "
            "candidate |", "|---:|---:|---:|---:|---:|---:|---:|---|"]
    for f in final:
        t = f.runs[0]
        key = f.key.replace("|", "\\|")  # a bare | in a cell would end it
        rows.append(f"| {t.number} | #{record.finalist_of(t)} | {f.mean:.2%} | {f.se:.2%} | "
                    f"{f.std:.2%} | {len(f.runs)} | {record.param_count_of(t):,} | "
                    f"`{key}` |")
    if len(final) > 1:
        rows += ["", pick_line(final[0], final[1])]
    return "\n".join(rows)


def pick_line(best: selection.Finalist, runner_up: selection.Finalist) -> str:
    """Whether the pick is ahead of the runner-up by more than its standard error, in words."""
    c = selection.compare(best, runner_up)
    paired = (f", paired on the same {c.images:,} validation images ± {c.se_paired:.2%}"
              if c.se_paired is not None else "")
    ahead = (f"{best.runs[0].number} vs {runner_up.runs[0].number}: "
             f"{c.difference:+.2%} (SE over seeds ± {c.se_seeds:.2%}{paired})")
    if c.tie:
        return (f"pick: a tie within the standard error, trial {ahead}; export and replay take "
                f"the first (higher mean, then more seeds, then the earlier trial)")
    return f"pick: trial {ahead}, ahead by more than its standard error"


def summary(study: optuna.Study, cfg: SearchConfig, top: int = 5) -> str:
    """The best trials, the finalists, and the exact commands to browse, export and replay."""
    trials = study.get_trials(deepcopy=False)
    done = selection.completed(study)
    n_trained = sum(record.was_trained(t) for t in trials)
    count = {o: record.count_outcome([t for t in trials if record.stage_of(t) == record.SEARCH],
                                     o) for o in record.OUTCOMES}
    lines = [f"study {study.study_name!r} in {redact(cfg.storage)}: {n_trained} trained "
             f"({len(done)} complete, {count[record.PRUNED]} pruned, {count[record.FAILED]} "
             f"failed), {count[record.REJECTED]} rejected before training, "
             f"{count[record.DUPLICATE]} duplicates, {count[record.INTERRUPTED]} interrupted",
             cost.search_cost(study, cfg.full_schedule.epochs).line()]
    data = record.dataset_of(study)
    if data != MNIST:  # MNIST's summary stays as it always was; other data is named
        lines.append(f"data: {data.title()}; classes {data.classes_text()}")
    if done:
        epochs = cfg.proxy_schedule().epochs
        lines.append(f"{'trial':>6} {'val acc':>8} {'params':>7} {'RF':>4}  architecture "
                     f"(search stage, {epochs} epochs)")
        for t in done[:top]:
            lines.append(f"{t.number:>6} {record.accuracy_of(t):>8.2%} "
                         f"{record.param_count_of(t):>7,} "
                         f"{record.rf_of(t):>4}  {record.spec_of(t).key()}")
        mattered = importance_line(study)
        if mattered:
            lines.append(mattered)
    final = selection.finalists(study)
    if final:
        # The first line counts candidates; a finalist run cut short is run again, and says so.
        cut = record.count_outcome([t for t in trials if record.stage_of(t) == record.FINALIST],
                                   record.INTERRUPTED)
        again = f"; {cut} run(s) interrupted and run again" if cut else ""
        lines += ["", f"finalists ({cfg.full_schedule.epochs} epochs, validation accuracy over "
                      f"seeds; the first is the pick{again}):",
                  f"{'trial':>6} {'of':>5} {'mean':>7} {'± SE':>6} {'std':>6} {'seeds':>5} "
                  f"{'params':>7}  architecture"]
        for f in final:
            t = f.runs[0]
            lines.append(f"{t.number:>6} {'#' + str(record.finalist_of(t)):>5}"
                         f" {f.mean:>7.2%} {f.se:>6.2%} {f.std:>6.2%} {len(f.runs):>5} "
                         f"{record.param_count_of(t):>7,}  {f.key}")
        if cfg.pareto:
            lines += ["", *pareto.front_lines(study, cfg.pareto, cfg.full_schedule.epochs)]
        elif len(final) > 1:
            lines.append(pick_line(final[0], final[1]))
    # Commands the user can paste: every word shell-quoted, a password never shown.
    s, n = shell_storage(cfg.storage), shlex.quote(study.study_name)
    a = f" --artifact-dir {shlex.quote(cfg.artifact_dir)}" if cfg.artifact_dir is not None else ""
    under = f" --max-params {cfg.pareto[0]}" if cfg.pareto else ""  # the smallest budget's
    lines += ["", f"browse:  {dashboard_command(cfg.storage, cfg.artifact_dir)}",
              f"export:  python -m nas.export --storage {s} --study-name {n}{a}{under} "
              f"--out export",
              f"replay:  python -m nas.replay --storage {s} --study-name {n}{a}{under} "
              f"--seeds 5"]
    note = storage_note(cfg.storage)
    return "\n".join(lines + ([note] if note else []))
