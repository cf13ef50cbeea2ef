"""The objects API: one repository's content-addressed objects over a :class:`Transport`.

Keys are the SHA-256 hex digest of the content, so every put is idempotent. Errors are the
daemon's, translated once by the transport: a malformed key is an
:class:`~hoard.errors.InvalidArgumentError`, a missing object an
:class:`~hoard.errors.ObjectNotFoundError`. (The AiiDA face, :class:`hoard.Repository`,
softens the first into the second.)
"""

from __future__ import annotations

import builtins
import collections
import io
import os
import stat as stat_module
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

from hoard import replies, requests
from hoard.reports import ObjectStat
from hoard.transport import PendingCall, Transport
from hoard.v1 import objects_pb2 as pb

__all__ = ["BATCHES_IN_FLIGHT", "RANGE_CALL_BYTES", "Objects", "ProgressCallback"]

BATCHES_IN_FLIGHT = 3  # PutBatch calls outstanding while the next one is built
RANGE_CALL_BYTES = 4 << 20  # ranges up to this size are read in one unary ReadRange call

ProgressCallback = Callable[[int, "int | None"], None]
"""Called as ``progress(bytes_done, total_bytes_or_None)`` while a transfer runs."""


class Objects:
    """The objects of repository ``repository`` on the daemon ``transport`` talks to."""

    def __init__(self, transport: Transport, repository: str) -> None:
        self.transport = transport
        self.repository = repository

    # -- writing -----------------------------------------------------------------------------

    def put_stream(self, handle: BinaryIO, *, progress: ProgressCallback | None = None) -> str:
        """Stream the bytes of ``handle`` (to its end) in 1 MiB chunks; return their key.

        When ``handle`` is seekable, a put the retry policy retries (the daemon went away
        midway, or was busy) starts over from the handle's position at the call.
        """
        start = _position(handle)
        size = _remaining_size(handle)

        def chunks() -> Iterator[bytes]:
            done = 0
            while chunk := handle.read(requests.CHUNK_BYTES):
                done += len(chunk)
                yield chunk
                if progress is not None:
                    progress(done, size)

        rewind = None if start is None else (lambda: handle.seek(start))
        reply = self.transport.upload(
            "Objects.Put",
            lambda: requests.put_requests(self.repository, chunks(), size),
            rewind=rewind,
        )
        return reply.key

    def put_many(self, contents: Iterable[bytes]) -> list[str]:
        """Store many objects; their keys in input order.

        Small objects go in PutBatch calls (see :func:`hoard.requests.plan_puts`), up to three
        in flight so that building the next overlaps the daemon's work; larger ones are
        streamed one by one.
        """
        keys: dict[int, str] = {}
        in_flight: collections.deque[tuple[list[int], PendingCall]] = collections.deque()

        def collect() -> None:
            positions, call = in_flight.popleft()
            keys.update(zip(positions, call.result().keys, strict=True))

        try:
            for plan in requests.plan_puts(contents):
                if plan.streamed:
                    keys[plan.positions[0]] = self.put_stream(io.BytesIO(plan.contents[0]))
                    continue
                if len(in_flight) >= BATCHES_IN_FLIGHT:
                    collect()
                request = pb.PutBatchRequest(repository=self.repository, objects=plan.contents)
                in_flight.append(
                    (plan.positions, self.transport.unary_future("Objects.PutBatch", request))
                )
            while in_flight:
                collect()
        finally:
            for _, call in in_flight:
                call.cancel()
        return [keys[i] for i in range(len(keys))]

    # -- reading ------------------------------------------------------------------------------

    def read_range(self, key: str, offset: int, length: int) -> tuple[bytes, int]:
        """``length`` bytes from ``offset`` (cut short at the end) and the object's size, in
        one round trip."""
        request = requests.read_request(self.repository, key, offset, length)
        reply = self.transport.unary("Objects.ReadRange", request)
        return reply.data, reply.object_size

    def read(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """``length`` bytes from ``offset`` (to the end when None): one ReadRange call up to
        4 MiB, else one streamed Read."""
        if length is not None and length <= RANGE_CALL_BYTES:
            return self.read_range(key, offset, length)[0]
        return b"".join(self.iter_chunks(key, offset, length))

    def iter_chunks(
        self,
        key: str,
        offset: int = 0,
        length: int | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> Iterator[bytes]:
        """The object (or a range of it) as chunks of about 1 MiB, in one streamed Read."""
        request = requests.read_request(self.repository, key, offset, length)
        done = 0
        total: int | None = None
        for message in self.transport.server_stream("Objects.Read", request):
            if total is None:
                total = replies.range_size(message.object_size, offset, length)
            if message.data:
                done += len(message.data)
                if progress is not None:
                    progress(done, total)
                yield message.data

    def read_many(self, keys: Iterable[str]) -> Iterator[tuple[str, int, bytes | None]]:
        """``(key, size, content or None)`` per distinct key, in storage order; objects too
        large to inline come without content (read them with :meth:`iter_chunks`)."""
        unique = list(dict.fromkeys(keys))
        for batch in requests.slices(unique):
            request = pb.ReadManyRequest(repository=self.repository, keys=batch)
            for message in self.transport.server_stream("Objects.ReadMany", request):
                yield from replies.inlined_objects(message)

    # -- existence, metadata, listing, deleting --------------------------------------------------

    def has(self, keys: Iterable[str]) -> list[bool]:
        """Whether each key is stored, in the order given."""
        found: list[bool] = []
        for batch in requests.slices(list(keys)):
            request = pb.HasRequest(repository=self.repository, keys=batch)
            found.extend(self.transport.unary("Objects.Has", request).exists)
        return found

    def stat(self, keys: Iterable[str]) -> list[ObjectStat | None]:
        """How each object is stored, in the order given; None for a missing one."""
        stats: list[ObjectStat | None] = []
        for batch in requests.slices(list(keys)):
            request = pb.StatRequest(repository=self.repository, keys=batch)
            reply = self.transport.unary("Objects.Stat", request)
            stats.extend(replies.object_stat(s) for s in reply.stats)
        return stats

    def list(self) -> Iterator[str]:
        """Every key, in key order, streamed."""
        request = pb.ListRequest(repository=self.repository, page_size=0)
        for message in self.transport.server_stream("Objects.List", request):
            yield from message.keys

    # (``list`` is a method from here on: the builtin is spelt ``builtins.list`` in signatures)
    def list_page(self, page_size: int, page_token: str = "") -> tuple[builtins.list[str], str]:
        """At most ``page_size`` keys after ``page_token``, and the next page's token ("" at
        the end)."""
        if page_size <= 0:
            raise ValueError("page_size must be positive; use list_objects() to stream all")
        request = pb.ListRequest(
            repository=self.repository, page_size=page_size, page_token=page_token
        )
        keys: list[str] = []
        token = ""
        stream = "Objects.List"
        for message in self.transport.server_stream(
            stream, request, timeout=self.transport.timeout
        ):
            keys.extend(message.keys)
            token = message.next_page_token
        return keys, token

    def delete(
        self, keys: builtins.list[str], *, require_all: bool
    ) -> tuple[builtins.list[str], builtins.list[str]]:
        """Delete these objects; ``(deleted, missing)``. With ``require_all`` a missing key
        deletes nothing."""
        request = pb.DeleteRequest(repository=self.repository, keys=keys, require_all=require_all)
        reply = self.transport.unary("Objects.Delete", request)
        return list(reply.deleted), list(reply.missing)


def _position(handle: Any) -> int | None:
    """Where a seekable ``handle`` stands, None when it cannot be rewound."""
    try:
        return handle.tell() if handle.seekable() else None
    except (AttributeError, OSError, ValueError):
        return None


def _remaining_size(handle: Any) -> int | None:
    """Bytes left in ``handle`` when that is cheap to know (an in-memory or regular file)."""
    try:
        if isinstance(handle, io.BytesIO):
            with handle.getbuffer() as view:
                return max(0, view.nbytes - handle.tell())
        st = os.fstat(handle.fileno())
        if stat_module.S_ISREG(st.st_mode):
            return max(0, st.st_size - handle.tell())
    except (AttributeError, OSError, ValueError):
        pass
    return None
