"""A search's plan before the work, and a search sized to a time budget.

:func:`plan_stages` says what each stage will train (runs, epochs, images); a :class:`Rate`
measured on this device (:func:`measure_rate`: a few seconds of the real trainer) turns that
into an estimate of time. :func:`fit_budget` shrinks a search to fit ``--time-budget``: it
keeps the design (the proxy, the full schedule) and changes only how much of it runs, first
the finalists' seeds and number, then the number of candidates.

Estimates come from one mid-size network (the 16k reference); a candidate can take twice as
long or more (a 14k network with 28 channels at full resolution took 2.4 times the
reference's estimate), so the plan states its rate and calls itself an estimate. Once the
search stage has run, the finalists' own search-stage epochs say what each of their runs
costs, and :func:`fit_finalists` sizes the finalist stage again from those
(:func:`own_run_seconds`); the runner enforces the budget with deadlines rather than
trusting any estimate.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, replace
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from nas.study.config import SearchConfig

OVERHEAD_S = 1.0  # per trial: building, the storage's bookkeeping, artifacts (measured ~0.5 s)
FINALIST_SHARE = 0.6  # at most this much of a time budget goes to the finalists
MARGIN = 0.9  # plan for this share of the budget: estimates are rough


@dataclass(frozen=True)
class Rate:
    """What this device does per second (training and evaluating images)."""

    train: float
    eval: float
    device: str = ""


@dataclass(frozen=True)
class StagePlan:
    """What one stage will train: ``runs`` trainings of ``epochs`` over ``train_images``,
    each epoch evaluated on ``eval_images``."""

    name: str
    runs: int
    epochs: int
    train_images: int
    eval_images: int

    @property
    def images(self) -> int:
        return self.runs * self.epochs * self.train_images

    def run_seconds(self, rate: Rate) -> float:
        per_epoch = self.train_images / rate.train + self.eval_images / rate.eval
        return self.epochs * per_epoch + OVERHEAD_S

    def seconds(self, rate: Rate) -> float:
        return self.runs * self.run_seconds(rate)


def plan_stages(cfg: SearchConfig, candidates: int, finalist_runs: int,
                n_train: int) -> list[StagePlan]:
    """The stages a search with ``cfg`` will run: ``candidates`` search-stage trainings and
    ``finalist_runs`` finalist runs, on a training split of ``n_train`` images."""
    proxy = cfg.proxy_schedule()
    search_images = min(cfg.proxy_subset or n_train, n_train)
    return [StagePlan("search", candidates, proxy.epochs, search_images, cfg.val_size),
            StagePlan("finalists", finalist_runs, cfg.full_schedule.epochs, n_train,
                      cfg.val_size)]


def describe(stages: list[StagePlan], rate: Rate) -> list[str]:
    """The plan in words, one line per stage and a total."""
    lines = []
    for s in stages:
        if s.runs:
            lines.append(f"  {s.name}: {s.runs} training(s) of {s.epochs} epoch(s) on "
                         f"{s.train_images:,} images ({s.images:,} images), about "
                         f"{hms(s.run_seconds(rate))} each, {hms(s.seconds(rate))} in all")
    total = sum(s.seconds(rate) for s in stages)
    lines.append(f"  estimated {hms(total)} on {rate.device or 'this device'} (measured "
                 f"{rate.train:,.0f} training images/s on the 16k reference network; a "
                 f"candidate's own size changes its time)")
    return lines


def fit_budget(cfg: SearchConfig, budget_s: float, rate: Rate,
               n_train: int) -> tuple[SearchConfig, str]:
    """``cfg`` shrunk to finish within ``budget_s`` seconds at ``rate``, and a sentence
    saying how. The finalists get at most :data:`FINALIST_SHARE` of the (margined) budget:
    seeds go first (down to 2, then 1), then finalists (down to 1, then none); the search
    stage gets the rest, as candidates, and a timeout so it ends in time whatever the
    estimate. Raises ValueError when not even two candidates fit."""
    usable = budget_s * MARGIN
    full = plan_stages(cfg, 1, 1, n_train)
    t_candidate, t_final = full[0].run_seconds(rate), full[1].run_seconds(rate)
    finalists, seeds = cfg.finalists, cfg.finalist_seeds
    while finalists and finalists * seeds * t_final > FINALIST_SHARE * usable:
        finalists, seeds = _smaller(finalists, seeds)
    search_s = usable - finalists * seeds * t_final
    trials = min(cfg.trials, math.floor(search_s / t_candidate))
    if trials < 2:
        raise ValueError(f"--time-budget {hms(budget_s)} fits fewer than 2 candidates here "
                         f"(about {hms(t_candidate)} each): give it more time, or use --quick")
    if finalists > trials:
        finalists = trials
    fitted = replace(cfg, trials=trials, finalists=finalists, finalist_seeds=seeds,
                     timeout=search_s if cfg.timeout is None else min(cfg.timeout, search_s))
    how = (f"--time-budget {hms(budget_s)}: {trials} candidates (about {hms(t_candidate)} each, "
           f"the search stage ends after {hms(fitted.timeout or search_s)} at the latest)"
           + (f", then {finalists} finalist(s) x {seeds} seed(s) (about {hms(t_final)} each)"
              if finalists else ", no finalist stage (it would not fit): the pick is the best "
                                "search-stage candidate"))
    return fitted, how


def _smaller(finalists: int, seeds: int) -> tuple[int, int]:
    """The next smaller finalist stage: seeds go first (down to 2, then 1), then finalists
    (down to 1, then none)."""
    if seeds > 2 or (seeds == 2 and finalists <= 2):
        return finalists, seeds - 1
    return (finalists - 1, seeds) if finalists > 1 else (0, seeds)


def own_run_seconds(epoch_seconds: Sequence[float], search: StagePlan, final: StagePlan,
                    rate: Rate) -> float:
    """One full-schedule run of a candidate, from its own search-stage ``epoch_seconds``: the
    reference network's estimate of the run (``final`` at ``rate``) times how much longer (or
    shorter) the candidate's epochs took than the reference's estimate of a ``search``
    epoch. Without recorded epochs: the reference's estimate."""
    if not epoch_seconds:
        return final.run_seconds(rate)
    reference_epoch = (search.run_seconds(rate) - OVERHEAD_S) / search.epochs
    factor = sum(epoch_seconds) / len(epoch_seconds) / reference_epoch
    return factor * (final.run_seconds(rate) - OVERHEAD_S) + OVERHEAD_S


