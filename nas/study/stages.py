"""The stages of a search: what each trains, how its trials are queued, what one ticket is.

A search runs its stages in order (:func:`stages_of`). Each stage says, in one place,

- its **schedule** (the training settings before the training space's own) and its **images**;
- how it **queues** its trials and how many *tickets* it has left to run (a resumed search
  finishes an interrupted stage and queues nothing twice);
- how a trial of it becomes a **candidate**: drawn by the sampler (with the budget, the
  space's rules and duplicates checked first) or read back from the queued parameters;
- whether the pruner may stop it, and whether it records its validation images one by one.

A trial carries its stage's name (``record.stage_of``); the objective looks the stage up by
that name (:func:`by_name`), so a queued trial trains under its own stage's rules in whatever
worker takes it. Adding a rung is adding a subclass here and listing it in :func:`stages_of`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from collections.abc import Callable
from typing import ClassVar, NoReturn

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from nas.arch import space as arch_space
from nas.arch.plan import Plan, plan
from nas.arch.spec import ArchSpec, SpecError
from nas.study import budget, pareto, record
from nas.study.config import SearchConfig, enqueue_start, input_of
from nas.study.selection import completed, earlier_same_arch, finalists
from nas.training.data import Split
from nas.training.space import sample_train
from nas.training.trainer import TrainConfig


@dataclass(frozen=True)
class Candidate:
    """What one trial trains: the network, its plan and its complete training settings (the
    stage's schedule, the training space's settings, the seed)."""

    spec: ArchSpec
    plan: Plan
    cfg: TrainConfig


class Stage(ABC):
    """One stage of a search, built from the search's settings."""

    name: ClassVar[str]  # what its trials record as their stage
    unit: ClassVar[str]  # what its progress counts
    prune: ClassVar[bool]  # whether the pruner may stop its trials before the last epoch
    per_image: ClassVar[bool]  # whether its trials record each validation image right/wrong
    # True: a ticket is one candidate that went to training, drawn by the sampler (rejected
    # and duplicate draws cost milliseconds and are free); False: one queued run.
    draws: ClassVar[bool]

    def __init__(self, cfg: SearchConfig) -> None:
        self.cfg = cfg

    @abstractmethod
    def schedule(self) -> TrainConfig:
        """The training settings of this stage, before the training space's."""

    @abstractmethod
    def images(self, split: Split) -> Split:
        """The training images of this stage, from the search's training split."""

    @abstractmethod
    def queue(self, study: optuna.Study) -> int:
        """Queue what this stage still has to run; returns its tickets left."""

    @abstractmethod
    def candidate(self, trial: Trial, max_params: int) -> Candidate | FrozenTrial:
        """The candidate trial ``trial`` trains, or the earlier trial that already trained it
        (its result is reused). A candidate the search may not train raises
        ``optuna.TrialPruned`` after recording why (:func:`reject`)."""

    @abstractmethod
    def best_so_far(self, study: optuna.Study) -> str:
        """What this stage's bar says it has found so far, in its own numbers ("" for
        nothing yet): never the other stage's, which are on another schedule."""

    def total(self, tickets: int) -> tuple[int, int]:
        """(total, done) for this stage's progress bar, given its tickets left."""
        return tickets, 0

    def within(self, study: optuna.Study, left_s: float, workers: int,
               run_seconds: Callable[[FrozenTrial], float]) -> tuple[Stage, Window | None]:
        """This stage cut to the ``left_s`` seconds a time budget leaves it, given what one
        of its runs costs (``run_seconds`` of the search-stage candidate it trains), and the
        window it runs in (None: no limit of its own). A stage that draws its candidates is
        bounded by its timeout instead (sized before the search began)."""
        return self, None


@dataclass(frozen=True)
class Window:
    """When a stage may start runs under a time budget: none later than ``last_start_s``
    before the end (its longest run would not finish); about ``seconds`` of work; ``how``
    says in one line what the budget changed ("" nothing)."""

    last_start_s: float
    seconds: float
    how: str


class SearchStage(Stage):
    """The cheap stage: the sampler draws candidates, each trained on the proxy schedule
    (``--proxy-epochs`` on ``--proxy-subset`` images); ``--trials`` of them train."""

    name, unit, prune, per_image, draws = record.SEARCH, "trials", True, False, True

    def schedule(self) -> TrainConfig:
        return self.cfg.proxy_schedule()

    def images(self, split: Split) -> Split:
        # The same images for every candidate (and every worker): seeded by the split's seed.
        # A subset at least as large as the split is the split (e.g. the default on small data).
        n = self.cfg.proxy_subset
        return split.subset(n, self.cfg.split_seed) if n and n < len(split) else split

    def queue(self, study: optuna.Study) -> int:
        """The starting members for a new study; and every candidate an earlier run was
        interrupted in (Ctrl-C, a dead process), queued again once: it never trained, and a
        queued starting member that is lost would change what the search sees."""
        left = self.cfg.trials - record.count_trained(study)
        if left <= 0:
            return 0
        enqueue_start(study, self.cfg, left)
        trials = study.get_trials(deepcopy=False)
        for i, t in enumerate(trials):
            if record.stage_of(t) != self.name or not record.was_interrupted(t):
                continue
            params = record.queued_params(t)
            # Once: not if a later trial has (or will have) the same parameters.
            if params and not any(record.queued_params(u) == params for u in trials[i + 1:]):
                study.enqueue_trial(params)
        return left

    def total(self, tickets: int) -> tuple[int, int]:
        return self.cfg.trials, self.cfg.trials - tickets

    def best_so_far(self, study: optuna.Study) -> str:
        done = completed(study)  # one seed each, on the proxy
        if not done:
            return ""
        return (f"best {record.accuracy_of(done[0]):.2%} (#{done[0].number}, "
                f"{record.param_count_of(done[0]):,} params)")

    def candidate(self, trial: Trial, max_params: int) -> Candidate | FrozenTrial:
        target = pareto.size_target(trial, self.cfg.pareto, max_params, self.cfg.space)
        spec = arch_space.sample(self.cfg.space, trial, target, input_of(self.cfg))
        try:
            p = plan(spec.validate())  # the one plan of this candidate
        except SpecError as e:
            trial.set_constraint("invalid_spec", 1.0)
            reject(trial, f"invalid: {e}")
        record.write_candidate(trial, spec, p)
        # Feasible iff <= 0: the sampler learns where the budget's edge lies.
        trial.set_constraint("params_over_budget", float(p.params - max_params))
        if p.params > max_params:
            reject(trial, f"{p.params:,} parameters > budget {max_params:,}")
        why = arch_space.rejection(self.cfg.space, p)
        if why:  # e.g. too small a receptive field: infeasible for the sampler too
            trial.set_constraint("space_rule", 1.0)
            reject(trial, why)
        cfg = sample_train(self.cfg.train_space, trial, self.schedule())
        twin = earlier_same_arch(trial.study, trial, record.candidate_key(trial) or "")
        return twin if twin is not None else Candidate(spec, p, cfg)


