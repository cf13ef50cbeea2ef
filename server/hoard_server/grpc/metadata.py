"""hoard.v1.MetadataCache: protobuf in, ``MetadataCache`` calls, protobuf out.

The one place a ``Filter``, a ``FieldValue`` or a ``Record`` becomes an engine value and
back. Streams run under ``limits``: SynchronizeDirectory and AddFiles take an "upload" slot
(they write), Query, Signatures and ReadFile a "read" slot; each wait on the client is
watched for idleness. A sync whose client goes away stops at the next batch boundary (each
batch is one transaction, so the index stays consistent); records already written stay.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import grpc

from hoard.metadata.records import (
    BUILTIN_FIELDS,
    INT64_MIN,
    FileRecord,
    FileSignature,
    Value,
    datetime_to_micros,
    micros_to_datetime,
)
from hoard.metadata.scan import DEFAULT_GLOB, DEFAULT_REGEX
from hoard.v1 import metadata_pb2 as pb
from hoard.v1 import metadata_pb2_grpc
from hoard_server.errors import InvalidArgument
from hoard_server.grpc.limits import Stream, StreamLimits
from hoard_server.grpc.messages import to_message
from hoard_server.grpc.status import grpc_errors
from hoard_server.services.metadata import filters as f
from hoard_server.services.metadata.query import ALL_FIELDS, Match, MetadataQuery, OrderBy
from hoard_server.services.metadata.service import MetadataService
from hoard_server.services.metadata.sync import SyncProgress

INT64_MAX = (1 << 63) - 1
MESSAGE_BYTES = 1 << 20  # a streamed message holds about this much (records, signatures)
SIGNATURES_PER_MESSAGE = 5000
OUTPUTS = {"": None, "paths": None, "records": ALL_FIELDS}


# -- values, filters, records -------------------------------------------------------------
def _value_in(v: pb.FieldValue, reason: str, where: str) -> Value:
    kind = v.WhichOneof("kind")
    if kind is None:
        raise InvalidArgument(f"{where}: a FieldValue without a value (set one of null, "
                              f"int_value, float_value, ...)", reason=reason)
    if kind == "null":
        return None
    if kind == "datetime_micros":
        try:
            return micros_to_datetime(v.datetime_micros)
        except OverflowError:
            raise InvalidArgument(f"{where}: datetime_micros {v.datetime_micros} is outside "
                                  f"the years 1-9999", reason=reason) from None
    return getattr(v, kind)


def _value_out(value: Value) -> pb.FieldValue:
    if value is None:
        return pb.FieldValue(null=True)
    if isinstance(value, bool):
        return pb.FieldValue(bool_value=value)
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return pb.FieldValue(int_value=value)
        return pb.FieldValue(uint_value=value)
    if isinstance(value, float):
        return pb.FieldValue(float_value=value)
    if isinstance(value, str):
        return pb.FieldValue(string_value=value)
    return pb.FieldValue(datetime_micros=datetime_to_micros(value))


def _bad_query(message: str) -> InvalidArgument:
    return InvalidArgument(f"invalid filter: {message}", reason="INVALID_QUERY")


def _filter_in(msg: pb.Filter) -> f.Expr:
    node = msg.WhichOneof("node")
    if node == "condition":
        return _condition_in(msg.condition)
    if node in ("all", "any"):
        parts = tuple(_filter_in(p) for p in getattr(msg, node).filters)
        if not parts:
            raise _bad_query(f"'{node}' needs at least one filter")
        return f.And(parts) if node == "all" else f.Or(parts)
    if node == "not":
        return f.Not(_filter_in(getattr(msg, "not")))
    raise _bad_query("an empty Filter (set condition, all, any or not)")


def _condition_in(c: pb.Condition) -> f.Expr:
    if not c.field:
        raise _bad_query("a condition without a field")
    where = f"field {c.field!r}"
    values = [_value_in(v, "INVALID_QUERY", where) for v in c.values]
    if c.op == "in":
        return f.In(c.field, tuple(values))
    if len(values) != 1:
        raise _bad_query(f"{where}: {c.op!r} takes one value, not {len(values)}")
    if c.op == "prefix":
        if not isinstance(values[0], str):
            raise _bad_query(f"{where}: prefix takes a string")
        return f.Prefix(c.field, values[0])
    if c.op not in f.OPS:
        raise _bad_query(f"unknown operator {c.op!r} (use one of "
                         f"{', '.join([*f.OPS, 'in', 'prefix'])})")
    return f.Compare(c.field, c.op, values[0])


def _expr(request: pb.QueryRequest | pb.CountRequest) -> f.Expr | None:
    structured = request.HasField("filter")
    if structured and request.text:
        raise _bad_query("give a structured filter or its text form, not both")
    if structured:
        return _filter_in(request.filter)
    return f.parse(request.text) if request.text else None


def _query_in(request: pb.QueryRequest) -> MetadataQuery:
    if request.output == "fields":
        if not request.fields:
            raise _bad_query("output 'fields' needs the names of the fields to return")
        fields: tuple[str, ...] | None = tuple(request.fields)
    elif request.output in OUTPUTS:
        fields = OUTPUTS[request.output]
    else:
        raise _bad_query(f"unknown output {request.output!r} (paths, records or fields)")
    return MetadataQuery(
        filter=_expr(request),
        order_by=tuple(OrderBy(o.field, o.descending) for o in request.order_by),
        limit=request.limit or None,
        resume_token=request.page_token or None,
        fields=fields,
    )


def _record_out(m: Match, whole: bool) -> pb.Record:
    """A match as a Record; a whole record's built-in fields are implied by its
    machine_id, path and error (the contract), fields asked for by name are all sent."""
    return next(_records_out([m], ALL_FIELDS if whole else ()))


def _records_out(matches: Iterable[Match], wanted: tuple[str, ...] | None
                 ) -> Iterator[pb.Record]:
    """Records of matches, each distinct value made into a FieldValue once (the fields of
    a buffer repeat a few values: channels, rates, part numbers)."""
    whole = wanted == ALL_FIELDS
    made: dict[tuple[type, object], pb.FieldValue] = {}
    record = pb.Record
    for m in matches:
        fields = {}
        for name, value in (m.fields or {}).items():
            if whole and name in BUILTIN_FIELDS:
                continue
            key = (type(value), value)  # True == 1 == 1.0: each is sent as itself
            out = made.get(key)
            if out is None:
                out = made[key] = _value_out(value)
                if len(made) > 100_000:
                    made.clear()
            fields[name] = out
        error = m.error
        yield record(machine_id=m.machine_id, path=m.path, has_error=error is not None,
                     error=error or "", fields=fields)


def _record_in(msg: pb.Record) -> FileRecord:
    where = f"record {msg.path!r}"
    s = msg.signature
    return FileRecord(
        path=msg.path,
        signature=FileSignature(s.size, s.mtime_ns, s.ctime_ns, s.inode),
        fields={k: _value_in(v, "INVALID_VALUE", f"{where}, field {k!r}")
                for k, v in msg.fields.items()},
        error=msg.error if msg.has_error else None,
    )


def _signature_out(sig: FileSignature) -> pb.FileSignature:
    return pb.FileSignature(size=sig.size, mtime_ns=sig.mtime_ns, ctime_ns=sig.ctime_ns,
                            inode=sig.inode)


# -- streaming ------------------------------------------------------------------------------
def _pages(records: Iterable[pb.Record]) -> Iterator[list[pb.Record]]:
    """Records grouped into messages of about ``MESSAGE_BYTES``."""
    page: list[pb.Record] = []
    size = 0
    for record in records:
        page.append(record)
        size += record.ByteSize()
        if size >= MESSAGE_BYTES:
            yield page
            page, size = [], 0
    if page:
        yield page


def _send(stream: Stream, messages: Iterable[object]) -> Iterator[object]:
    for msg in messages:
        with stream.waiting():
            yield msg


def _progress(stream: Stream, context: grpc.ServicerContext,
              progress: Iterator[SyncProgress]) -> Iterator[pb.SyncProgress]:
    """Progress messages until the sync is done or the client has gone; a sync whose
    client went away is closed at its batch boundary."""
    try:
        for p in progress:
            if not context.is_active():
                return
            with stream.waiting():
                yield to_message(pb.SyncProgress, p)
    finally:
        progress.close()  # type: ignore[attr-defined]


class MetadataCacheServicer(metadata_pb2_grpc.MetadataCacheServicer):
    def __init__(self, metadata: MetadataService, limits: StreamLimits) -> None:
        self._metadata = metadata
        self._limits = limits

    @grpc_errors
    def SynchronizeDirectory(self, request: pb.SyncRequest, context: grpc.ServicerContext):
        cache = self._metadata.cache(request.repository, adding=True)
        with self._limits.stream("upload", context) as stream:
            progress = cache.synchronize_directory(
                *request.paths,
                sync_subdirectories=request.sync_subdirectories,
                regex_pattern=request.regex_pattern or DEFAULT_REGEX,
                delete_stale_entries=request.delete_stale_entries,
                machine_id=request.machine_id or None,
                glob_pattern=request.glob_pattern or DEFAULT_GLOB,
                batch_size=request.batch_size or None,
            )
            yield from _progress(stream, context, progress)

    @grpc_errors
    def AddFiles(self, request: pb.AddFilesRequest, context: grpc.ServicerContext):
        cache = self._metadata.cache(request.repository, adding=True)
        with self._limits.stream("upload", context) as stream:
            progress = cache.add_files_to_cache(list(request.files), request.machine_id or None,
                                                request.batch_size or None)
            yield from _progress(stream, context, progress)

    @grpc_errors
    def RemoveFiles(self, request: pb.RemoveFilesFromCacheRequest,
                    context: grpc.ServicerContext):
        removed = self._metadata.cache(request.repository).remove_files_from_cache(
            list(request.files), request.machine_id or None)
        return pb.RemoveFilesFromCacheResponse(removed=removed)

    @grpc_errors
    def GetNonSynchronizedFiles(self, request: pb.NonSynchronizedRequest,
                                context: grpc.ServicerContext):
        unsynchronized, stale = self._metadata.cache(request.repository) \
            .get_non_synchronized_files(list(request.files), request.machine_id or None)
        return pb.NonSynchronizedResponse(unsynchronized=unsynchronized, stale=stale)

    @grpc_errors
    def Signatures(self, request: pb.SignaturesRequest, context: grpc.ServicerContext):
        cache = self._metadata.cache(request.repository)
        with self._limits.stream("read", context) as stream:
            entries = cache.signatures(request.machine_id, request.under or None)
            yield from _send(stream, cache.held(_signature_pages(entries)))

    @grpc_errors
    def PushRecords(self, request: pb.PushRecordsRequest, context: grpc.ServicerContext):
        cache = self._metadata.cache(request.repository, adding=True)
        records = [_record_in(r) for r in request.records]
        counts = cache.push_records(records, request.machine_id)
        return pb.WriteCounts(added=counts.added, updated=counts.updated, removed=counts.removed)

    @grpc_errors
    def RemoveRecords(self, request: pb.RemoveRecordsRequest, context: grpc.ServicerContext):
        counts = self._metadata.cache(request.repository).remove_records(
            list(request.paths), request.machine_id)
        return pb.WriteCounts(added=counts.added, updated=counts.updated, removed=counts.removed)

    @grpc_errors
    def Query(self, request: pb.QueryRequest, context: grpc.ServicerContext):
        cache = self._metadata.cache(request.repository)
        query = _query_in(request)
        with self._limits.stream("read", context) as stream:
            if query.limit is not None:  # one page, ending with its token
                if query.fields is None:
                    locations, token = cache.query_locations(query)
                    pages = list(_location_pages(locations)) or [[]]
                else:
                    page = cache.query(query)
                    token = page.next_token
                    pages = list(_pages(_records_out(page.items, query.fields))) or [[]]
                last = len(pages) - 1
                yield from _send(stream, (
                    pb.QueryResponse(records=p, next_page_token=(
                        token or "" if i == last else ""))
                    for i, p in enumerate(pages)))
            else:  # every match, from the token on, a message's worth under each hold
                if query.fields is None:
                    every = _location_pages(cache.queries.iter_locations(query))
                else:
                    every = _pages(_records_out(cache.queries.iter_all(query), query.fields))
                # a bad query fails at the first page, before any message; each page is
                # built within the response budget (stalled readers hold no more)
                messages = (pb.QueryResponse(records=p) for p in cache.held(every))
                yield from stream.send_reserving(_or_empty(messages), 2 * MESSAGE_BYTES)

    @grpc_errors
    def Count(self, request: pb.CountRequest, context: grpc.ServicerContext):
        count = self._metadata.cache(request.repository).count(_expr(request))
        return pb.CountResponse(count=count)

    @grpc_errors
    def Schema(self, request: pb.SchemaRequest, context: grpc.ServicerContext):
        fields = []
        for info in self._metadata.cache(request.repository).schema():
            types = [pb.FieldTypeCount(type=t.label, count=n)
                     for t, n in info.counts.items() if n]
            fields.append(pb.FieldSchema(name=info.name, types=types, total=info.total))
        return pb.SchemaResponse(fields=fields)

    @grpc_errors
    def ReadFile(self, request: pb.ReadFileRequest, context: grpc.ServicerContext):
        cache = self._metadata.cache(request.repository)
        with self._limits.stream("read", context) as stream:
            size, chunks = cache.read_file(request.path)
            first = True
            for data in chunks:
                with stream.waiting():
                    yield pb.ReadFileChunk(data=data, size=size if first else 0)
                first = False
            if first:  # an empty file: one message with its size
                yield pb.ReadFileChunk(size=0)


def _or_empty(messages: Iterator[pb.QueryResponse]) -> Iterator[pb.QueryResponse]:
    """The messages, or one empty message if there are none (a stream says "no match" so)."""
    any_sent = False
    for msg in messages:
        any_sent = True
        yield msg
    if not any_sent:
        yield pb.QueryResponse()


def _location_pages(locations: Iterable[tuple[str, str]]) -> Iterator[list[pb.Record]]:
    """(machine_id, path) pairs as Records, grouped into messages of about
    ``MESSAGE_BYTES`` (each one's size estimated, not measured)."""
    page: list[pb.Record] = []
    size = 0
    record = pb.Record
    for machine, path in locations:
        page.append(record(machine_id=machine, path=path))
        size += len(path) + len(machine) + 8
        if size >= MESSAGE_BYTES:
            yield page
            page, size = [], 0
    if page:
        yield page


def _signature_pages(entries: Iterable[tuple[str, FileSignature, bool]]
                     ) -> Iterator[pb.SignaturesResponse]:
    page: list[pb.SignatureEntry] = []
    for path, sig, failed in entries:
        page.append(pb.SignatureEntry(path=path, signature=_signature_out(sig), failed=failed))
        if len(page) >= SIGNATURES_PER_MESSAGE:
            yield pb.SignaturesResponse(entries=page)
            page = []
    if page:
        yield pb.SignaturesResponse(entries=page)
