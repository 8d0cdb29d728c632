"""One search for every budget: size bands, promotion among candidates of one size, the best
network under a budget, and the front in words and as a picture.

A Pareto study (``nas.search --pareto``) has two objectives, validation accuracy (maximised)
and parameters (minimised), and samples every size up to ``--max-params``. Optuna cannot prune
a multi-objective study, and a candidate should not be discarded for losing to a network four
times its size anyway. A candidate's size is exact before training, so promotion compares
candidates of about one size: the budgets (``--pareto 5000,8000,10000``, and ``--max-params``)
cut the sizes into bands, and the finalist stage takes the best search-stage candidates of
each band in turn, the largest band first (:func:`promoted`). A single-budget search is the
one-band case of the same rule: its top ``--finalists``.

The answer for a budget N is the best finalist with at most N parameters (:func:`best_under`):
a network under 8,000 parameters also answers "under 10,000", so each budget's answer comes from
its own band and every band below it.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, Trial

from nas.arch.space import fills_budget
from nas.study import record
from nas.study.selection import Finalist, completed, compare, finalists


def budgets_of(budgets: Sequence[int], max_params: int) -> tuple[int, ...]:
    """The budgets that bound the size bands: ``budgets`` below ``max_params``, ascending and
    distinct, then ``max_params`` itself. Raises ValueError for a budget that is not a
    positive whole number or is above ``max_params``."""
    for b in budgets:
        if not isinstance(b, int) or isinstance(b, bool) or b <= 0:
            raise ValueError(f"a --pareto budget must be a positive number of parameters, "
                             f"got {b!r}")
        if b > max_params:
            raise ValueError(f"--pareto budget {b:,} is above --max-params {max_params:,}")
    return tuple(sorted({*budgets, max_params}))


def halvings(max_params: int, smallest: int) -> tuple[int, ...]:
    """The budgets of a bare ``--pareto``: ``max_params`` halved while the half still holds
    the space's smallest network (20,000: 2,500, 5,000, 10,000, 20,000 where the smallest
    network has under 2,500 parameters)."""
    out = [max_params]
    while out[-1] // 2 >= smallest and len(out) < 6:
        out.append(out[-1] // 2)
    return tuple(sorted(out))


TARGET = "pareto_budget"  # the parameter a Pareto study's candidates draw their size target as


def size_target(trial: Trial, budgets: Sequence[int], max_params: int, space: int) -> int:
    """The budget a candidate of a Pareto study is built to: one of ``budgets``, drawn (and
    then learned) by the sampler as the parameter :data:`TARGET`, for a space that fills the
    budget it is given (version 2 would otherwise scale every candidate to ``max_params``,
    all at one end of the front); ``max_params`` for a space that draws absolute widths, or
    without budgets (a single-objective search)."""
    if not budgets or not fills_budget(space):
        return max_params
    return int(trial.suggest_categorical(TARGET, list(budgets)))


def band_of(params: int, budgets: Sequence[int]) -> int:
    """The budget whose band holds a network of ``params`` parameters: the smallest budget it
    fits (bands are (previous budget, budget]); -1 for a network over every budget."""
    for b in budgets:
        if params <= b:
            return b
    return -1


def promoted(study: optuna.Study, n: int, budgets: Sequence[int]) -> list[FrozenTrial]:
    """The ``n`` search-stage candidates the finalist stage retrains: each band's best (by
    search-stage validation accuracy) in turn, the largest band first, then each band's
    second best, and so on; a band with no candidate left is skipped. With one budget: the
    ``n`` best. Candidates compete only with candidates of their own band."""
    by_band: dict[int, list[FrozenTrial]] = {b: [] for b in budgets}
    for t in completed(study):  # best first
        b = band_of(record.param_count_of(t), budgets)
        if b in by_band:
            by_band[b].append(t)
    order = sorted(by_band, reverse=True)
    out: list[FrozenTrial] = []
    rank = 0
    while len(out) < n and any(rank < len(by_band[b]) for b in order):
        for b in order:
            if rank < len(by_band[b]) and len(out) < n:
                out.append(by_band[b][rank])
        rank += 1
    return out


def best_under(final: Sequence[Finalist], max_params: int) -> list[Finalist]:
    """The finalists with at most ``max_params`` parameters, best mean first (the order of
    :func:`nas.study.selection.finalists`): the first is the answer for that budget."""
    return [f for f in final if record.param_count_of(f.runs[0]) <= max_params]


def front(final: Sequence[Finalist]) -> list[Finalist]:
    """The finalists no other finalist beats on both counts (a higher mean with at most as many
    parameters, or as high a mean with fewer), smallest first."""
    def size(f: Finalist) -> int:
        return record.param_count_of(f.runs[0])

    out = [f for f in final
           if not any((g.mean > f.mean and size(g) <= size(f)) or
                      (g.mean >= f.mean and size(g) < size(f)) for g in final)]
    return sorted(out, key=size)


def front_lines(study: optuna.Study, budgets: Sequence[int], epochs: int) -> list[str]:
    """The summary's answer per budget: the best finalist under it, its validation mean ± SE
    over seeds, and whether it is ahead of the next best under the same budget."""
    final = finalists(study)
    lines = [f"best under each budget ({epochs} epochs, validation accuracy over finalist "
             f"seeds):",
             f"{'budget':>7} {'trial':>6} {'params':>7} {'mean':>7} {'± SE':>6} {'seeds':>5}"
             f"  architecture"]
    for b in budgets:
        under = best_under(final, b)
        if not under:
            lines.append(f"{b:>7,} {'-':>6}  no finalist with at most {b:,} parameters")
            continue
        f, t = under[0], under[0].runs[0]
        lines.append(f"{b:>7,} {t.number:>6} {record.param_count_of(t):>7,} {f.mean:>7.2%} "
                     f"{f.se:>6.2%} {len(f.runs):>5}  {f.key}")
        if len(under) > 1:
            c = compare(under[0], under[1])
            verdict = "a tie within the standard error" if c.tie else "ahead by more than its SE"
            lines.append(f"{'':>15}vs trial {under[1].runs[0].number}: {c.difference:+.2%} "
                         f"(± {c.se:.2%}): {verdict}")
    return lines


# -- the picture -------------------------------------------------------------------------------
W, H, PAD = 640, 400, 56  # the SVG's size and its margin for the axes' labels


def front_svg(study: optuna.Study, budgets: Sequence[int],
              references: Sequence[tuple[str, int, float]] = ()) -> str:
    """The front as a self-contained SVG: every finalist (mean over seeds, ± SE bars), the
    best under each budget joined by a line, the budgets as dashed verticals, ``references``
    (name, parameters, accuracy: e.g. hand designs measured the same way) as labelled
    diamonds, and the search-stage candidates (grey, their proxy accuracy). The accuracy axis
    is fitted to the finalists and references (the proxy's values are lower, most of them far
    lower): candidates above it widen it, those below it are not drawn and a line under the
    plot says how many."""
    cands = [(record.param_count_of(t), record.accuracy_of(t) or 0.0) for t in completed(study)]
    final = finalists(study)
    fins = [(record.param_count_of(f.runs[0]), f.mean, f.se) for f in final]
    best = [(record.param_count_of(u[0].runs[0]), u[0].mean)
            for u in (best_under(final, b) for b in budgets) if u]
    ys = [a for _, a, *_ in fins] + [a for _, _, a in references] or [a for _, a in cands]
    if not ys:
        ys = [0.0, 1.0]
    lo = max(0.0, min(ys) - 0.004)
    hi = min(1.0, max([*ys, *(a for _, a in cands)]) + 0.002)
    if hi - lo < 0.004:  # one point, or all alike: a range of 0.4 points around them
        mid = (hi + lo) / 2
        lo, hi = mid - 0.002, mid + 0.002
    x_max = max([*budgets, *(p for p, _ in cands)], default=1) * 1.05

    def x(p: float) -> float:
        return PAD + (W - 2 * PAD) * p / x_max

    def y(a: float) -> float:
        a = min(max(a, lo), hi)
        return H - PAD - (H - 2 * PAD) * (a - lo) / (hi - lo)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="13">'
           f'{html.escape(study.study_name)}: validation accuracy against parameters</text>',
           f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="black"/>',
           f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="black"/>']
    for i in range(5):  # axis ticks
        a = lo + (hi - lo) * i / 4
        out.append(f'<text x="{PAD - 4}" y="{y(a) + 4:.1f}" text-anchor="end">{a:.2%}</text>')
    for b in budgets:
        out.append(f'<line x1="{x(b):.1f}" y1="{PAD}" x2="{x(b):.1f}" y2="{H - PAD}" '
                   f'stroke="#999" stroke-dasharray="4 3"/>')
        out.append(f'<text x="{x(b):.1f}" y="{H - PAD + 14}" text-anchor="middle">{b:,}</text>')
    out.append(f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle">parameters '
               f'(dashed: the budgets)</text>')
    shown = [(p, a) for p, a in cands if a >= lo]
    for p, a in shown:
        out.append(f'<circle cx="{x(p):.1f}" cy="{y(a):.1f}" r="2" fill="#bbb"/>')
    if len(shown) < len(cands):
        out.append(f'<text x="{PAD + 4}" y="{H - PAD - 6}" fill="#777">'
                   f'{len(cands) - len(shown)} of {len(cands)} search-stage candidates, below '
                   f'{lo:.2%}, not drawn</text>')
    if len(best) > 1:
        pts = " ".join(f"{x(p):.1f},{y(a):.1f}" for p, a in sorted(set(best)))
        out.append(f'<polyline points="{pts}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
    for p, a, se in fins:
        out.append(f'<line x1="{x(p):.1f}" y1="{y(a - se):.1f}" x2="{x(p):.1f}" '
                   f'y2="{y(a + se):.1f}" stroke="#1f77b4"/>')
        out.append(f'<circle cx="{x(p):.1f}" cy="{y(a):.1f}" r="4" fill="#1f77b4"/>')
    for name, p, a in references:
        cx, cy = x(p), y(a)
        out.append(f'<path d="M{cx:.1f},{cy - 5:.1f} l5,5 l-5,5 l-5,-5 z" fill="#d62728"/>')
        out.append(f'<text x="{cx + 7:.1f}" y="{cy + 4:.1f}">{html.escape(name)}</text>')
    out.append(f'<text x="{W - PAD}" y="{PAD - 8}" text-anchor="end">grey: search stage (proxy)'
               f'; blue: finalists, mean ± SE{"; red: references" if references else ""}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
