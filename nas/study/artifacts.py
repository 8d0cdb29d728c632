"""Where a study's files live: an Optuna ``FileSystemArtifactStore`` beside its database.

Defaults (``--artifact-dir`` overrides them on search, export and replay):

* ``sqlite:///nas.db`` -> ``nas.db.artifacts/`` next to the database file;
* ``journal:nas.log`` -> ``nas.log.artifacts/`` next to the journal;
* server databases (``postgresql://...``) -> ``./nas-artifacts`` (name one every machine sees).

So a study directory (database plus its ``.artifacts`` folder) can be copied anywhere and
keeps every file: the study refers to artifacts by id only (keys and ids: :mod:`nas.study.record`).
``optuna-dashboard --artifact-dir DIR URL`` shows and downloads them.

A study may come from anywhere, so its artifact ids are untrusted: :class:`CheckedStore` reads
and writes only regular files that lie, symlinks resolved, directly inside its folder, and says
what it refused (:class:`ArtifactRefused`). Faults of the folder itself (read-only, full) are
:class:`ArtifactError`, which names the folder, not the study's storage.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import BinaryIO

from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from nas.errors import ArtifactError
from nas.study.storage import file_of

SERVER_DEFAULT = Path("nas-artifacts")


def default_dir(url: str) -> Path:
    """The artifact folder of storage ``url`` when ``--artifact-dir`` is not given."""
    file = file_of(url)
    return SERVER_DEFAULT if file is None else file.with_name(file.name + ".artifacts")


def artifact_dir(url: str, given: str | Path | None) -> Path:
    return Path(given) if given is not None else default_dir(url)


def study_folders(url: str, given: str | Path | None) -> list[Path]:
    """The folders a study's files may be read from: its artifact folder and, for a file
    storage, the database's own folder (a nas 0.1 replay recorded the absolute path of weights
    it wrote under runs/ there). Nothing a study names outside them is read."""
    file = file_of(url)
    return [artifact_dir(url, given)] + ([file.resolve().parent] if file is not None else [])


# What Optuna's ids look like (uuid4 strings), with room for other stores' plain names; never a
# path: no separator, no "." or "..".
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
MAX_ARTIFACT_BYTES = 256 * 1024 * 1024  # no artifact nas writes is near this; a read stops here


def valid_artifact_id(artifact_id: object) -> bool:
    """Whether ``artifact_id`` can name an artifact: one plain name, never a path."""
    return isinstance(artifact_id, str) and bool(_ID.fullmatch(artifact_id)) and \
        artifact_id not in (".", "..")


class ArtifactRefused(ValueError):
    """An artifact id that is not one, or names a file outside the folder or not a regular
    file. A ValueError, as Optuna's own store raises for ids it refuses."""


class CheckedStore(FileSystemArtifactStore):
    """Optuna's file-system store, but every id must be one plain name and every file it opens
    a regular file inside the folder after resolving symlinks (Optuna's own check compares
    unresolved paths, so a symlink planted in a downloaded folder was followed anywhere)."""

    def __init__(self, base_path: str | Path) -> None:
        super().__init__(base_path)
        self.folder = Path(base_path)

    def path_of(self, artifact_id: object) -> Path:
        """The file of ``artifact_id``; raises :class:`ArtifactRefused` for an id that is not a
        plain name, or that resolves outside the folder, and ArtifactNotFound for none."""
        if not valid_artifact_id(artifact_id):
            raise ArtifactRefused(f"{artifact_id!r:.60} is not an artifact id")
        path = self.folder / artifact_id
        if not os.path.lexists(path):
            raise ArtifactNotFound(f"artifact {artifact_id} is not in {self.folder}")
        real, root = path.resolve(), self.folder.resolve()
        if real.parent != root:
            raise ArtifactRefused(f"artifact {artifact_id} is a link to {real}, outside "
                                  f"{self.folder}")
        if not real.is_file():
            raise ArtifactRefused(f"artifact {artifact_id} in {self.folder} is not a file")
        if real.stat().st_size > MAX_ARTIFACT_BYTES:
            raise ArtifactRefused(f"artifact {artifact_id} in {self.folder} is "
                                  f"{real.stat().st_size:,} bytes, more than nas reads")
        return real

    def open_reader(self, artifact_id: str) -> BinaryIO:
        path = self.path_of(artifact_id)
        try:
            return open(path, "rb")
        except OSError as e:
            raise ArtifactError(f"artifact folder {self.folder}: {e.strerror or e}") from None

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        try:
            self.path_of(artifact_id)
        except ArtifactNotFound:
            pass  # a new one, as every upload is
        try:
            super().write(artifact_id, content_body)
        except OSError as e:
            raise ArtifactError(f"artifact folder {self.folder}: {e.strerror or e}") from None

    def remove(self, artifact_id: str) -> None:
        os.remove(self.path_of(artifact_id))


def open_store(url: str, given: str | Path | None, create: bool) -> CheckedStore | None:
    """The artifact store of storage ``url``. With ``create`` its folder is made (a path
    that cannot be one is a one-line ArtifactError naming --artifact-dir); without, a missing
    folder gives None (a study copied without its artifacts still exports its
    architecture)."""
    path = artifact_dir(url, given)
    if create:
        if path.exists() and not path.is_dir():
            raise ArtifactError(f"--artifact-dir {path} exists and is not a directory")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ArtifactError(f"--artifact-dir {path}: {e.strerror or e}") from None
    elif not path.is_dir():
        return None
    return CheckedStore(path)