@dataclass(frozen=True)
class FinalistFit:
    """The finalist stage sized to the time left: ``finalists`` (the best first) on
    ``seeds`` seeds, about ``seconds`` of wall time, no run started later than
    ``longest_s`` before the end; ``how`` says so in one line (empty: nothing changed)."""

    finalists: int
    seeds: int
    seconds: float
    longest_s: float
    how: str


def finalist_seconds(run_s: Sequence[float], seeds_done: Sequence[int], seeds: int,
                     workers: int) -> tuple[float, float]:
    """The wall time of the finalist runs still missing (``seeds`` each, ``seeds_done``
    complete; ``run_s`` seconds a run) on ``workers`` processes: their total shared out, but
    never less than the longest of them; and that longest run."""
    runs = [(s, seeds - d) for s, d in zip(run_s, seeds_done) if d < seeds]
    longest = max((s for s, _ in runs), default=0.0)
    return max(sum(s * m for s, m in runs) / max(workers, 1), longest), longest


def fit_finalists(finalists: int, seeds: int, run_s: Sequence[float],
                  seeds_done: Sequence[int], left_s: float, workers: int) -> FinalistFit:
    """The first ``finalists`` of the ranked candidates (``run_s``: each one's estimated
    seconds a run, :func:`own_run_seconds`; ``seeds_done``: its runs already complete) on
    ``seeds`` seeds, shrunk in :func:`fit_budget`'s order until the runs still missing fit in
    :data:`MARGIN` of ``left_s`` seconds on ``workers`` processes (their total shared out,
    and the longest whole)."""
    usable = left_s * MARGIN
    finalists = min(finalists, len(run_s))
    asked = (finalists, seeds)

    def cost(n: int, k: int) -> tuple[float, float]:
        return finalist_seconds(run_s[:n], seeds_done[:n], k, workers)

    while finalists and cost(finalists, seeds)[0] > usable:
        finalists, seeds = _smaller(finalists, seeds)
    seconds, longest = cost(finalists, seeds) if finalists else (0.0, 0.0)
    if not finalists and asked[0]:
        how = (f"--time-budget: no finalist run fits in the {hms(left_s)} left (the best "
               f"candidate's run takes about {hms(run_s[0])}, from its own search-stage "
               f"epochs): the pick is the best search-stage candidate")
    elif (finalists, seeds) != asked:
        how = (f"--time-budget: {finalists} finalist(s) x {seeds} seed(s) fit in the "
               f"{hms(left_s)} left (runs of about {hms(longest)} at most, from the "
               f"candidates' own search-stage epochs)")
    else:
        how = ""
    return FinalistFit(finalists, seeds, seconds, longest, how)


