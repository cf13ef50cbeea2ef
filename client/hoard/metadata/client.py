"""The metadata cache of one repository over a :class:`~hoard.transport.Transport`.

One method per RPC of ``MetadataCache``, Python values in and out (``datetime``, ``None``,
typed progress and replies), streams as iterators; on top, qass's method names:

    cache = client.metadata("default")
    cache.synchronize_directory("/data/run7")            # extracted here, pushed
    cache.get_matching_files(select(M).filter(M.channel == 1, M.process > 100)
                             .order_by(M.process))

**Where a sync runs.** By default on this machine (client-side): the SDK walks the
directories, asks the daemon what it holds for this machine (``Signatures``), extracts only
new or changed files with the shared extractors and pushes the records in batches
(:mod:`hoard.metadata.local_sync`). ``server_side=True`` asks the daemon to do it on its
own host, for directories under its ``--sync-root``\\ s (anything else is
:class:`~hoard.errors.OutsideSyncRootsError`). Both give the same records for the same
files and report the same progress.

**machine_id.** Records are keyed by (machine_id, path); ``""`` is the daemon's own file
system. ``machine_id=None`` means *this machine* (:attr:`MetadataCache.machine_id`):
``$HOARD_MACHINE_ID`` if set, else ``""`` when the daemon is on this machine (a unix socket
or a loopback address: both see the same files), else this host's name. A server-side sync
defaults to ``""``.

**Results.** ``get_matching_files`` gives paths, ``get_matching_metadata`` records
(:class:`MetadataRecord`: a mapping that also reads as attributes, ``r.process``),
``get_matching_buffers`` the files themselves (:class:`BufferFile`: the record plus the
content, read here when the file is on this machine, else streamed from the daemon).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import IO, Any

from hoard.errors import InvalidQueryError, NotFoundError
from hoard.metadata.extractors import Extraction
from hoard.metadata.extractors.base import ExtractorSpec
from hoard.metadata.query import Filter, M, Select, example_filter, select
from hoard.metadata.records import FileRecord, FileSignature, Value
from hoard.metadata.scan import DEFAULT_GLOB, DEFAULT_REGEX
from hoard.metadata.wire import from_record, from_signature, to_record
from hoard.transport import Transport, is_local_target
from hoard.v1 import metadata_pb2 as pb

__all__ = [
    "MAX_PUSH",
    "BufferFile",
    "FieldSchema",
    "MetadataCache",
    "MetadataRecord",
    "QueryPage",
    "SignatureEntry",
    "SyncProgress",
    "WriteCounts",
    "default_machine_id",
]

MAX_PUSH = 10_000  # records per PushRecords call: the daemon's limit (one transaction)

Query = Select | Filter | str | None
"""What the query methods take: a :class:`Select`, a bare condition, the text form
(``"channel == 1 and process > 100"``) or None (every record)."""


def default_machine_id(target: str) -> str:
    """This machine's id for a daemon at ``target``: ``$HOARD_MACHINE_ID``, else ``""`` when
    the daemon runs here (it sees the same files), else the host name."""
    configured = os.environ.get("HOARD_MACHINE_ID")
    if configured is not None:
        return configured
    return "" if is_local_target(target) else socket.gethostname()


def as_select(query: Query) -> Select:
    if isinstance(query, Select):
        return query
    if query is None:
        return select(M)
    return select(M).filter(query)


# -- typed replies ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncProgress:
    """Counts so far: files looked at, records added, updated (the file changed), removed,
    written with a parse failure, and files skipped as unchanged. The last report of a run
    has ``done``."""

    scanned: int = 0
    added: int = 0
    updated: int = 0
    removed: int = 0
    failed: int = 0
    unchanged: int = 0
    done: bool = False

    @classmethod
    def from_message(cls, m: pb.SyncProgress) -> SyncProgress:
        return cls(m.scanned, m.added, m.updated, m.removed, m.failed, m.unchanged, m.done)

    def __add__(self, other: SyncProgress) -> SyncProgress:
        return SyncProgress(self.scanned + other.scanned, self.added + other.added,
                            self.updated + other.updated, self.removed + other.removed,
                            self.failed + other.failed, self.unchanged + other.unchanged,
                            other.done)


@dataclass(frozen=True)
class WriteCounts:
    added: int = 0
    updated: int = 0
    removed: int = 0

    @classmethod
    def from_message(cls, m: pb.WriteCounts) -> WriteCounts:
        return cls(m.added, m.updated, m.removed)

    def __add__(self, other: WriteCounts) -> WriteCounts:
        return WriteCounts(self.added + other.added, self.updated + other.updated,
                           self.removed + other.removed)


@dataclass(frozen=True)
class SignatureEntry:
    """What the cache holds for one file: its signature when extracted, and whether it
    failed to parse."""

    path: str
    signature: FileSignature
    failed: bool


@dataclass(frozen=True)
class FieldSchema:
    """A field, how many records hold it, and how many hold each type ("int", "float",
    "str", "bool", "datetime", "null")."""

    name: str
    types: dict[str, int]
    total: int

    @property
    def type(self) -> str:
        """The most common type other than null ("null" when it holds only nulls)."""
        held = {t: n for t, n in self.types.items() if t != "null"} or self.types
        return max(held, key=lambda t: held[t]) if held else "null"


class MetadataRecord(Mapping[str, Value]):
    """One result: a mapping of field names to values, the built-in fields (path,
    directory_path, filename, machine_id, error) included; also readable as attributes
    (``record.process``), as qass's ``BufferMetadata`` objects are."""

    __slots__ = ("_fields", "record")

    def __init__(self, record: FileRecord, fields: Mapping[str, Value] | None = None) -> None:
        self.record = record
        self._fields = dict(fields) if fields is not None else record.all_fields()

    @property
    def path(self) -> str:
        return self.record.path

    @property
    def machine_id(self) -> str:
        return self.record.machine_id

    @property
    def error(self) -> str | None:
        return self.record.error

    def __getitem__(self, name: str) -> Value:
        return self._fields[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __getattr__(self, name: str) -> Value:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(f"the record of {self.record.path!r} has no field {name!r}"
                                 ) from None

    def __repr__(self) -> str:
        return f"MetadataRecord({self.record.path!r}, {len(self._fields)} fields)"

    def to_dict(self) -> dict[str, Value]:
        return dict(self._fields)


@dataclass
class QueryPage:
    """One page of results; ``next_page_token`` is "" on the last page."""

    records: list[MetadataRecord] = field(default_factory=list)
    next_page_token: str = ""


class BufferFile:
    """A matching file, opened: its record's fields (``buf.process``, ``buf["channel"]``)
    and its content, read on first use (from the local file when it is on this machine,
    else streamed from the daemon)."""

    def __init__(self, cache: MetadataCache, metadata: MetadataRecord) -> None:
        self.metadata = metadata
        self._cache = cache

    @property
    def path(self) -> str:
        return self.metadata.path

    @property
    def machine_id(self) -> str:
        return self.metadata.machine_id

    @property
    def is_local(self) -> bool:
        """Whether the file is read from this machine's disk."""
        return self.machine_id == self._cache.machine_id and os.path.isfile(self.path)

    @cached_property
    def content(self) -> bytes:
        return self._cache.read_file(self.path, machine_id=self.machine_id)

    def open(self) -> IO[bytes]:
        """A binary handle on the content (the local file itself when there is one)."""
        if self.is_local:
            return open(self.path, "rb")
        import io

        return io.BytesIO(self.content)

    def __getitem__(self, name: str) -> Value:
        return self.metadata[name]

    def __getattr__(self, name: str) -> Value:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.metadata, name)

    def __repr__(self) -> str:
        return f"BufferFile({self.path!r}, machine_id={self.machine_id!r})"


