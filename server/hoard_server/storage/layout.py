"""The data directory on disk: the one place that names every file and folder.

::

    <data_dir>/repositories/<name>/         a repository (RepositoryLayout)
    <data_dir>/repositories/.creating-<hex> a repository being made (scratch)
    <data_dir>/repositories/.erasing-<hex>  a repository being removed (scratch)

    <repo>/index/                           LMDB environment (ObjectIndex)
    <repo>/packs/00000001.pack ...          packs (format in ``pack.py``)
    <repo>/staging/<hex>.upload             large uploads in progress (emptied at start-up)
    <repo>/datasets/<relative path>         HDF5 files of the datasets face (paths: sandbox.py)
    <repo>/metadata/                        LMDB environment of the metadata cache
                                            (MetadataIndex; made on first use)
    <repo>/datasets/.hoard-<kind>-<hex>     a dataset file being imported, copied or written
                                            whole (scratch, always at the top; never listed,
                                            zipped or counted)

A backup directory has a repository's ``index/``, ``packs/`` and ``metadata/`` (so a daemon
can open it as it is) plus ``backup.json`` and ``backup.lock``. Backups work relative to
open directory descriptors, so the names are also available on their own (``INDEX``,
``pack_name``...).
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from dataclasses import dataclass

REPOSITORIES = "repositories"
INDEX = "index"
INDEX_DATA = "data.mdb"  # the LMDB data file inside INDEX
PACKS = "packs"
STAGING = "staging"
DATASETS = "datasets"
METADATA = "metadata"
METADATA_DATA = "data.mdb"  # the LMDB data file inside METADATA
PACK_SUFFIX = ".pack"
UPLOAD_SUFFIX = ".upload"
BACKUP_MANIFEST = "backup.json"
BACKUP_LOCK = "backup.lock"

# leftovers of a crash: a leading dot, which no repository name may have
_SCRATCH = re.compile(r"\.(creating|erasing)-[0-9a-f]{8,32}")


def pack_name(pack_id: int) -> str:
    return f"{pack_id:08d}{PACK_SUFFIX}"


def parse_pack_name(name: str) -> int | None:
    """The pack id a file name in ``packs/`` stands for; None if it names no pack."""
    stem = name.removesuffix(PACK_SUFFIX)
    return int(stem) if stem.isdigit() else None


@dataclass(frozen=True)
class RepositoryLayout:
    """Where one repository keeps its index, packs and staged uploads."""

    root: str

    @property
    def index_dir(self) -> str:
        return os.path.join(self.root, INDEX)

    @property
    def index_data(self) -> str:
        return os.path.join(self.root, INDEX, INDEX_DATA)

    @property
    def packs_dir(self) -> str:
        return os.path.join(self.root, PACKS)

    @property
    def staging_dir(self) -> str:
        return os.path.join(self.root, STAGING)

    @property
    def datasets_dir(self) -> str:
        """The top of the repository's dataset files (made on first use for repositories
        created before the datasets face existed)."""
        return os.path.join(self.root, DATASETS)

    @property
    def metadata_dir(self) -> str:
        """The metadata cache's LMDB environment (made when the cache is first used)."""
        return os.path.join(self.root, METADATA)

    @property
    def metadata_data(self) -> str:
        return os.path.join(self.root, METADATA, METADATA_DATA)

    def pack_path(self, pack_id: int) -> str:
        return os.path.join(self.root, PACKS, pack_name(pack_id))

    @property
    def directories(self) -> tuple[str, ...]:
        """Every directory a repository has, index last (LMDB creates its own files)."""
        return (self.packs_dir, self.staging_dir, self.datasets_dir, self.index_dir)


@dataclass(frozen=True)
class DataDirLayout:
    """Where a daemon's data directory keeps its repositories."""

    root: str

    @property
    def repositories_dir(self) -> str:
        return os.path.join(self.root, REPOSITORIES)

    def repository(self, name: str) -> RepositoryLayout:
        """The layout of repository ``name`` (a name already checked)."""
        return RepositoryLayout(os.path.join(self.root, REPOSITORIES, name))

    def scratch(self, kind: str) -> str:
        """A fresh name for a repository being made ("creating") or removed ("erasing");
        start-up removes such leftovers, and no repository name can look like one."""
        return scratch_path(self.repositories_dir, kind)

    @staticmethod
    def is_scratch(entry: str) -> bool:
        return _SCRATCH.fullmatch(entry) is not None


def scratch_path(root: str, kind: str) -> str:
    """A fresh scratch name in the repositories directory ``root`` (see DataDirLayout)."""
    return os.path.join(root, f".{kind}-{uuid.uuid4().hex}")


DATASET_SCRATCH_PREFIX = ".hoard-"


def dataset_scratch(folder: str, kind: str) -> str:
    """A fresh hidden name in ``folder`` (the top of a repository's datasets) for a file
    being made ("import", "copy", "xml") before it is renamed into place."""
    return os.path.join(folder, f"{DATASET_SCRATCH_PREFIX}{kind}-{uuid.uuid4().hex}")


def is_dataset_scratch(name: str) -> bool:
    return name.startswith(DATASET_SCRATCH_PREFIX)


def remove_dataset_scratch(datasets_dir: str) -> None:
    """Remove the scratch files a crash left at the top of ``datasets_dir`` (when the
    repository is opened, before any operation could have made one)."""
    try:
        names = os.listdir(datasets_dir)
    except FileNotFoundError:
        return
    for name in names:
        if is_dataset_scratch(name):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                os.unlink(os.path.join(datasets_dir, name))
