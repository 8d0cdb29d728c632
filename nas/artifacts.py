"""Where a study's files live: an Optuna ``FileSystemArtifactStore`` beside its database.

Defaults (``--artifact-dir`` overrides them on search, export and replay):

* ``sqlite:///nas.db`` -> ``nas.db.artifacts/`` next to the database file;
* ``journal:nas.log`` -> ``nas.log.artifacts/`` next to the journal;
* server databases (``postgresql://...``) -> ``./nas-artifacts`` (name one every machine sees).

So a study directory (database plus its ``.artifacts`` folder) can be copied anywhere and
keeps every file: the study refers to artifacts by id only (keys and ids: :mod:`nas.record`).
``optuna-dashboard --artifact-dir DIR URL`` shows and downloads them.
"""

from __future__ import annotations

from pathlib import Path

from optuna.artifacts import FileSystemArtifactStore

from nas.cli import make_dir
from nas.storage import file_of

SERVER_DEFAULT = Path("nas-artifacts")


def default_dir(url: str) -> Path:
    """The artifact folder of storage ``url`` when ``--artifact-dir`` is not given."""
    file = file_of(url)
    return SERVER_DEFAULT if file is None else file.with_name(file.name + ".artifacts")


def artifact_dir(url: str, given: str | Path | None) -> Path:
    return Path(given) if given is not None else default_dir(url)


def open_store(url: str, given: str | Path | None,
               create: bool) -> FileSystemArtifactStore | None:
    """The artifact store of storage ``url``. With ``create`` its folder is made (a path
    that cannot be one is a one-line UserError naming --artifact-dir); without, a missing
    folder gives None (a study copied without its artifacts still exports its
    architecture)."""
    path = artifact_dir(url, given)
    if create:
        make_dir(path, "--artifact-dir")
    elif not path.is_dir():
        return None
    return FileSystemArtifactStore(path)
