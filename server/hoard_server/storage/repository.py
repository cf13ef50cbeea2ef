"""A repository: a named packed store with its dataset files and maintenance entry points.

The storage itself is ``packed.PackedStore`` (the ``BlobStore`` implementation); this
class adds what the service layer asks of a repository beyond the blob store interface:
creating one on disk, the bytes it holds against its quota (``usage``, the quota kept in
the index), its HDF5 files (``files``, counted in ``info``), its metadata cache's index
(``metadata``, opened on first use, its records counted in ``info``), and running
compaction and verification on it, each handed only the engine parts it needs
(``hoard_server.maintenance``).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Generator, Iterator
from concurrent.futures import Executor
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from hoard_server.errors import FailedPrecondition, RepositoryNotFound
from hoard_server.reports import MaintenanceProgress, Problem, StoreInfo, VerifyProgress
from hoard_server.storage import modes
from hoard_server.storage.blobstore import READ_MANY_INLINE, ObjectStat
from hoard_server.storage.codec import FRAME_SIZE
from hoard_server.storage.hdf5.files import OpenFiles
from hoard_server.storage.hdf5.inventory import dataset_files
from hoard_server.storage.index import ObjectIndex
from hoard_server.storage.layout import RepositoryLayout, remove_dataset_scratch
from hoard_server.storage.packed.store import CLOSE_WAIT, INLINE_LIMIT, RETIRE_WAIT, PackedStore
from hoard_server.storage.records import check_record
from hoard_server.storage.settings import StorageSettings
from hoard_server.storage.usage import Usage

_QUOTA = "quota_bytes"  # index meta: the byte quota, decimal (absent: none)

if TYPE_CHECKING:  # opened on first use: the objects face does not load the metadata code
    from hoard_server.storage.metadata.index import MetadataIndex


class Repository(PackedStore):
    """Content-addressed objects of one repository. Every public method is thread-safe."""

    def __init__(self, name: str, path: str, settings: StorageSettings, pool: Executor) -> None:
        super().__init__(name, RepositoryLayout(path), settings, pool)
        self._maintenance = threading.Lock()
        # the datasets face's HDF5 files (services/datasets); opened lazily, file by file
        self.files = OpenFiles(self.layout.datasets_dir, name)
        remove_dataset_scratch(self.layout.datasets_dir)  # a crash's leftovers
        self._metadata: MetadataIndex | None = None
        self._metadata_lock = threading.Lock()
        self._closed = False
        quota = int(self.index.get_meta(_QUOTA) or b"0")
        self.usage = Usage(name, path, quota, self._save_quota)

    def _save_quota(self, quota: int) -> None:
        with self.activity.hold(), self.index.write() as txn:
            self.index.put_meta(txn, _QUOTA, str(quota).encode())

    @property
    def metadata(self) -> MetadataIndex:
        """The metadata cache's index, opened (and made) on first use;
        RepositoryNotFound once the repository is closed (erased, or the daemon stopping)."""
        index = self._metadata
        if index is None:
            from hoard_server.storage.metadata.index import MetadataIndex

            with self._metadata_lock:
                if self._closed:
                    raise RepositoryNotFound(self.name)
                if self._metadata is None:
                    self._metadata = MetadataIndex(self.layout.metadata_dir)
                index = self._metadata
        return index

    def has_metadata(self) -> bool:
        """Whether the repository has a metadata cache (without making one)."""
        return self._metadata is not None or os.path.isfile(self.layout.metadata_data)

    def close(self, timeout: float | None = CLOSE_WAIT) -> None:
        self.files.close_all()
        super().close(timeout)
        with self._metadata_lock:
            self._closed = True
            if self._metadata is not None:
                self._metadata.close()
                self._metadata = None

    @classmethod
    def create(
        cls, name: str, path: str, settings: StorageSettings, pool: Executor, scratch: str
    ) -> Repository:
        """Initialise a repository directory at ``path`` (which must not exist) and open it.

        It is built at ``scratch`` (a name start-up clean-up recognises as a leftover) and
        renamed into place whole."""
        layout = RepositoryLayout(scratch)
        for directory in layout.directories:
            modes.makedirs(directory)
        index = ObjectIndex(layout.index_dir, settings.index_map_size)
        with index.write() as txn:
            index.put_meta(txn, "uuid", uuid.uuid4().hex.encode())
            index.put_meta(txn, "created_at", repr(time.time()).encode())
            index.put_meta(txn, "format", b"1")
        index.close()
        os.rename(scratch, path)  # the repository appears whole or not at all
        return cls(name, path, settings, pool)

    def info(self) -> StoreInfo:
        """The store's counts and sizes, with the dataset files' count and bytes."""
        files = list(dataset_files(self.layout.datasets_dir))
        return replace(
            super().info(),
            dataset_files=len(files),
            dataset_bytes=sum(f.size for f in files),
            metadata_records=self.metadata.count() if self.has_metadata() else 0,
        )

    def maintain(
        self, dry_run: bool = False, dead_fraction: float = 0.0, max_packs: int = 0
    ) -> Generator[MaintenanceProgress, None, None]:
        """Live compaction with progress reports (see ``maintenance/compactor.py``);
        FailedPrecondition (MAINTENANCE_RUNNING) if a run is already going on."""
        from hoard_server.maintenance.compactor import Compactor  # maintenance sits above

        self.drop_retired_packs()  # files a previous run had to leave to their last readers
        with self.activity.hold(reader=False):
            if not self._maintenance.acquire(blocking=False):
                raise FailedPrecondition(
                    f"maintenance of repository {self.name!r} is already running; "
                    "wait for it or cancel it",
                    reason="MAINTENANCE_RUNNING",
                    repository=self.name,
                )
            try:
                compactor = Compactor(
                    self.name,
                    self.index,
                    self.reader,
                    self.writer,
                    self.activity,
                    partial(check_record, self.codec),
                    self.drop_pack_file,
                    self.settings.maintenance_duty,
                )
                yield from compactor.run(dry_run, dead_fraction, max_packs)
            finally:
                self._maintenance.release()
                self.usage.changed()  # what compaction gave back: measured when next needed

    def verify(
        self, pack_id: int = 0, sample: float = 0.0
    ) -> Generator[VerifyProgress, None, None]:
        """Re-read and re-hash objects; report every problem (see
        ``maintenance/verifier.py``)."""
        from hoard_server.maintenance.dataset_check import DatasetFileCheck
        from hoard_server.maintenance.metadata_check import metadata_problems
        from hoard_server.maintenance.verifier import Verifier

        def check_files(sample: float) -> Iterator[Problem]:
            yield from DatasetFileCheck(self.files).problems(sample)
            if self.has_metadata():
                yield from metadata_problems(self.metadata)

        with self.activity.hold(reader=False):
            verifier = Verifier(
                self.name,
                self.index,
                self.reader,
                self.pack_path,
                self.activity,
                self.read,
                check_files,
            )
            yield from verifier.run(pack_id, sample)


__all__ = [
    "CLOSE_WAIT",
    "FRAME_SIZE",
    "INLINE_LIMIT",
    "READ_MANY_INLINE",
    "RETIRE_WAIT",
    "ObjectStat",
    "Repository",
    "StorageSettings",
]
