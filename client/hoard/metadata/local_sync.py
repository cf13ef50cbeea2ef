"""Client-side sync: this machine's directories into the daemon's cache.

The SDK walks the directories itself (``hoard.metadata.scan``, qass's patterns), asks the
daemon what it holds for this machine (``Signatures``, under each directory), extracts only
the files whose signature (size, mtime_ns, ctime_ns, inode) differs with the extractors the
daemon uses too, and pushes the records in batches (``PushRecords``, one transaction each).
With ``delete_stale_entries`` the records of files gone from disk are removed by path
(``RemoveRecords``), without opening anything. The rules are the server-side sync's
(``hoard_server.services.metadata.sync``): the same files give the same records and counts.

A batch is pushed while the next one is extracted (one push in flight), so the walk and
extraction overlap the daemon's write. A file the wire cannot carry a field of (an integer
beyond uint64, from a custom extractor) is pushed without that field, the reason in its ``error``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from hoard.errors import InvalidArgumentError, InvalidPatternError, NotASyncDirectoryError
from hoard.metadata.extractors import Extraction
from hoard.metadata.records import FileRecord, FileSignature
from hoard.metadata.scan import (
    DEFAULT_GLOB,
    DEFAULT_REGEX,
    directory_root,
    in_scope,
    non_synchronized,
    scan_directory,
)
from hoard.metadata.wire import to_record
from hoard.transport import PendingCall

if TYPE_CHECKING:
    from hoard.metadata.client import MetadataCache, SyncProgress

DEFAULT_BATCH = 1000
MAX_BATCH = 10_000


def _same(old: FileSignature, st: os.stat_result) -> bool:
    return (old.mtime_ns == st.st_mtime_ns and old.size == st.st_size
            and old.ctime_ns == st.st_ctime_ns and old.inode == st.st_ino)


class LocalSync:
    """One client-side sync run's machinery over a :class:`MetadataCache`."""

    def __init__(self, cache: MetadataCache, extraction: Extraction) -> None:
        self.cache = cache
        self.extraction = extraction

    @staticmethod
    def _batch_size(batch_size: int | None) -> int:
        size = DEFAULT_BATCH if batch_size is None else batch_size
        if not 1 <= size <= MAX_BATCH:
            raise InvalidArgumentError(f"batch_size must be between 1 and {MAX_BATCH}, "
                                       f"not {size}", reason="INVALID_BATCH_SIZE")
        return size

    def synchronize_directory(
        self,
        *paths: str | os.PathLike[str],
        sync_subdirectories: bool = True,
        regex_pattern: str = DEFAULT_REGEX,
        delete_stale_entries: bool = False,
        machine_id: str = "",
        glob_pattern: str = DEFAULT_GLOB,
        batch_size: int | None = None,
    ) -> Iterator[SyncProgress]:
        from hoard.metadata.client import SyncProgress

        size = self._batch_size(batch_size)
        _check_pattern(regex_pattern)
        roots = []
        for raw in paths:  # every path checked before any is read
            root = directory_root(raw)
            if not os.path.isdir(root):
                raise NotASyncDirectoryError(f"{os.fspath(raw)!r} is not a directory",
                                             reason="NOT_A_DIRECTORY",
                                             details={"path": os.fspath(raw)})
            roots.append(root)
        progress = SyncProgress()
        pusher = _Pusher(self.cache, machine_id)
        for root in roots:
            stored = {
                e.path: e.signature
                for e in self.cache.signatures(machine_id, under=root.rstrip("/") + "/")
                if in_scope(e.path, root, sync_subdirectories)
            }
            pending: list[tuple[str, os.stat_result]] = []
            for path, st in scan_directory(root, sync_subdirectories=sync_subdirectories,
                                           regex_pattern=regex_pattern,
                                           glob_pattern=glob_pattern):
                progress = replace(progress, scanned=progress.scanned + 1)
                old = stored.pop(path, None)
                if old is not None and _same(old, st):
                    progress = replace(progress, unchanged=progress.unchanged + 1)
                    continue
                pending.append((path, st))
                if len(pending) >= size:
                    progress = pusher.push(self._extract(pending, machine_id), progress)
                    pending = []
                    yield progress
            if pending:
                progress = pusher.push(self._extract(pending, machine_id), progress)
                yield progress
            progress = pusher.wait(progress)
            if delete_stale_entries and stored:
                gone = [p for p in sorted(stored) if not os.path.lexists(p)]
                for start in range(0, len(gone), size):
                    counts = self.cache.remove_records(gone[start:start + size], machine_id)
                    progress = replace(progress, removed=progress.removed + counts.removed)
                    yield progress
        yield replace(pusher.wait(progress), done=True)

    def add_files(self, files: Sequence[str | os.PathLike[str]], machine_id: str,
                  batch_size: int | None, check_synced: bool) -> Iterator[SyncProgress]:
        from hoard.metadata.client import SyncProgress

        size = self._batch_size(batch_size)
        paths = [os.path.abspath(os.fspath(p)) for p in files]
        if check_synced:
            paths, _stale = self.non_synchronized(paths, machine_id)
        progress = SyncProgress(scanned=len(paths))
        pusher = _Pusher(self.cache, machine_id)
        for start in range(0, len(paths), size):
            items = [(p, None) for p in paths[start:start + size]]
            progress = pusher.push(self._extract(items, machine_id), progress)
            yield progress
        yield replace(pusher.wait(progress), done=True)

    def non_synchronized(self, files: Sequence[str | os.PathLike[str]], machine_id: str
                         ) -> tuple[list[str], list[str]]:
        """qass's ``get_non_synchronized_files``, the files looked at on this machine."""
        stored = {e.path: e.signature for e in self.cache.signatures(machine_id)}
        return non_synchronized(files, stored)

    def _extract(self, items: Sequence[tuple[str, os.stat_result | None]], machine_id: str
                 ) -> list[FileRecord]:
        records = []
        for path, st in items:
            try:
                records.append(self.extraction.record(path, machine_id, st))
            except FileNotFoundError:
                continue  # gone since it was listed
        return records


class _Pusher:
    """Pushes one batch while the caller extracts the next: at most one call in flight.
    The counts of a push are added to the progress when it is waited for."""

    def __init__(self, cache: MetadataCache, machine_id: str) -> None:
        self.cache = cache
        self.machine_id = machine_id
        self._pending: PendingCall | None = None
        self._failed = 0
        self._sent = 0

    def push(self, records: list[FileRecord], progress: SyncProgress) -> SyncProgress:
        progress = self.wait(progress)
        if not records:
            return progress
        messages = [to_record(r, lenient=True) for r in records]
        request = self.cache.push_request(messages, self.machine_id)
        self._pending = self.cache.transport.unary_future("MetadataCache.PushRecords", request)
        self._failed = sum(1 for m in messages if m.has_error)
        self._sent = len(records)
        return progress

    def wait(self, progress: SyncProgress) -> SyncProgress:
        if self._pending is None:
            return progress
        pending, self._pending = self._pending, None
        reply = pending.result()
        # a changed file whose record came out the same is neither added nor updated
        same = max(0, self._sent - reply.added - reply.updated)
        return replace(progress, added=progress.added + reply.added,
                       updated=progress.updated + reply.updated,
                       unchanged=progress.unchanged + same,
                       failed=progress.failed + self._failed)


def _check_pattern(pattern: str) -> None:
    import re

    try:
        re.compile(pattern)
    except re.error as exc:
        raise InvalidPatternError(f"regex_pattern {pattern!r} does not compile: {exc}",
                                  reason="INVALID_PATTERN",
                                  details={"pattern": pattern}) from None
