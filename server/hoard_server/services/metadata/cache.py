"""One metadata cache as a service: what the RPC layer will call, in qass's words.

It owns the index and hands queries to ``MetadataQueryEngine`` and server-side syncs to
``MetadataSync``. A server-side sync reads only directories under the roots the admin
allowed (``sync_roots``, like ``--backup-root``); anything else is PERMISSION_DENIED.
A client-side sync extracts on the workstation and pushes records under its machine_id:
``signatures`` tells it what the cache already holds, ``push_records`` and
``remove_records`` apply its changes.

A cache either opens its own index (a path: tests, tools) or works on one its repository
owns (``Repository.metadata``: the daemon); it closes only an index it opened. In the
daemon every call works under its repository's activity hold (``hold``), so erasing the
repository (which closes the index) waits for it, and a call that comes later fails with
REPOSITORY_NOT_FOUND. A stream takes the hold for each step (a batch, a page), never across
a yield to its consumer.

machine_ids starting with ``@`` are the daemon's own (``DATASETS_MACHINE``: the dataset
files it indexes itself); a client may not write under one.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TypeVar

from hoard.metadata.extractors import Extraction
from hoard.metadata.records import FileRecord, FileSignature
from hoard.metadata.scan import DEFAULT_GLOB, DEFAULT_REGEX
from hoard_server.errors import InvalidArgument, NotFound, PermissionDenied
from hoard_server.observe.metrics import tracked_sync
from hoard_server.services.metadata import filters
from hoard_server.services.metadata.query import MetadataQuery, MetadataQueryEngine, QueryPage
from hoard_server.services.metadata.sync import (
    DEFAULT_BATCH,
    MetadataSync,
    SyncProgress,
    check_patterns,
)
from hoard_server.storage.metadata.index import (
    DEFAULT_MAP_SIZE,
    FieldInfo,
    MetadataIndex,
    WriteCounts,
    check_machine_id,
)

MAX_PUSH = 10_000  # records in one push: one transaction
READ_CHUNK = 1 << 20  # ReadFile's chunks
DATASETS_MACHINE = "@datasets"  # the records of the repository's own dataset files
RESERVED_MACHINE_PREFIX = "@"
T = TypeVar("T")
Hold = Callable[[], AbstractContextManager[object]]


def client_machine_id(machine_id: str | None) -> str | None:
    """``machine_id`` when a client may use it; InvalidArgument for a reserved one or one
    too long to index (checked before a sync's workers encode records with it)."""
    if machine_id:
        check_machine_id(machine_id)
    if machine_id and machine_id.startswith(RESERVED_MACHINE_PREFIX):
        raise InvalidArgument(
            f"machine_id {machine_id[:100]!r} is reserved: ids starting with "
            f"{RESERVED_MACHINE_PREFIX!r} are the daemon's own (it indexes the dataset files "
            f"under {DATASETS_MACHINE!r}); choose another", reason="INVALID_MACHINE_ID",
            machine_id=machine_id[:100])
    return machine_id


class MetadataCache:
    def __init__(self, index: MetadataIndex | str, *, sync_roots: Sequence[str] = (),
                 extraction: Extraction | None = None, batch_size: int = DEFAULT_BATCH,
                 map_size: int = DEFAULT_MAP_SIZE, hold: Hold | None = None) -> None:
        self._hold: Hold = hold or contextlib.nullcontext
        self._owns_index = isinstance(index, str)
        self.index = MetadataIndex(index, map_size) if isinstance(index, str) else index
        self.queries = MetadataQueryEngine(self.index)
        # links are not followed: a link under a root could name any file
        self.syncer = MetadataSync(self.index, extraction, batch_size, follow_links=False)
        self.sync_roots = tuple(os.path.realpath(r) for r in sync_roots)

    def close(self) -> None:
        if self._owns_index:
            self.index.close()

    def __enter__(self) -> MetadataCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def held(self, items: Iterator[T]) -> Iterator[T]:
        """``items``, each one made under the hold, which is let go before it is yielded."""
        try:
            while True:
                with self._hold():
                    try:
                        item = next(items)
                    except StopIteration:
                        return
                yield item
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    # -- server-side sync ----------------------------------------------------------------
    def allowed(self, path: str | os.PathLike[str]) -> str:
        """The resolved path when it lies under a sync root; PermissionDenied otherwise."""
        given = os.fspath(path)
        if not os.path.isabs(given) or "\x00" in given:
            raise InvalidArgument(f"{given[:200]!r} is not an absolute path on the daemon's "
                                  f"host", reason="INVALID_PATH", path=given[:200])
        real = os.path.realpath(given)
        for root in self.sync_roots:
            if real == root or real.startswith(root.rstrip("/") + "/"):
                return real
        shown = ", ".join(self.sync_roots) or "none configured (--sync-root)"
        raise PermissionDenied(f"{os.fspath(path)!r} is not under a sync root ({shown})",
                               reason="OUTSIDE_SYNC_ROOTS", path=os.fspath(path))

    def synchronize_directory(
        self,
        *paths: str | os.PathLike[str],
        sync_subdirectories: bool = True,
        regex_pattern: str = DEFAULT_REGEX,
        delete_stale_entries: bool = False,
        machine_id: str | None = None,
        glob_pattern: str = DEFAULT_GLOB,
        batch_size: int | None = None,
    ) -> Iterator[SyncProgress]:
        roots = [self.allowed(p) for p in paths]  # all checked before any is read
        client_machine_id(machine_id)
        check_patterns(regex_pattern, glob_pattern)
        return self.held(tracked_sync(self.syncer.synchronize_directory(
            *roots, sync_subdirectories=sync_subdirectories, regex_pattern=regex_pattern,
            delete_stale_entries=delete_stale_entries, machine_id=machine_id,
            glob_pattern=glob_pattern, batch_size=batch_size)))

    def add_files_to_cache(self, files: Sequence[str | os.PathLike[str]],
                           machine_id: str | None = None, batch_size: int | None = None,
                           check_synced: bool = True) -> Iterator[SyncProgress]:
        checked = [self.allowed(f) for f in files]
        client_machine_id(machine_id)
        return self.held(tracked_sync(self.syncer.add_files_to_cache(
            checked, machine_id, batch_size, check_synced)))

    def remove_files_from_cache(self, files: Iterable[str | os.PathLike[str]],
                                machine_id: str | None = None) -> int:
        """By path: nothing is opened, so no root is needed (the files may be gone)."""
        machine = client_machine_id(machine_id)
        with self._hold():
            return self.syncer.remove_files_from_cache(files, machine)

    def get_non_synchronized_files(self, files: Sequence[str | os.PathLike[str]],
                                   machine_id: str | None = None
                                   ) -> tuple[list[str], list[str]]:
        checked = [self.allowed(f) for f in files]
        with self._hold():
            return self.syncer.get_non_synchronized_files(checked, machine_id)

    # -- client-side sync ----------------------------------------------------------------
    def signatures(self, machine_id: str, under: str | None = None
                   ) -> Iterator[tuple[str, FileSignature, bool]]:
        """What the cache holds for a machine: (path, signature, failed to parse); a
        stream: consume it through ``held`` (in pages) in the daemon."""
        return self.index.signatures(machine_id, under)

    def push_records(self, records: Sequence[FileRecord], machine_id: str) -> WriteCounts:
        """Records a workstation extracted, stored under its ``machine_id`` (whatever the
        records say), each checked as data from outside."""
        client_machine_id(machine_id)
        if len(records) > MAX_PUSH:
            raise InvalidArgument(f"push at most {MAX_PUSH} records at a time",
                                  reason="TOO_MANY_RECORDS")
        checked = []
        for record in records:
            try:
                record = record.checked()
            except (ValueError, TypeError) as exc:
                raise InvalidArgument(f"record {record.path!r}: {exc}",
                                      reason="INVALID_VALUE", path=record.path) from exc
            record.machine_id = machine_id
            checked.append(record)
        with self._hold():
            return self.index.upsert_many(checked)

    def remove_records(self, paths: Iterable[str], machine_id: str) -> WriteCounts:
        client_machine_id(machine_id)
        keys = [(machine_id, p) for p in paths]
        with self._hold():
            return self.index.remove_many(keys)

    # -- queries -------------------------------------------------------------------------
    def query(self, query: MetadataQuery) -> QueryPage:
        with self._hold():
            return self.queries.run(query)

    def query_locations(self, query: MetadataQuery
                        ) -> tuple[list[tuple[str, str]], str | None]:
        """(machine_id, path) of a page's matches and its token: ``query`` without records."""
        with self._hold():
            return self.queries.run_locations(query)

    def count(self, text_or_filter: str | filters.Expr | None = None) -> int:
        expr = filters.parse(text_or_filter) if isinstance(text_or_filter, str) \
            else text_or_filter
        with self._hold():
            return self.queries.count(expr)

    def get_matching_files(self, query: MetadataQuery) -> list[str]:
        """Every matching path, in the query's order (all pages)."""
        with self._hold():
            return list(self.queries.iter_paths(query))

    def schema(self) -> list[FieldInfo]:
        with self._hold():
            return self.index.schema()

    # -- file content --------------------------------------------------------------------
    def read_file(self, path: str, chunk: int = READ_CHUNK) -> tuple[int, Iterator[bytes]]:
        """(size, chunks) of a file on the daemon's host that the cache indexes (under
        machine_id "") and that lies under a sync root: qass's ``get_matching_buffers``
        reads the matches' content. FILE_NOT_FOUND for a path the cache does not hold or
        that is gone; PermissionDenied outside the roots (a link is judged by its target)."""
        real = self.allowed(path)
        with self._hold():
            known = (self.index.get(os.path.abspath(path)) is not None
                     or self.index.get(real) is not None)
        if not known:
            raise NotFound(f"{path!r} is not in the metadata cache; sync it first",
                           reason="FILE_NOT_FOUND", path=path)
        try:
            st = os.stat(real)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"{path!r} is in the metadata cache but no longer on disk",
                           reason="FILE_NOT_FOUND", path=path) from None
        if not stat.S_ISREG(st.st_mode):
            raise NotFound(f"{path!r} is not a regular file", reason="FILE_NOT_FOUND",
                           path=path)

        def chunks() -> Iterator[bytes]:
            try:
                fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
            except FileNotFoundError:
                raise NotFound(f"{path!r} went away while it was being read",
                               reason="FILE_NOT_FOUND", path=path) from None
            except OSError as exc:
                raise PermissionDenied(f"{path!r} cannot be read: {exc.strerror}",
                                       path=path) from None
            try:
                while data := os.read(fd, chunk):
                    yield data
            finally:
                os.close(fd)

        return st.st_size, chunks()