def measure_rate(device: torch.device, cfg: SearchConfig, images: int = 2048) -> Rate:
    """Training and evaluation images per second of the 16k reference network on
    ``device`` with the search's training settings: the real trainer on ``images`` random
    images (after a warm-up run; the median of three epochs), and its evaluation on as many. Takes a few seconds on a
    CPU; reads no data set."""
    import torch

    from nas.arch.zoo import bn_dropout_16k
    from nas.training.data import Split
    from nas.training.trainer import device_name, evaluate, train

    device = torch.device(device)
    g = torch.Generator().manual_seed(0)
    n = max(images, 2 * cfg.full_schedule.batch_size)
    split = Split(torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g),
                  torch.randint(0, 10, (n,), generator=g))
    tiny = Split(split.x[:1], split.y[:1])  # evaluation out of the way of the training time
    train(bn_dropout_16k(), tiny, tiny, replace(cfg.full_schedule, epochs=1, compile=False),
          device)  # warm-up: allocations, kernels
    # The median of three epochs: five back-to-back measurements on the 2-core CPU read
    # 1,541-1,984 images/s from one epoch, 1,794-1,984 as the median of three.
    tcfg = replace(cfg.full_schedule, epochs=3, compile=False)
    r = train(bn_dropout_16k(), split, tiny, tcfg, device)
    assert r.model is not None
    x = split.x.unsqueeze(1).to(device)
    y = split.y.to(device)
    t0 = time.perf_counter()
    evaluate(r.model, x, y, tcfg, r.precision)
    eval_s = time.perf_counter() - t0
    return Rate(train=n / statistics.median(r.epoch_seconds), eval=n / max(eval_s, 1e-9),
                device=device_name(device))


def hms(seconds: float) -> str:
    """``1 h 05 min``, ``3 min 07 s`` or ``42 s``."""
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    if h:
        return f"{h} h {m:02d} min"
    return f"{m} min {s:02d} s" if m else f"{s} s"


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``20m``, ``1.5h`` -> seconds; ValueError for anything else."""
    t = text.strip().lower()
    units = {"s": 1, "m": 60, "min": 60, "h": 3600}
    for suffix in sorted(units, key=len, reverse=True):
        if t.endswith(suffix):
            value = float(t[:-len(suffix)])
            break
    else:
        value, suffix = float(t), "s"
    seconds = value * units[suffix]
    if not 0 < seconds < math.inf:
        raise ValueError(f"not a positive duration: {text!r}")
    return seconds