class FinalistStage(Stage):
    """The decision: the ``--finalists`` best search-stage candidates retrained with the full
    schedule on all training images, ``--finalist-seeds`` seeds each, never pruned, each
    validation image recorded (for the paired comparison of the pick). In a Pareto search
    "best" is among candidates of one size band, the bands taking turns
    (:func:`nas.study.pareto.promoted`)."""

    name, unit, prune, per_image, draws = record.FINALIST, "finalist runs", False, True, False

    def schedule(self) -> TrainConfig:
        return self.cfg.full_schedule

    def images(self, split: Split) -> Split:
        return split

    def best_so_far(self, study: optuna.Study) -> str:
        final = finalists(study)  # means over the seeds done
        if not final:
            return ""
        f = final[0]
        return (f"best finalist {f.mean:.2%} over {len(f.runs)} seed(s) (#{f.runs[0].number}, "
                f"{record.param_count_of(f.runs[0]):,} params)")

    def queue(self, study: optuna.Study) -> int:
        """Queue the runs still missing for the best search-stage candidates: a run already
        complete, queued or running is not queued again. Returns how many are pending
        (queued now or earlier)."""
        if self.cfg.finalists <= 0:
            return 0
        trials = study.get_trials(deepcopy=False)
        mine = [t for t in trials if record.stage_of(t) == self.name]
        have = {(record.candidate_key(t), record.finalist_seed(t, study)) for t in mine
                if t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)}
        pending = sum(t.state == TrialState.WAITING for t in mine)
        for source in self.sources(study):
            for seed in range(self.cfg.finalist_seeds):
                if (record.candidate_key(source), seed) not in have:
                    study.enqueue_trial(source.params,
                                        user_attrs=record.finalist_attrs(source, seed))
                    pending += 1
        return pending

    def sources(self, study: optuna.Study) -> list[FrozenTrial]:
        """The search-stage candidates this stage retrains, best first."""
        return pareto.promoted(study, self.cfg.finalists, self.cfg.pareto or (self.cfg.max_params,))

    def within(self, study: optuna.Study, left_s: float, workers: int,
               run_seconds: Callable[[FrozenTrial], float]) -> tuple[Stage, Window | None]:
        """Fewer seeds, then fewer finalists, until the runs still missing fit in ``left_s``
        (:func:`nas.study.budget.fit_finalists`), each run's cost from its own candidate."""
        sources = self.sources(study)
        done: dict[str | None, int] = {}
        for f in finalists(study):
            done[f.key] = len(f.runs)
        fit = budget.fit_finalists(self.cfg.finalists, self.cfg.finalist_seeds,
                                   [run_seconds(t) for t in sources],
                                   [done.get(record.candidate_key(t) or "", 0) for t in sources],
                                   left_s, workers)
        cfg = replace(self.cfg, finalists=fit.finalists, finalist_seeds=fit.seeds)
        return FinalistStage(cfg), Window(fit.longest_s, fit.seconds, fit.how)

    def candidate(self, trial: Trial, max_params: int) -> Candidate:
        # The queued parameters: the finalist's architecture (built to the size target it was
        # drawn with) and training settings, on the full schedule with the finalist's seed.
        target = pareto.size_target(trial, self.cfg.pareto, max_params, self.cfg.space)
        spec = arch_space.sample(self.cfg.space, trial, target, input_of(self.cfg))
        cfg = replace(sample_train(self.cfg.train_space, trial, self.schedule()),
                      seed=record.finalist_seed(trial))
        p = plan(spec.validate())
        record.write_candidate(trial, spec, p)
        return Candidate(spec, p, cfg)


STAGES: tuple[type[Stage], ...] = (SearchStage, FinalistStage)  # in the order a search runs


def stages_of(cfg: SearchConfig) -> list[Stage]:
    """The stages of a search with settings ``cfg``, in order."""
    return [kind(cfg) for kind in STAGES]


def by_name(cfg: SearchConfig) -> dict[str, Stage]:
    """The stages of a search by the name their trials record."""
    return {s.name: s for s in stages_of(cfg)}


def reject(trial: Trial, reason: str) -> NoReturn:
    """End ``trial`` untrained: recorded as rejected with ``reason`` (and a dashboard note),
    PRUNED for Optuna."""
    record.write_outcome(trial, record.REJECTED, reason)
    record.write_rejected_note(trial, reason)
    raise optuna.TrialPruned(f"rejected: {reason}")
