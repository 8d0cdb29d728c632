"""Ranking and the pick: the search stage's completed candidates, the finalists with their
seeds, how far the best is ahead (and whether that is a tie), and which trial a command means.

Policy only: every value is read through :mod:`nas.study.record`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from nas.errors import RecordError
from nas.study import record
from nas.study.recovery import stale_trials


def completed(study: optuna.Study) -> list[FrozenTrial]:
    """Search-stage trials that completed training, best first (duplicates, which repeat an
    earlier trial's value, left out)."""
    done = [t for t in study.get_trials(deepcopy=False)
            if t.state == TrialState.COMPLETE and record.accuracy_of(t) is not None
            and record.outcome_of(t) != record.DUPLICATE and record.stage_of(t) == record.SEARCH]
    return sorted(done, key=lambda t: -record.accuracy_of(t))  # type: ignore[operator]


@dataclass(frozen=True)
class Finalist:
    """One architecture retrained with the full schedule on several seeds."""

    key: str
    runs: tuple[FrozenTrial, ...]  # complete finalist trials, by seed

    @property
    def accs(self) -> list[float]:
        return [float(record.accuracy_of(t)) for t in self.runs]  # type: ignore[arg-type]

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
        recorded its images (:func:`nas.study.record.write_val_correct`) on the same number
        of images."""
        rows = [record.val_correct_of(t) for t in self.runs]
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
        if record.stage_of(t) == record.FINALIST and record.accuracy_of(t) is not None:
            groups.setdefault(record.candidate_key(t) or "", []).append(t)
    out = [Finalist(k, tuple(sorted(ts, key=lambda t: record.finalist_seed(t, study))))
           for k, ts in groups.items()]
    return sorted(out, key=lambda f: (-f.mean, -len(f.runs)))


def select_trial(study: optuna.Study, number: int | None,
                 max_params: int | None = None) -> FrozenTrial:
    """Trial ``number`` of ``study``, or its best: the first run of the best finalist when
    the study has finalists, else the search-stage trial with the best validation accuracy;
    with ``max_params``, the best with at most that many parameters (a Pareto study's answer
    for that budget). It must have completed training. Raises :class:`RecordError`
    otherwise.
    """
    trials = study.get_trials(deepcopy=False)
    if number is None:
        def fits(t: FrozenTrial) -> bool:
            return max_params is None or record.param_count_of(t) <= max_params

        best = finalists(study)
        if best:
            under = [f for f in best if fits(f.runs[0])]
            if not under:
                small = min(record.param_count_of(f.runs[0]) for f in best)
                raise RecordError(f"study {study.study_name!r} has no finalist with at most "
                                  f"{max_params:,} parameters (the smallest has {small:,})")
            return under[0].runs[0]
        done = [t for t in completed(study) if fits(t)]
        if not done:
            raise RecordError(f"study {study.study_name!r} has no completed trial yet" if
                              max_params is None else f"study {study.study_name!r} has no "
                              f"completed trial with at most {max_params:,} parameters")
        return done[0]
    match = [t for t in trials if t.number == number]
    if not match:
        raise RecordError(f"study {study.study_name!r} has no trial {number} "
                          f"(trials 0-{len(trials) - 1})")
    t = match[0]
    if t.state != TrialState.COMPLETE or not record.has_spec(t) or \
            record.outcome_of(t) == record.DUPLICATE:
        stale = dict(stale_trials(study)).get(t.number)
        why = stale or record.reason_of(t)
        raise RecordError(f"trial {number} did not complete ({t.state.name.lower()}"
                          f"{': ' + why if why else ''})")
    return t


def earlier_same_arch(study: optuna.Study, trial: Trial, key: str) -> FrozenTrial | None:
    """The first search-stage trial before ``trial`` that trained (or is training) the
    candidate ``key`` (:func:`nas.study.record.candidate_key`: architecture and training
    settings), if any. Lower numbers win, so of two workers that drew the same candidate at
    once exactly one trains it."""
    for t in study.get_trials(deepcopy=False):
        if t.number >= trial.number:
            break
        if record.stage_of(t) != record.SEARCH:
            continue
        if record.outcome_of(t) in (record.REJECTED, record.DUPLICATE, record.INTERRUPTED) or \
                not record.has_spec(t):
            continue
        if t.state in (TrialState.FAIL, TrialState.WAITING) and \
                record.outcome_of(t) != record.FAILED:
            continue  # died before it finished: nothing to reuse
        if record.candidate_key(t) == key:
            return t
    return None
