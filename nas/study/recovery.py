"""Trials whose process died: found from their process records, marked failed and
interrupted (so the next run trains their candidates again), and Optuna's heartbeat for those
of other machines."""

from __future__ import annotations

import warnings

import optuna
from optuna.trial import TrialState

from nas.study import record
from nas.study.processes import is_alive, this_process


def stale_trials(study: optuna.Study,
                 this_process_ended: bool = False) -> list[tuple[int, str]]:
    """(number, reason) of RUNNING trials whose process has died, as far as this machine can
    tell; with ``this_process_ended``, also those of this process (which is interrupted and
    runs no trial any more). Reads only."""
    out, me = [], this_process()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        proc = record.process_of(t, study)
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
            record.mark_interrupted(storage, ids[number], reason)
            storage.set_trial_state_values(ids[number], state=TrialState.FAIL)
            marked.append(number)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # it finished, or another process marked it, meanwhile
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return marked
