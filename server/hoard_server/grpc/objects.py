"""hoard.v1.Objects: protobuf in, ``ObjectService`` calls, protobuf out.

Long streams (Read, ReadMany, List, Put, and the maintenance streams) run under ``limits``:
a stream slot of their kind, the idle watchdog and, for replies, the response budget.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from hoard.v1 import objects_pb2 as pb
from hoard.v1 import objects_pb2_grpc
from hoard_server.grpc.limits import StreamLimits
from hoard_server.grpc.messages import to_message
from hoard_server.grpc.status import grpc_errors
from hoard_server.services.objects import ObjectService, PutFinish, PutHeader, PutPart


def _put_part(msg: pb.PutRequest) -> PutPart:
    part = msg.WhichOneof("part")
    if part == "chunk":
        return msg.chunk
    if part == "header":
        h = msg.header
        return PutHeader(h.repository, h.expected_key, h.size if h.HasField("size") else None)
    if part == "finish":
        return PutFinish(msg.finish.size)
    return None


def _length(request: pb.ReadRequest) -> int | None:
    return request.length if request.HasField("length") else None


class ObjectsServicer(objects_pb2_grpc.ObjectsServicer):
    def __init__(self, objects: ObjectService, limits: StreamLimits) -> None:
        self._objects = objects
        self._limits = limits

    @grpc_errors
    def Put(self, request_iterator: Iterator[pb.PutRequest], context: grpc.ServicerContext):
        with self._limits.stream("upload", context) as stream:
            parts = (_put_part(m) for m in stream.receive(request_iterator))
            stored = self._objects.put(parts, context.is_active)
            return pb.PutResponse(key=stored.key, raw_size=stored.raw_size, created=stored.created)

    @grpc_errors
    def PutBatch(self, request: pb.PutBatchRequest, context: grpc.ServicerContext):
        stored = self._objects.put_batch(request.repository, list(request.objects))
        return pb.PutBatchResponse(
            keys=[s.key for s in stored], created=[s.created for s in stored]
        )

    @grpc_errors
    def Read(self, request: pb.ReadRequest, context: grpc.ServicerContext):
        with self._limits.stream("read", context) as stream:
            size, batches = self._objects.read(
                request.repository, request.key, request.offset, _length(request)
            )

            def messages() -> Iterator[tuple[pb.ReadResponse, int]]:
                first = True
                for b in batches:
                    data = b.items[0] if len(b.items) == 1 else b"".join(b.items)
                    yield pb.ReadResponse(data=data, object_size=size if first else 0), b.reserved
                    first = False

            yield from stream.send(messages())

    @grpc_errors
    def ReadRange(self, request: pb.ReadRequest, context: grpc.ServicerContext):
        reply = self._objects.read_range(
            request.repository, request.key, request.offset, _length(request)
        )
        # The reply stays in grpc's buffers until the client reads it, after this returns:
        # its budget is held until the RPC ends, so that clients that ask and never read
        # cannot pile replies up without bound.
        try:
            message = pb.ReadResponse(data=reply.data, object_size=reply.object_size)
        except BaseException:
            self._limits.budget.release(reply.reserved)
            raise
        self._limits.hold_reply(context, reply.reserved)
        return message

    @grpc_errors
    def ReadMany(self, request: pb.ReadManyRequest, context: grpc.ServicerContext):
        with self._limits.stream("read", context) as stream:
            batches = self._objects.read_many(
                request.repository, list(request.keys), request.inline_limit
            )
            yield from stream.send(
                (
                    pb.ReadManyResponse(
                        keys=[k for k, _, _ in b.items],
                        sizes=[n for _, n, _ in b.items],
                        inlined=[c is not None for _, _, c in b.items],
                        data=b"".join(c for _, _, c in b.items if c is not None),
                    ),
                    b.reserved,
                )
                for b in batches
            )

    @grpc_errors
    def Has(self, request: pb.HasRequest, context: grpc.ServicerContext):
        return pb.HasResponse(exists=self._objects.has(request.repository, list(request.keys)))

    @grpc_errors
    def Stat(self, request: pb.StatRequest, context: grpc.ServicerContext):
        stats = self._objects.stat(request.repository, list(request.keys))
        return pb.StatResponse(stats=[to_message(pb.ObjectStat, s) for s in stats])

    @grpc_errors
    def List(self, request: pb.ListRequest, context: grpc.ServicerContext):
        with self._limits.stream("read", context) as stream:
            pages = self._objects.list(request.repository, request.page_size, request.page_token)
            for page in pages:
                with stream.waiting():
                    yield to_message(pb.ListResponse, page)

    @grpc_errors
    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext):
        deleted, missing = self._objects.delete(
            request.repository, list(request.keys), request.require_all
        )
        return pb.DeleteResponse(deleted=deleted, missing=missing)

    @grpc_errors
    def Info(self, request: pb.InfoRequest, context: grpc.ServicerContext):
        return to_message(pb.InfoResponse, self._objects.info(request.repository, request.detailed))

    @grpc_errors
    def Maintain(self, request: pb.MaintainRequest, context: grpc.ServicerContext):
        progress = self._objects.maintain(
            request.repository, request.dry_run, request.dead_fraction, request.max_packs
        )
        with self._limits.stream(None, context) as stream:
            for p in progress:
                with stream.waiting():
                    yield to_message(pb.MaintainProgress, p)
                if not context.is_active():  # cancelled: stop after this pack, state is whole
                    progress.close()
                    return

    @grpc_errors
    def Verify(self, request: pb.VerifyRequest, context: grpc.ServicerContext):
        progress = self._objects.verify(request.repository, request.pack_id, request.sample)
        with self._limits.stream(None, context) as stream:
            for p in progress:
                with stream.waiting():
                    yield to_message(pb.VerifyProgress, p)

    @grpc_errors
    def Backup(self, request: pb.BackupRequest, context: grpc.ServicerContext):
        progress = self._objects.backup(request.repository, request.destination)
        with self._limits.stream(None, context) as stream:
            for p in progress:
                with stream.waiting():
                    yield to_message(pb.BackupProgress, p)