# -- the client ----------------------------------------------------------------------------------

ProgressCallback = Callable[[SyncProgress], None]


class MetadataCache:
    """The metadata cache of ``repository`` (no call is made until a method is)."""

    def __init__(self, transport: Transport, repository: str = "default", *,
                 machine_id: str | None = None,
                 extractors: Iterable[ExtractorSpec] = ("buffer",)) -> None:
        self.transport = transport
        self.repository = repository
        self.machine_id = (default_machine_id(transport.target) if machine_id is None
                           else machine_id)
        self.extractors = tuple(extractors)

    def __repr__(self) -> str:
        return (f"<hoard.MetadataCache repository={self.repository!r} "
                f"machine_id={self.machine_id!r}>")

    def _machine(self, machine_id: str | None) -> str:
        return self.machine_id if machine_id is None else machine_id

    # -- sync ----------------------------------------------------------------------------------

    def iter_synchronize_directory(
        self,
        *paths: str | os.PathLike[str],
        sync_subdirectories: bool = True,
        regex_pattern: str = DEFAULT_REGEX,
        delete_stale_entries: bool = False,
        machine_id: str | None = None,
        glob_pattern: str = DEFAULT_GLOB,
        batch_size: int | None = None,
        server_side: bool = False,
    ) -> Iterator[SyncProgress]:
        """qass's ``synchronize_directory``, its progress as an iterator (the last report
        has ``done``). Nothing happens until it is iterated."""
        if server_side:
            request = pb.SyncRequest(
                repository=self.repository, paths=[os.fspath(p) for p in paths],
                sync_subdirectories=sync_subdirectories, regex_pattern=regex_pattern,
                delete_stale_entries=delete_stale_entries, machine_id=machine_id or "",
                glob_pattern=glob_pattern, batch_size=batch_size or 0)
            for message in self.transport.server_stream("MetadataCache.SynchronizeDirectory",
                                                        request):
                yield SyncProgress.from_message(message)
            return
        yield from self._local().synchronize_directory(
            *paths, sync_subdirectories=sync_subdirectories, regex_pattern=regex_pattern,
            delete_stale_entries=delete_stale_entries, machine_id=self._machine(machine_id),
            glob_pattern=glob_pattern, batch_size=batch_size)

    def synchronize_directory(
        self,
        *paths: str | os.PathLike[str],
        sync_subdirectories: bool = True,
        regex_pattern: str = DEFAULT_REGEX,
        delete_stale_entries: bool = False,
        machine_id: str | None = None,
        glob_pattern: str = DEFAULT_GLOB,
        batch_size: int | None = None,
        server_side: bool = False,
        progress: ProgressCallback | None = None,
    ) -> SyncProgress:
        """Bring the cache in step with the files under ``paths``; the final counts.
        ``progress`` is called with each report. See :meth:`iter_synchronize_directory`."""
        return _drain(self.iter_synchronize_directory(
            *paths, sync_subdirectories=sync_subdirectories, regex_pattern=regex_pattern,
            delete_stale_entries=delete_stale_entries, machine_id=machine_id,
            glob_pattern=glob_pattern, batch_size=batch_size, server_side=server_side),
            progress)

    def iter_add_files_to_cache(
        self,
        files: Sequence[str | os.PathLike[str]],
        machine_id: str | None = None,
        batch_size: int | None = None,
        check_synced: bool = True,
        server_side: bool = False,
    ) -> Iterator[SyncProgress]:
        """qass's ``add_files_to_cache`` as a progress iterator: extract these files (only
        those not in step with the cache, unless ``check_synced`` is False)."""
        if server_side:
            request = pb.AddFilesRequest(repository=self.repository,
                                         files=[os.fspath(f) for f in files],
                                         machine_id=machine_id or "",
                                         batch_size=batch_size or 0)
            for message in self.transport.server_stream("MetadataCache.AddFiles", request):
                yield SyncProgress.from_message(message)
            return
        yield from self._local().add_files(files, self._machine(machine_id), batch_size,
                                           check_synced)

    def add_files_to_cache(
        self,
        files: Sequence[str | os.PathLike[str]],
        machine_id: str | None = None,
        batch_size: int | None = None,
        check_synced: bool = True,
        server_side: bool = False,
        progress: ProgressCallback | None = None,
    ) -> SyncProgress:
        """Extract and add these files; the final counts."""
        return _drain(self.iter_add_files_to_cache(files, machine_id, batch_size, check_synced,
                                                   server_side), progress)

    def remove_files_from_cache(self, files: Iterable[str | os.PathLike[str]],
                                machine_id: str | None = None) -> int:
        """Drop these files' records (by path; nothing is opened); how many there were."""
        request = pb.RemoveFilesFromCacheRequest(
            repository=self.repository, files=[_absolute(f) for f in files],
            machine_id=self._machine(machine_id))
        reply = self.transport.unary("MetadataCache.RemoveFiles", request)
        return int(reply.removed)

    def get_non_synchronized_files(
        self, files: Sequence[str | os.PathLike[str]], machine_id: str | None = None,
        server_side: bool = False,
    ) -> tuple[list[str], list[str]]:
        """(files not in step with the cache: new or changed since extracted; records of
        ``machine_id`` whose path is not among ``files``), as qass defines them: pass the
        whole listing. Files are looked at here, or on the daemon's host with
        ``server_side``."""
        if server_side:
            request = pb.NonSynchronizedRequest(repository=self.repository,
                                                files=[os.fspath(f) for f in files],
                                                machine_id=machine_id or "")
            reply = self.transport.unary("MetadataCache.GetNonSynchronizedFiles", request)
            return list(reply.unsynchronized), list(reply.stale)
        return self._local().non_synchronized(files, self._machine(machine_id))

    def _local(self) -> Any:
        from hoard.metadata.local_sync import LocalSync

        return LocalSync(self, Extraction(self.extractors))

    # -- the client-side sync's RPCs ---------------------------------------------------------

    def signatures(self, machine_id: str | None = None, under: str = ""
                   ) -> Iterator[SignatureEntry]:
        """What the cache holds for ``machine_id`` (paths starting with ``under``), in path
        order."""
        request = pb.SignaturesRequest(repository=self.repository,
                                       machine_id=self._machine(machine_id), under=under)
        for message in self.transport.server_stream("MetadataCache.Signatures", request):
            for e in message.entries:
                yield SignatureEntry(e.path, from_signature(e.signature), e.failed)

    def push_records(self, records: Iterable[FileRecord], machine_id: str | None = None
                     ) -> WriteCounts:
        """Store records extracted elsewhere under ``machine_id``, replacing those of the
        same paths; sent in calls of at most :data:`MAX_PUSH` (each one transaction)."""
        machine = self._machine(machine_id)
        total = WriteCounts()
        batch: list[pb.Record] = []
        for record in records:
            batch.append(to_record(record))
            if len(batch) >= MAX_PUSH:
                total += self._push(batch, machine)
                batch = []
        if batch:
            total += self._push(batch, machine)
        return total

    def _push(self, batch: list[pb.Record], machine: str) -> WriteCounts:
        return WriteCounts.from_message(self.transport.unary(
            "MetadataCache.PushRecords", self.push_request(batch, machine)))

    def push_request(self, batch: list[pb.Record], machine: str) -> pb.PushRecordsRequest:
        return pb.PushRecordsRequest(repository=self.repository, machine_id=machine,
                                     records=batch)

    def remove_records(self, paths: Iterable[str], machine_id: str | None = None
                       ) -> WriteCounts:
        """Drop the records of these exact paths of ``machine_id``."""
        request = pb.RemoveRecordsRequest(repository=self.repository,
                                          machine_id=self._machine(machine_id),
                                          paths=list(paths))
        return WriteCounts.from_message(self.transport.unary("MetadataCache.RemoveRecords",
                                                             request))

    # -- queries ------------------------------------------------------------------------------

    def query(self, query: Query = None, *, output: str | None = None
              ) -> Iterator[MetadataRecord]:
        """Every matching record in the query's order, streamed. ``output``: "paths",
        "records" or "fields" (default: what the select asked for)."""
        q = as_select(query)
        if q.limit_value == 0:  # on the wire 0 means no limit
            return
        request = q.to_request(self.repository, output=output)
        for message in self.transport.server_stream("MetadataCache.Query", request):
            for r in message.records:
                yield _result(r, q, request.output)

    def page(self, query: Query, size: int, page_token: str = "", *,
             output: str | None = None) -> QueryPage:
        """One page of at most ``size`` results from ``page_token`` ("" : the start)."""
        q = as_select(query)
        if size <= 0:
            raise InvalidQueryError(f"a page holds at least one result, not {size}",
                                    reason="INVALID_QUERY")
        request = q.to_request(self.repository, output=output, limit=size,
                               page_token=page_token)
        page = QueryPage()
        for message in self.transport.server_stream("MetadataCache.Query", request):
            page.records.extend(_result(r, q, request.output) for r in message.records)
            if message.next_page_token:
                page.next_page_token = message.next_page_token
        return page

    def pages(self, query: Query, size: int, *, output: str | None = None
              ) -> Iterator[QueryPage]:
        """Every page of ``size`` results, each fetched when the previous one is used up."""
        token = ""
        while True:
            page = self.page(query, size, token, output=output)
            if page.records or not token:
                yield page
            if not page.next_page_token:
                return
            token = page.next_page_token

    def get_matching_files(self, query: Query = None) -> list[str]:
        """The paths of the matching files, in the query's order."""
        return [r.path for r in self.query(query, output="paths")]

    def get_matching_metadata(self, query: Query = None) -> list[MetadataRecord]:
        """The matching records (whole, or the fields the select names)."""
        return list(self.query(query))

    def get_matching_buffers(self, query: Query = None) -> list[BufferFile]:
        """The matching files, opened: their fields, and their content on first use."""
        return [BufferFile(self, r) for r in self.query(query, output="records")]

    @staticmethod
    def get_buffer_metadata_query(example: Any) -> Select:
        """qass's query by example: the set (non-None) fields of ``example`` (a mapping, a
        record, or an object such as qass's ``BufferMetadata``) become == conditions."""
        return select(M).filter(*_example_conditions(example))

    def count(self, query: Query = None) -> int:
        """How many records match (the select's order and limit play no part)."""
        request = as_select(query).count_request(self.repository)
        return int(self.transport.unary("MetadataCache.Count", request).count)

    def schema(self) -> list[FieldSchema]:
        """Every field, with how many records hold a value of each type."""
        reply = self.transport.unary("MetadataCache.Schema",
                                     pb.SchemaRequest(repository=self.repository))
        return [FieldSchema(f.name, {t.type: int(t.count) for t in f.types}, int(f.total))
                for f in reply.fields]

    # -- content ------------------------------------------------------------------------------

    def iter_read_file(self, path: str) -> Iterator[bytes]:
        """The content of an indexed file on the daemon's host, in chunks."""
        request = pb.ReadFileRequest(repository=self.repository, path=path)
        for chunk in self.transport.server_stream("MetadataCache.ReadFile", request):
            yield chunk.data

    def read_file(self, path: str, machine_id: str | None = None) -> bytes:
        """A file's content: from this machine's disk when the file is this machine's
        (``machine_id``, default this machine) and there, else from the daemon (files of
        its own file system under its sync roots)."""
        machine = self._machine(machine_id)
        if machine == self.machine_id and os.path.isfile(path):
            with open(path, "rb") as handle:
                return handle.read()
        if machine != "":
            raise NotFoundError(
                f"{path!r} is a file of machine {machine!r}, not of this one "
                f"({self.machine_id!r}) nor of the daemon: read it on that machine",
                reason="FILE_ON_OTHER_MACHINE", details={"path": path, "machine_id": machine})
        return b"".join(self.iter_read_file(path))


def _drain(progress: Iterator[SyncProgress], callback: ProgressCallback | None) -> SyncProgress:
    last = SyncProgress(done=True)
    for report in progress:
        last = report
        if callback is not None:
            callback(report)
    return last


def _absolute(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(os.fspath(path))


def _result(message: pb.Record, query: Select, output: str) -> MetadataRecord:
    record = from_record(message)
    if output != "fields":
        return MetadataRecord(record)
    builtin = record.builtin_fields()
    asked = query.fields or ()
    fields = {name: record.fields.get(name, builtin.get(name)) for name in asked}
    fields.setdefault("path", record.path)
    return MetadataRecord(record, fields)


def _example_conditions(example: Any) -> list[Filter]:
    if isinstance(example, Mapping):
        values = dict(example)
    elif hasattr(example, "__hoard_example__"):
        values = example.__hoard_example__()
    else:
        values = {k: v for k, v in vars(example).items() if not k.startswith("_")}
    cond = example_filter(values)
    return [] if cond is None else [cond]

