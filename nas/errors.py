"""The ground floor: every error ``nas`` reports as one line, importable without torch or Optuna.

A :class:`UserError` is the user's to fix (bad input, a missing file, a study that is not one,
a storage fault): the entry points print its message as one line and exit 2. Each layer raises
its own subclass; the command-line layer needs only :class:`UserError` to know them all.
"""

from __future__ import annotations


class UserError(Exception):
    """Anything the user can fix; printed as one line, exit status 2."""


class SpecError(UserError, ValueError):
    """A spec that is malformed or describes a network that cannot exist."""


class DataError(UserError):
    """Data files that are missing, truncated, or not the dataset they claim to be."""


class ConfigError(UserError, ValueError):
    """A TrainConfig field of the wrong type or out of range; the message names the field."""


class DeviceError(UserError):
    """The requested device is not available."""


class StorageError(UserError):
    """A storage URL that cannot be opened, a study/trial that is not there, or a storage
    fault (read-only, full, locked, server gone)."""


class ArtifactError(UserError):
    """The artifact folder cannot be made, read or written (one line naming the folder)."""


class RecordError(UserError):
    """A study or trial that does not hold what ``nas`` needs."""


class WorkerDied(Exception):
    """A worker process ended abnormally; the search stopped the others (exit status 1: not
    the user's input, but one line all the same)."""
