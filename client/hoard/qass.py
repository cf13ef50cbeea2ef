"""qass's ``BufferMetadataCache`` over hoard: the anchor's names, signatures and defaults.

    from hoard.qass import BufferMetadataCache as BMC, BufferMetadata as BM, select

    cache = BMC()                                  # $HOARD_TARGET, repository "default"
    cache.synchronize_directory("my/directory")
    buffers = cache.get_matching_buffers(select(BM).filter(BM.compression_frq == 8)
                                         .order_by(BM.process))

What changes for a qass user: the cache lives in a hoard daemon (shared, persistent,
indexed in LMDB) instead of an SQL database, so the constructor takes where the daemon is
(``BMC("host:50051", repository="lab")``, or a ``client``) rather than a ``db_url``; a file
is re-extracted when it changes, not only when its path is new; stale entries are removed
without reopening the files; queries are hoard's builder (``hoard.metadata.query``), which
reads like the SQLAlchemy statements qass takes. ``BM.<field>`` is a field reference for
any field a record may hold, not only the buffer header's.

Exceptions: a field no record has is an :class:`~hoard.errors.UnknownFieldError` (an
``AttributeError``, as ``BM.no_such_field`` is in qass), a value of the wrong type a
:class:`~hoard.errors.TypeMismatchError` (a ``TypeError``), any other bad query an
:class:`~hoard.errors.InvalidQueryError` (a ``ValueError``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from hoard.client import Client, connect
from hoard.metadata.client import (
    BufferFile,
    MetadataCache,
    MetadataRecord,
    Query,
    SyncProgress,
)
from hoard.metadata.extractors.buffer import FIELDS as BUFFER_FIELDS
from hoard.metadata.query import Field, M, Select, and_, not_, or_, select
from hoard.metadata.scan import DEFAULT_GLOB, DEFAULT_REGEX

__all__ = [
    "BufferMetadata",
    "BufferMetadataCache",
    "M",
    "and_",
    "not_",
    "or_",
    "select",
]


class _FieldsOnClass(type):
    """``BufferMetadata.process`` is a field reference (qass's ``BM.process`` column)."""

    def __getattr__(cls, name: str) -> Field:
        if name.startswith("_"):
            raise AttributeError(name)
        return Field(name)

    def __getitem__(cls, name: str) -> Field:
        return Field(name)


class BufferMetadata(metaclass=_FieldsOnClass):
    """qass's template of a buffer's metadata: ``BufferMetadata(channel=1, process=3)``
    sets some fields (the rest are None) and :meth:`BufferMetadataCache.get_buffer_metadata_query`
    turns the set ones into equalities. On the class, ``BufferMetadata.channel`` is a field
    reference for queries, as in qass."""

    __hoard_fields__ = True  # select(BufferMetadata) means whole records
    properties: ClassVar[tuple[str, ...]] = tuple(BUFFER_FIELDS)

    def __init__(self, **kwargs: Any) -> None:
        for name in self.properties:
            object.__setattr__(self, name, None)
        for name, value in kwargs.items():
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return None  # an unset field of a template

    def __hoard_example__(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.__hoard_example__().items())
        return f"BufferMetadata({shown})"

    @staticmethod
    def buffer_to_metadata(buffer: Any) -> BufferMetadata:
        """A template holding every field of ``buffer`` (a matching buffer, a record, a
        mapping, or an object with qass's Buffer properties)."""
        if isinstance(buffer, BufferFile):
            values = dict(buffer.metadata)
        elif isinstance(buffer, MetadataRecord | dict):
            values = dict(buffer)
        else:
            values = {n: getattr(buffer, n) for n in BufferMetadata.properties
                      if hasattr(buffer, n)}
        return BufferMetadata(**values)


class BufferMetadataCache:
    """qass's ``BufferMetadataCache`` over a hoard daemon's metadata cache.

    ``target``: the daemon ("host:port", "unix:/path"; None: ``$HOARD_TARGET`` or
    127.0.0.1:50051), or pass a connected ``client``. ``repository`` whose cache it is.
    ``machine_id``: this machine's id (see :class:`~hoard.metadata.client.MetadataCache`).
    ``Buffer_cls``: when given (qass's ``Buffer``), ``get_matching_buffers`` builds
    ``Buffer_cls(path)`` for files on this machine.
    """

    BufferMetadata = BufferMetadata

    def __init__(self, target: str | None = None, Buffer_cls: Any = None, *,
                 client: Client | None = None, repository: str = "default",
                 machine_id: str | None = None) -> None:
        if target is not None and target.startswith(("sqlite:", "postgresql:", "mysql:")):
            raise ValueError(f"{target!r} is an SQL database URL: hoard's cache lives in a "
                             "hoard daemon; pass its address (host:port) or a client")
        self._owns_client = client is None
        self.client = client if client is not None else connect(target)
        self.cache: MetadataCache = self.client.metadata(repository, machine_id=machine_id)
        self.Buffer_cls = Buffer_cls

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> BufferMetadataCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sync -------------------------------------------------------------------------------

    def synchronize_directory(
        self,
        *paths: str | os.PathLike[str],
        sync_subdirectories: bool = True,
        regex_pattern: str = DEFAULT_REGEX,
        verbose: int = 1,
        delete_stale_entries: bool = False,
        machine_id: str | None = None,
        glob_pattern: str = DEFAULT_GLOB,
        batch_size: int | None = None,
        server_side: bool = False,
    ) -> SyncProgress:
        """Synchronise the files under ``paths`` (qass's defaults); ``verbose=1`` shows a
        progress bar when tqdm is installed. Extracted here and pushed, or on the daemon's
        host with ``server_side=True``. Returns the final counts (qass returns None)."""
        with _bar(verbose, "sync") as report:
            return self.cache.synchronize_directory(
                *paths, sync_subdirectories=sync_subdirectories, regex_pattern=regex_pattern,
                delete_stale_entries=delete_stale_entries, machine_id=machine_id,
                glob_pattern=glob_pattern, batch_size=batch_size, server_side=server_side,
                progress=report)

    def add_files_to_cache(self, files: Sequence[str | os.PathLike[str]], verbose: int = 0,
                           batch_size: int = 1000, machine_id: str | None = None,
                           check_synced: bool = True, server_side: bool = False
                           ) -> SyncProgress:
        with _bar(verbose, "add") as report:
            return self.cache.add_files_to_cache(files, machine_id, batch_size, check_synced,
                                                 server_side, progress=report)

    def remove_files_from_cache(self, files: Sequence[str | os.PathLike[str]],
                                verbose: int = 0, machine_id: str | None = None) -> int:
        """Drop the files' records (nothing is opened: deleted files are fine)."""
        return self.cache.remove_files_from_cache(files, machine_id)

    def get_non_synchronized_files(self, files: Sequence[str | os.PathLike[str]],
                                   machine_id: str | None = None
                                   ) -> tuple[list[Path], list[Path]]:
        unsynced, stale = self.cache.get_non_synchronized_files(files, machine_id)
        return [Path(p) for p in unsynced], [Path(p) for p in stale]

    # -- queries ----------------------------------------------------------------------------

    def get_buffer_metadata_query(self, buffer_metadata: Any) -> Select:
        """The query whose conditions are the set fields of ``buffer_metadata``."""
        return self.cache.get_buffer_metadata_query(buffer_metadata)

    def _query(self, query: Query, buffer_metadata: Any) -> Query:
        if buffer_metadata is not None:
            if query is not None:
                raise ValueError("give a query or a buffer_metadata template, not both")
            return self.get_buffer_metadata_query(buffer_metadata)
        return query

    def get_matching_files(self, query: Query = None, buffer_metadata: Any = None,
                           filter_function: Callable[[MetadataRecord], bool] | None = None,
                           sort_key: Callable[[MetadataRecord], Any] | None = None
                           ) -> list[str]:
        """The paths of the matching files in the query's order. qass's deprecated
        ``buffer_metadata``, ``filter_function`` and ``sort_key`` still work (the last two
        run here, on the records)."""
        q = self._query(query, buffer_metadata)
        if filter_function is None and sort_key is None:
            return self.cache.get_matching_files(q)
        records = self.cache.get_matching_metadata(q)
        if filter_function is not None:
            records = [r for r in records if filter_function(r)]
        if sort_key is not None:
            records.sort(key=sort_key)
        return [r.path for r in records]

    def get_matching_metadata(self, query: Query = None, buffer_metadata: Any = None
                              ) -> list[MetadataRecord]:
        return self.cache.get_matching_metadata(self._query(query, buffer_metadata))

    def get_matching_buffers(self, query: Query = None, buffer_metadata: Any = None
                             ) -> list[Any]:
        """The matching files opened: :class:`~hoard.metadata.client.BufferFile` (fields
        plus content, local or streamed), or ``Buffer_cls(path)`` for local files when a
        ``Buffer_cls`` was given."""
        buffers = self.cache.get_matching_buffers(self._query(query, buffer_metadata))
        if self.Buffer_cls is None:
            return buffers
        return [self.Buffer_cls(b.path) if b.is_local else b for b in buffers]

    def count(self, query: Query = None) -> int:
        return self.cache.count(query)


@contextlib.contextmanager
def _bar(verbose: int, label: str) -> Iterator[Callable[[SyncProgress], None] | None]:
    """A tqdm bar of files scanned when ``verbose`` and tqdm is installed, else nothing."""
    if not verbose:
        yield None
        return
    try:
        from tqdm import tqdm
    except ImportError:
        yield None
        return
    bar = tqdm(desc=label, unit="file")

    def report(p: SyncProgress) -> None:
        bar.n = p.scanned
        bar.set_postfix(added=p.added, updated=p.updated, removed=p.removed, failed=p.failed,
                        refresh=False)
        bar.refresh()

    try:
        yield report
    finally:
        bar.close()
