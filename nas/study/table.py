"""Every trial of a study as one row of plain values: for people who analyse results in pandas
(``nas.export --trials-csv``). Read through :mod:`nas.study.record`, so a row holds only
checked values; text fields are the record's own (spec keys, reasons)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import optuna

from nas.study import record
from nas.training.space import train_params

# The columns, in order; the training space's settings (``train_*``) follow where a study has
# them, and the candidate's other sampled parameters are in ``arch_key``.
COLUMNS = ("number", "stage", "state", "outcome", "val_acc", "epochs", "train_images",
           "params", "receptive_field", "finalist_of", "finalist_seed", "train_seconds",
           "arch_key", "reason")


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One dict per trial, in trial order: :data:`COLUMNS`, then the ``train_*`` parameters."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        finalist = record.stage_of(t) == record.FINALIST
        row: dict[str, Any] = {
            "number": t.number, "stage": record.stage_of(t), "state": t.state.name.lower(),
            "outcome": record.outcome_of(t) or "", "val_acc": record.accuracy_of(t) if t.values
            else "", "epochs": len(record.curve_of(t, study)),
            "train_images": record.train_images_of(t, 0) or "",
            "params": record.param_count_of(t, study) or "",
            "receptive_field": record.rf_of(t, study) or "",
            "finalist_of": record.finalist_of(t) if finalist else "",
            "finalist_seed": record.finalist_seed(t, study) if finalist else "",
            "train_seconds": record.train_seconds_of(t, study) or "",
            "arch_key": record.key_of(t) or "", "reason": record.reason_of(t)}
        row.update(train_params(t.params))
        rows.append(row)
    return rows


def write_csv(study: optuna.Study, path: Path) -> Path:
    """All trials as CSV at ``path`` (:func:`trial_rows`; empty cells where a value does not
    apply, e.g. a rejected candidate's accuracy). Returns ``path``."""
    rows = trial_rows(study)
    extra = sorted({k for r in rows for k in r} - set(COLUMNS))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*COLUMNS, *extra], restval="")
        w.writeheader()
        w.writerows(rows)
    return path
