"""The dataset files in the metadata cache, kept in step as the datasets face changes them.

Each repository's ``OpenFiles`` tells ``changed`` the repository-relative path of a file
a writer has left, or of a file or folder changed whole (import, copy, rename, delete).
The path is queued and one background thread per daemon brings the cache in step with
what is on disk now:

- an HDF5 file (``.h5``, ``.hdf5``...) is re-extracted with the ``stat`` and ``hdf5``
  extractors, read through the repository's own handles (one process cannot open an HDF5
  file twice with different intents), under ``DATASETS_MACHINE`` and its relative path;
  a file whose signature is the stored one is left alone;
- a path that is gone loses its record, and so do the records below it (a folder);
- a folder has its files indexed and its vanished files dropped (a folder renamed here);
- when a repository is opened, all its dataset files are checked the same way (files
  written before the cache existed, or while the daemon was down, by a restore...): only
  those whose signature changed are read.

``changed`` never blocks: repeated changes of one file while it waits are one entry, and
when the queue is full the repository is marked for a whole rescan of its dataset files
instead, so nothing is lost and a writer's acknowledgement never waits on the indexer.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections import OrderedDict

import lmdb

from hoard.metadata.extractors import Extraction, Extractor
from hoard.metadata.extractors.hdf5 import hdf5_fields
from hoard.metadata.records import FileSignature, Value
from hoard_server.errors import HoardError, NotFound
from hoard_server.services.metadata.cache import DATASETS_MACHINE
from hoard_server.storage import sandbox
from hoard_server.storage.hdf5.files import HandleLimit, OpenFiles
from hoard_server.storage.hdf5.inventory import dataset_files
from hoard_server.storage.registry import RepositoryRegistry
from hoard_server.storage.repository import Repository

log = logging.getLogger(__name__)

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
MAX_QUEUE = 10_000
_RESCAN = ""  # the queued path that stands for every dataset file of the repository


def is_hdf5_name(path: str) -> bool:
    return path.lower().endswith(HDF5_SUFFIXES)


class _OpenHdf5(Extractor):
    """The ``hdf5`` extractor over the repository's handles (``OpenFiles.reading``)."""

    name = "hdf5"

    def __init__(self, files: OpenFiles) -> None:
        self._files = files

    def extract(self, path: str, st: os.stat_result) -> dict[str, Value]:
        rel = sandbox.relative(self._files.root, path)
        try:
            with self._files.reading(rel) as f:
                return hdf5_fields(f)
        except NotFound as exc:
            raise FileNotFoundError(path) from exc


class DatasetIndexer:
    """One background thread indexing the dataset files of every repository of
    ``registry`` as they change (see the module's docstring)."""

    def __init__(self, registry: RepositoryRegistry, handles: HandleLimit | None = None,
                 max_queue: int = MAX_QUEUE) -> None:
        """``handles``: the daemon's bound of open HDF5 handles, which the indexer's reads
        count against too (a repository's first scan may read every file it has)."""
        self._registry = registry
        self._handles = handles
        self._max_queue = max_queue
        self._queue: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="dataset-indexer", daemon=True)
        self._thread.start()
        registry.on_open(self.attach)

    def attach(self, repo: Repository) -> None:
        name = repo.name
        if repo.files.limit is None:
            repo.files.limit = self._handles
        repo.files.on_change = lambda path: self.changed(name, path)
        self.changed(name, _RESCAN)

    def changed(self, repository: str, path: str) -> None:
        """Queue ``path`` (relative to the repository's datasets); returns at once."""
        with self._cond:
            if self._stopping or (repository, _RESCAN) in self._queue:
                return
            key = (repository, path)
            if key in self._queue:
                return  # coalesced: the file is read once, as it is when its turn comes
            if len(self._queue) >= self._max_queue:
                for queued in [k for k in self._queue if k[0] == repository]:
                    del self._queue[queued]
                key = (repository, _RESCAN)
                log.warning("the metadata indexer's queue is full: repository %s will have "
                            "all its dataset files checked instead", repository)
            self._queue[key] = None
            self._cond.notify()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._queue.clear()
            self._cond.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                (repository, path), _ = self._queue.popitem(last=False)
            try:
                self.index(repository, path)
            except (HoardError, OSError, lmdb.Error) as exc:  # e.g. erased meanwhile
                log.warning("indexing dataset file %s of %s: %s", path or "(all)", repository,
                            exc)
            except Exception:
                log.exception("indexing dataset file %s of %s", path or "(all)", repository)

    # -- one path ----------------------------------------------------------------------------
    def index(self, repository: str, path: str) -> None:
        """Bring the records of ``path`` (a file, a folder, or gone; "" for everything) in
        step with the disk."""
        try:
            repo = self._registry.get(repository)
        except NotFound:
            return
        if not path and not repo.has_metadata() and not any(
                is_hdf5_name(f.path) for f in dataset_files(repo.files.root)):
            return  # no cache and nothing to put in one: none is made
        full = repo.files.resolve(path, allow_top=True)
        try:
            mode = os.lstat(full).st_mode
        except (FileNotFoundError, NotADirectoryError):
            mode = None
        if mode is not None and stat.S_ISREG(mode):
            self._extract(repo, [path])
            return
        prefix = "" if not path else path + "/"
        stored = [p for p, _sig, _failed in repo.metadata.signatures(DATASETS_MACHINE, prefix)]
        if mode is None or not stat.S_ISDIR(mode):  # gone: the file, or a folder's files
            repo.metadata.remove_many((DATASETS_MACHINE, p) for p in [*stored, path] if p)
            return
        present = [prefix + f.path for f in dataset_files(full) if is_hdf5_name(f.path)]
        listed = set(present)
        repo.metadata.remove_many((DATASETS_MACHINE, p) for p in stored if p not in listed)
        for start in range(0, len(present), 500):
            self._extract(repo, present[start:start + 500])

    def _extract(self, repo: Repository, paths: list[str]) -> None:
        extraction = Extraction([_OpenHdf5(repo.files)])
        index = repo.metadata
        records = []
        gone = []
        for path in paths:
            if not is_hdf5_name(path):
                continue
            full = repo.files.resolve(path)
            try:
                st = os.stat(full)
                old = index.get(path, DATASETS_MACHINE)
                if old is not None and old.signature == FileSignature.of(st):
                    continue  # unchanged (a close, or a change queued twice)
                record = extraction.record(full, DATASETS_MACHINE, st)
            except FileNotFoundError:
                gone.append(path)
                continue
            record.path = path
            records.append(record)
        if records:
            index.upsert_many(records)
        if gone:
            index.remove_many((DATASETS_MACHINE, p) for p in gone)
