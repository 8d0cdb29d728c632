"""What a study's training cost, counted from its trials' records (the summary's compute line)."""

from __future__ import annotations

from dataclasses import dataclass

import optuna

from nas.study import record
from nas.study.budget import hms


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
                f"trials took {hms(self.trial_seconds)} (first start to last end "
                f"{hms(self.span_seconds)})")


def search_cost(study: optuna.Study, full_epochs: int) -> SearchCost:
    """The compute a study has spent so far (:class:`SearchCost`); running trials count the
    epochs they have recorded. Trials of nas 0.1.0's studies trained on the whole split."""
    full_images = record.split_size(study)
    trials = study.get_trials(deepcopy=False)
    epochs, images = {record.SEARCH: 0, record.FINALIST: 0}, {record.SEARCH: 0, record.FINALIST: 0}
    for t in trials:
        n = len(record.curve_of(t))
        epochs[record.stage_of(t)] += n
        images[record.stage_of(t)] += n * record.train_images_of(t, full_images)
    ended = [t for t in trials if t.datetime_start is not None and
             t.datetime_complete is not None]
    busy = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in ended)
    span = (max(t.datetime_complete for t in ended) -
            min(t.datetime_start for t in ended)).total_seconds() if ended else 0.0
    return SearchCost(epochs, images, full_epochs, max(full_images, 1), busy, span)
