"""One metadata cache as a service: what the RPC layer will call, in qass's words.

It owns the index and hands queries to ``MetadataQueryEngine`` and server-side syncs to
``MetadataSync``. A server-side sync reads only directories under the roots the admin
allowed (``sync_roots``, like ``--backup-root``); anything else is PERMISSION_DENIED.
A client-side sync extracts on the workstation and pushes records under its machine_id:
``signatures`` tells it what the cache already holds, ``push_records`` and
``remove_records`` apply its changes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence

from hoard.metadata.extractors import Extraction
from hoard.metadata.records import FileRecord, FileSignature
from hoard.metadata.scan import DEFAULT_GLOB, DEFAULT_REGEX
from hoard_server.errors import InvalidArgument, PermissionDenied
from hoard_server.services.metadata import filters
from hoard_server.services.metadata.query import MetadataQuery, MetadataQueryEngine, QueryPage
from hoard_server.services.metadata.sync import DEFAULT_BATCH, MetadataSync, SyncProgress
from hoard_server.storage.metadata.index import (
    DEFAULT_MAP_SIZE,
    FieldInfo,
    MetadataIndex,
    WriteCounts,
)

MAX_PUSH = 10_000  # records in one push: one transaction


class MetadataCache:
    def __init__(self, path: str, *, sync_roots: Sequence[str] = (),
                 extraction: Extraction | None = None, batch_size: int = DEFAULT_BATCH,
                 map_size: int = DEFAULT_MAP_SIZE) -> None:
        self.index = MetadataIndex(path, map_size)
        self.queries = MetadataQueryEngine(self.index)
        # links are not followed: a link under a root could name any file
        self.syncer = MetadataSync(self.index, extraction, batch_size, follow_links=False)
        self.sync_roots = tuple(os.path.realpath(r) for r in sync_roots)

    def close(self) -> None:
        self.index.close()

    def __enter__(self) -> MetadataCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- server-side sync ----------------------------------------------------------------
    def allowed(self, path: str | os.PathLike[str]) -> str:
        """The resolved path when it lies under a sync root; PermissionDenied otherwise."""
        real = os.path.realpath(os.fspath(path))
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
        return self.syncer.synchronize_directory(
            *roots, sync_subdirectories=sync_subdirectories, regex_pattern=regex_pattern,
            delete_stale_entries=delete_stale_entries, machine_id=machine_id,
            glob_pattern=glob_pattern, batch_size=batch_size)

    def add_files_to_cache(self, files: Sequence[str | os.PathLike[str]],
                           machine_id: str | None = None, batch_size: int | None = None,
                           check_synced: bool = True) -> Iterator[SyncProgress]:
        checked = [self.allowed(f) for f in files]
        return self.syncer.add_files_to_cache(checked, machine_id, batch_size, check_synced)

    def remove_files_from_cache(self, files: Iterable[str | os.PathLike[str]],
                                machine_id: str | None = None) -> int:
        """By path: nothing is opened, so no root is needed (the files may be gone)."""
        return self.syncer.remove_files_from_cache(files, machine_id)

    def get_non_synchronized_files(self, files: Sequence[str | os.PathLike[str]],
                                   machine_id: str | None = None
                                   ) -> tuple[list[str], list[str]]:
        return self.syncer.get_non_synchronized_files([self.allowed(f) for f in files],
                                                      machine_id)

    # -- client-side sync ----------------------------------------------------------------
    def signatures(self, machine_id: str, under: str | None = None
                   ) -> Iterator[tuple[str, FileSignature, bool]]:
        """What the cache holds for a machine: (path, signature, failed to parse)."""
        return self.index.signatures(machine_id, under)

    def push_records(self, records: Sequence[FileRecord], machine_id: str) -> WriteCounts:
        """Records a workstation extracted, stored under its ``machine_id`` (whatever the
        records say), each checked as data from outside."""
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
        return self.index.upsert_many(checked)

    def remove_records(self, paths: Iterable[str], machine_id: str) -> WriteCounts:
        return self.index.remove_many((machine_id, p) for p in paths)

    # -- queries -------------------------------------------------------------------------
    def query(self, query: MetadataQuery) -> QueryPage:
        return self.queries.run(query)

    def count(self, text_or_filter: str | filters.Expr | None = None) -> int:
        expr = filters.parse(text_or_filter) if isinstance(text_or_filter, str) \
            else text_or_filter
        return self.queries.count(expr)

    def get_matching_files(self, query: MetadataQuery) -> list[str]:
        """Every matching path, in the query's order (all pages)."""
        return list(self.queries.iter_paths(query))

    def schema(self) -> list[FieldInfo]:
        return self.index.schema()
