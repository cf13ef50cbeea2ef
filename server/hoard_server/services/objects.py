"""hoard.v1.Objects over a RepositoryRegistry."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import grpc

from hoard.v1 import objects_pb2 as pb
from hoard.v1 import objects_pb2_grpc
from hoard_server.backup import backup, resolve_destination
from hoard_server.errors import InvalidArgument
from hoard_server.services.limits import StreamLimits, batch_messages
from hoard_server.services.status import grpc_errors
from hoard_server.storage.registry import RepositoryRegistry, check_repository_name
from hoard_server.storage.repository import Repository

_MESSAGE_BYTES = 1 << 20  # gather small objects into stream messages of about this size
# ReadMany inlines objects up to this size; larger ones the client reads with Read. With
# _MESSAGE_BYTES this keeps one message under ~5 MiB, whatever inline_limit asks for.
_MAX_INLINE = 4 << 20
_LIST_CHUNK = 10_000
_MAX_RANGE = 16 << 20


def _message(cls, report, **fields):
    """The protobuf message ``cls`` from a typed report (same field names); ``fields``
    replaces the ones that need converting (nested messages)."""
    values = {f.name: getattr(report, f.name) for f in dataclasses.fields(report)}
    return cls(**{**values, **fields})


def _problems(report) -> list:
    return [_message(pb.Problem, p) for p in report.problems]


def _default_limits() -> StreamLimits:
    return StreamLimits(
        {"read": (8, "max_read_streams"), "upload": (8, "max_upload_streams")}, 0, 256 << 20
    )


class ObjectsServicer(objects_pb2_grpc.ObjectsServicer):
    """Long streams (Read, ReadMany, List, Put) run under ``limits``: a stream slot of their
    kind, the idle watchdog and, for responses, the response budget."""

    def __init__(
        self,
        registry: RepositoryRegistry,
        backup_roots: tuple[str, ...] = (),
        limits: StreamLimits | None = None,
    ) -> None:
        self._registry = registry
        self._backup_roots = backup_roots
        self._limits = limits or _default_limits()

    def _repo(self, name: str) -> Repository:
        return self._registry.get(check_repository_name(name))

    @grpc_errors
    def Put(self, request_iterator: Iterator[pb.PutRequest], context: grpc.ServicerContext):
        """An upload counts only if the client ends it properly: with a PutFinish whose size
        matches what arrived, or, without one, having declared a size that matched. A
        stream cut short (which grpc's sync server may present as a normal end of the
        request iterator) stores nothing."""
        with self._limits.stream("upload", context) as stream:
            requests = stream.receive(request_iterator)
            first = next(requests, None)
            if first is None or first.WhichOneof("part") != "header":
                raise InvalidArgument("a Put stream must start with a header naming the repository")
            header = first.header
            repo = self._repo(header.repository)
            size = header.size if header.HasField("size") else None

            def chunks() -> Iterator[bytes]:
                received = 0
                finished = False
                for msg in requests:
                    part = msg.WhichOneof("part")
                    if finished:
                        raise InvalidArgument("PutFinish must be the last message of a Put stream")
                    if part == "chunk":
                        received += len(msg.chunk)
                        yield msg.chunk
                    elif part == "finish":
                        if msg.finish.size != received:
                            raise InvalidArgument(
                                f"PutFinish says {msg.finish.size} bytes but {received} arrived; "
                                "nothing was stored"
                            )
                        finished = True
                    else:
                        raise InvalidArgument(
                            "only the first message of a Put stream may be a header"
                        )
                if not finished and size is None:
                    raise InvalidArgument(
                        f"the upload was incomplete: the stream ended after {received} bytes "
                        "without a PutFinish message (nor a declared size); nothing was stored"
                    )
                if not context.is_active():
                    raise InvalidArgument("the upload was cancelled; nothing was stored")

            key, raw_size, created = repo.put_stream(chunks(), header.expected_key, size)
            return pb.PutResponse(key=key, raw_size=raw_size, created=created)

    @grpc_errors
    def PutBatch(self, request: pb.PutBatchRequest, context: grpc.ServicerContext):
        results = self._repo(request.repository).put_many(list(request.objects))
        return pb.PutBatchResponse(keys=[k for k, _ in results], created=[c for _, c in results])

    @grpc_errors
    def Read(self, request: pb.ReadRequest, context: grpc.ServicerContext):
        with self._limits.stream("read", context) as stream:
            length = request.length if request.HasField("length") else None
            size, chunks = self._repo(request.repository).read(request.key, request.offset, length)
            first = True

            def build(pending: list[bytes]) -> pb.ReadResponse:
                nonlocal first
                data = pending[0] if len(pending) == 1 else b"".join(pending)
                msg = pb.ReadResponse(data=data, object_size=size if first else 0)
                first = False
                return msg

            # frames are 256 KiB; messages of ~1 MiB move faster. An empty range still
            # tells the size.
            yield from stream.send(
                batch_messages(
                    chunks,
                    len,
                    build,
                    self._limits.budget,
                    self._limits.budget_wait,
                    _MESSAGE_BYTES,
                    send_empty=True,
                )
            )

    @grpc_errors
    def ReadRange(self, request: pb.ReadRequest, context: grpc.ServicerContext):
        length = request.length if request.HasField("length") else None
        if length is None or length > _MAX_RANGE:
            raise InvalidArgument(
                f"ReadRange reads at most {_MAX_RANGE} bytes and needs a length; "
                "use Read to stream larger ranges"
            )
        size, chunks = self._repo(request.repository).read(request.key, request.offset, length)
        # The reply stays in grpc's buffers until the client reads it, after this returns:
        # it holds response budget until the RPC ends, so that clients that ask and never
        # read cannot pile replies up without bound. A short call: wait briefly, if at all.
        budget = self._limits.budget
        reserved = budget.acquire(
            min(length, size - request.offset), min(1.0, self._limits.budget_wait)
        )
        try:
            reply = pb.ReadResponse(data=b"".join(chunks), object_size=size)
        except BaseException:
            budget.release(reserved)
            raise
        self._limits.hold_reply(context, reserved)
        return reply

    @grpc_errors
    def ReadMany(self, request: pb.ReadManyRequest, context: grpc.ServicerContext):
        with self._limits.stream("read", context) as stream:
            limit = min(request.inline_limit or _MAX_INLINE, _MAX_INLINE)
            items = self._repo(request.repository).read_many(list(request.keys), limit)

            def build(pending: list[tuple[str, int, bytes | None]]) -> pb.ReadManyResponse:
                return pb.ReadManyResponse(
                    keys=[k for k, _, _ in pending],
                    sizes=[n for _, n, _ in pending],
                    inlined=[c is not None for _, _, c in pending],
                    data=b"".join(c for _, _, c in pending if c is not None),
                )

            yield from stream.send(
                batch_messages(
                    items,
                    lambda item: len(item[2]) if item[2] is not None else 0,
                    build,
                    self._limits.budget,
                    self._limits.budget_wait,
                    _MESSAGE_BYTES,
                    max_items=8192,
                )
            )

    @grpc_errors
    def Has(self, request: pb.HasRequest, context: grpc.ServicerContext):
        return pb.HasResponse(exists=self._repo(request.repository).has_many(list(request.keys)))

    @grpc_errors
    def Stat(self, request: pb.StatRequest, context: grpc.ServicerContext):
        stats = self._repo(request.repository).stat_many(list(request.keys))
        return pb.StatResponse(
            stats=[
                pb.ObjectStat(
                    key=s.key,
                    exists=s.exists,
                    raw_size=s.raw_size,
                    stored_size=s.stored_size,
                    encoding=s.encoding,
                    pack_id=s.pack_id,
                )
                for s in stats
            ]
        )

    @grpc_errors
    def List(self, request: pb.ListRequest, context: grpc.ServicerContext):
        with self._limits.stream("read", context) as stream:
            repo = self._repo(request.repository)
            if request.page_size:
                keys = list(repo.list_keys(request.page_token, request.page_size + 1))
                more = len(keys) > request.page_size
                keys = keys[: request.page_size]
                with stream.waiting():
                    yield pb.ListResponse(keys=keys, next_page_token=keys[-1] if more else "")
                return
            batch: list[str] = []
            for key in repo.list_keys(request.page_token):
                batch.append(key)
                if len(batch) >= _LIST_CHUNK:
                    with stream.waiting():
                        yield pb.ListResponse(keys=batch)
                    batch = []
            if batch:
                with stream.waiting():
                    yield pb.ListResponse(keys=batch)

    @grpc_errors
    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext):
        deleted, missing = self._repo(request.repository).delete_many(
            list(request.keys), require_all=request.require_all
        )
        return pb.DeleteResponse(deleted=deleted, missing=missing)

    @grpc_errors
    def Info(self, request: pb.InfoRequest, context: grpc.ServicerContext):
        info = self._repo(request.repository).info()
        packs = [_message(pb.PackInfo, p) for p in info.packs] if request.detailed else []
        return _message(pb.InfoResponse, info, packs=packs)

    @grpc_errors
    def Maintain(self, request: pb.MaintainRequest, context: grpc.ServicerContext):
        if not 0 <= request.dead_fraction <= 1:
            raise InvalidArgument(f"dead_fraction must lie in [0, 1], not {request.dead_fraction}")
        with self._limits.stream(None, context) as stream:
            progress = self._repo(request.repository).maintain(
                dry_run=request.dry_run,
                dead_fraction=request.dead_fraction,
                max_packs=request.max_packs,
            )
            for p in progress:
                with stream.waiting():
                    yield _message(pb.MaintainProgress, p, problems=_problems(p))
                if not context.is_active():  # cancelled: stop after this pack, state is whole
                    progress.close()
                    return

    @grpc_errors
    def Verify(self, request: pb.VerifyRequest, context: grpc.ServicerContext):
        if not 0 <= request.sample <= 1:
            raise InvalidArgument(f"sample must lie in [0, 1], not {request.sample}")
        with self._limits.stream(None, context) as stream:
            for p in self._repo(request.repository).verify(request.pack_id, request.sample):
                with stream.waiting():
                    yield _message(pb.VerifyProgress, p, problems=_problems(p))

    @grpc_errors
    def Backup(self, request: pb.BackupRequest, context: grpc.ServicerContext):
        root, destination = resolve_destination(
            request.destination, self._backup_roots, self._registry.data_dir
        )
        with self._limits.stream(None, context) as stream:
            for p in backup(self._repo(request.repository), destination, root):
                with stream.waiting():
                    yield _message(pb.BackupProgress, p)
