"""Which choices mattered: Optuna's own importance evaluator over a study's search stage.

Only search-stage candidates that completed training count (duplicates, which repeat an earlier
value, and finalists, which repeat a candidate on more seeds, would weigh some twice), and only
the parameters every one of them has (Optuna's rule: a parameter that some candidates lack, such
as a fourth block's width, has no importance to compare).
"""

from __future__ import annotations

import warnings

import optuna
from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

from nas.study import record
from nas.study.selection import completed

MIN_TRIALS = 20  # fewer: too few in the top to estimate how they are spread
MIN_TOP = 10  # the top share holds at least this many candidates (3 of 30 gave noise)


def importances(study: optuna.Study, top: float | None = None) -> dict[str, float] | None:
    """Parameter -> its importance for reaching the best ``top`` share of candidates (default
    10 %, or :data:`MIN_TOP` candidates where that is more; Optuna's
    PED-ANOVA: how differently the top and all candidates are spread over its values),
    normalised to sum to 1, largest first; None with fewer than :data:`MIN_TRIALS` completed
    candidates. PED-ANOVA, not fANOVA: it asks about the top, where a search's pick comes
    from, and needs no scikit-learn."""
    trials = completed(study)
    if len(trials) < MIN_TRIALS:
        return None
    # In memory, the study untouched; accuracy only (a Pareto study's second value is the
    # parameter count, a consequence of the choices, not a result of them).
    view = optuna.create_study(direction="maximize")
    view.add_trials([optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                               value=record.accuracy_of(t)) for t in trials])
    q = top if top is not None else max(0.1, MIN_TOP / len(trials))
    with warnings.catch_warnings():  # "some regimes have less than 2 trials", per parameter:
        warnings.simplefilter("ignore", UserWarning)  # the line says how many candidates
        return get_param_importances(view,
                                     evaluator=PedAnovaImportanceEvaluator(target_quantile=q))


def importance_line(study: optuna.Study, top: int = 6) -> str | None:
    """One line for the summary: the ``top`` parameters by importance."""
    got = importances(study)
    if not got:
        return None
    n = len(completed(study))
    shown = ", ".join(f"{k} {v:.2f}" for k, v in list(got.items())[:top])
    best = max(round(0.1 * n), MIN_TOP)
    return (f"what mattered (Optuna PED-ANOVA: the best {best} of {n} search-stage candidates "
            f"against all): {shown}")
