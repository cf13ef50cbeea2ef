"""Hostile and broken clients against the real daemon: streams that stall, memory they pin,
uploads that are cut off. Health and short calls must keep answering throughout."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import steady_rss, wait_until

import hoard
from hoard.v1 import objects_pb2 as pb
from hoard.v1 import objects_pb2_grpc

WORKERS = 8
SLOTS = WORKERS * 3 // 8  # read streams, and upload streams, served at once by default
# New settings go through the environment: a daemon that does not know them still starts.
ENV = {"HOARD_STREAM_IDLE_TIMEOUT": "30"}
SERVE = ("--workers", str(WORKERS), "--grace-period", "2")


def _pattern(size: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB, compresses well
    return (block * (size // len(block) + 1))[:size]


def _hostile_channel(target: str) -> grpc.Channel:
    # A connection of its own: stalled streams must not share flow control with the
    # well-behaved client whose calls we time.
    return grpc.insecure_channel(
        target,
        options=[("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", -1)],
    )


def _healthy(target: str, timeout: float = 3.0) -> None:
    with grpc.insecure_channel(target) as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(), timeout=timeout
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _header_only(repository: str, release: threading.Event) -> Iterator[pb.PutRequest]:
    yield pb.PutRequest(header=pb.PutHeader(repository=repository))
    release.wait()


def _put_big(stub: objects_pb2_grpc.ObjectsStub, data: bytes, *small: bytes) -> list[str]:
    """Store via PutBatch so that the objects share a pack (streamed puts this large would
    get a pack of their own)."""
    reply = stub.PutBatch(pb.PutBatchRequest(repository="default", objects=[data, *small]))
    return list(reply.keys)


def test_stalled_streams_leave_health_and_short_calls_answering(daemon_factory):
    d = daemon_factory(None, *SERVE, env=ENV)
    release = threading.Event()
    with _hostile_channel(d.target) as ch, hoard.connect(d.target, timeout=3) as client:
        stub = objects_pb2_grpc.ObjectsStub(ch)
        (key,) = _put_big(stub, _pattern(24 << 20))
        reads = [stub.Read(pb.ReadRequest(repository="default", key=key)) for _ in range(WORKERS)]
        puts = [stub.Put.future(_header_only("default", release)) for _ in range(WORKERS)]
        try:
            # every stream reached the daemon: all but the slots' worth were refused
            wait_until(
                lambda: (
                    sum(c.done() for c in reads) >= WORKERS - SLOTS
                    and sum(f.done() for f in puts) >= WORKERS - SLOTS
                ),
                what="the streams beyond the slots to be refused",
            )
            started = time.monotonic()
            _healthy(d.target)
            assert client.repository().has_objects([key]) == [True]
            assert time.monotonic() - started < 3
            refused = [c for c in reads if c.done()]
            assert refused, "some stalled Read streams should have been refused"
            assert refused[0].code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "max_read_streams" in refused[0].details()
            refused_puts = [f for f in puts if f.done()]
            assert refused_puts
            assert refused_puts[0].exception().code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "max_upload_streams" in refused_puts[0].exception().details()
        finally:
            for c in reads:
                c.cancel()
            for f in puts:
                f.cancel()
            release.set()


def test_idle_streams_are_cancelled(daemon_factory):
    d = daemon_factory(None, *SERVE, env={"HOARD_STREAM_IDLE_TIMEOUT": "1"})
    release = threading.Event()
    with _hostile_channel(d.target) as ch:
        stub = objects_pb2_grpc.ObjectsStub(ch)
        (key,) = _put_big(stub, _pattern(24 << 20))
        # as many as there are read slots (3 of 8 workers): all must come back
        before = len(d.log)
        reads = [stub.Read(pb.ReadRequest(repository="default", key=key)) for _ in range(SLOTS)]
        put = stub.Put.future(_header_only("default", release))
        try:
            # (a Read's status reaches our side only once we read on: the daemon's log says)
            d.wait_for_log("cancelling a stream", count=SLOTS + 1, since=before)
            put.exception(timeout=30)
            assert put.done() and put.exception() is not None
            assert put.exception().code() == grpc.StatusCode.CANCELLED
            for read in reads:
                with pytest.raises(grpc.RpcError) as err:
                    for _ in read:
                        pass
                assert err.value.code() == grpc.StatusCode.CANCELLED
        finally:
            release.set()
            for read in reads:
                read.cancel()
            put.cancel()
    _healthy(d.target)
    with hoard.connect(d.target) as client:  # the cancelled streams gave their slots back
        assert len(client.repository().get_object_content(key)) == 24 << 20


def test_stalled_reader_does_not_block_maintenance(daemon_factory):
    d = daemon_factory(None, *SERVE, env=ENV)
    data = _pattern(24 << 20, seed=1)
    with (
        _hostile_channel(d.target) as ch,
        hoard.connect(d.target, timeout=5, stream_timeout=10) as client,
    ):
        stub = objects_pb2_grpc.ObjectsStub(ch)
        key, doomed = _put_big(stub, data, b"deleted soon" * 1000)
        repo = client.repository()
        read = stub.Read(pb.ReadRequest(repository="default", key=key))
        try:
            # The stream is under way, then the client stops reading: the daemon's sends
            # stall once the flow-control windows fill, before or during the maintenance
            # below (24 MiB do not fit in them), and maintenance must not wait for them.
            first = next(read)
            repo.delete_objects([doomed])
            report = repo.maintain(dead_fraction=1e-9)
            assert report["done"] == 1, report
            # The reader carries on from the object's new place.
            got = first.data + b"".join(m.data for m in read)
            assert got == data
        finally:
            read.cancel()


def _staged_then_idle(repository: str, release: threading.Event) -> Iterator[pb.PutRequest]:
    """An upload past the in-memory limit (so it is staged on disk) that then goes idle."""
    yield pb.PutRequest(header=pb.PutHeader(repository=repository))
    for i in range(9):
        yield pb.PutRequest(chunk=_pattern(1 << 20, seed=2000 + i))
    release.wait()


def test_idle_upload_does_not_block_erase_or_create(daemon_factory):
    d = daemon_factory(None, *SERVE, env=ENV)
    release = threading.Event()
    with _hostile_channel(d.target) as ch, hoard.connect(d.target, timeout=5) as client:
        client.create_repository("doomed")
        stub = objects_pb2_grpc.ObjectsStub(ch)
        put = stub.Put.future(_staged_then_idle("doomed", release))
        staging = Path(d.data_dir, "repositories", "doomed", "staging")
        try:
            wait_until(lambda: any(staging.glob("*.upload")), what="the upload to be staged")
            client.erase_repository("doomed")
            client.create_repository("other")
            assert "doomed" not in [r.name for r in client.list_repositories()]
        finally:
            put.cancel()
            release.set()


def test_read_many_memory_is_bounded(daemon_factory):
    d = daemon_factory(None, "--workers", "16", "--grace-period", "2", env=ENV)
    n_objects, size, clients = 3, 16 << 20, 12
    with _hostile_channel(d.target) as ch:
        stub = objects_pb2_grpc.ObjectsStub(ch)
        keys = [_put_big(stub, _pattern(size, seed=10 + i))[0] for i in range(n_objects)]
        request = pb.ReadManyRequest(repository="default", keys=keys, inline_limit=1 << 40)
        for _ in stub.ReadMany(request):  # warm up: one well-behaved ReadMany
            pass
        before = steady_rss(d.pid)
        calls = [stub.ReadMany(request) for _ in range(clients)]
        try:
            # every stream has built what it will before its client reads: memory settles
            grown = steady_rss(d.pid) - before
            assert grown < 150 << 20, f"daemon RSS grew by {grown >> 20} MiB"
        finally:
            for c in calls:
                c.cancel()
    # Large objects are no longer inlined: the SDK reads them with Read instead.
    with hoard.connect(d.target) as client:
        got = client.repository().get_objects_content(keys)
    assert {k: hashlib.sha256(v).hexdigest() for k, v in got.items()} == {k: k for k in keys}


def test_tiny_response_budget_still_serves_everything(daemon_factory):
    d = daemon_factory(
        None,
        *SERVE,
        env={
            **ENV,
            "HOARD_RESPONSE_MEMORY_BYTES": str(1 << 20),
            # each reader below holds a ReadMany and a Read stream at once
            "HOARD_MAX_READ_STREAMS": "4",
            "HOARD_MAX_UPLOAD_STREAMS": "1",
        },
    )
    objects = [_pattern(n, seed=n) for n in (1, 300_000, 3 << 20, 5 << 20)]
    with hoard.connect(d.target) as client:
        repo = client.repository()
        keys = repo.put_objects(objects)

        def read_all() -> None:
            assert repo.get_objects_content(keys) == dict(zip(keys, objects, strict=True))
            assert repo.get_object_content(keys[-1]) == objects[-1]

        threads = [threading.Thread(target=read_all) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        read_all()


def _unsized_upload(
    release: threading.Event, chunks: int = 3, sent: threading.Event | None = None
) -> Iterator[pb.PutRequest]:
    yield pb.PutRequest(header=pb.PutHeader(repository="default"))
    for i in range(chunks):
        yield pb.PutRequest(chunk=_pattern(64 << 10, seed=1000 + i))
    if sent is not None:
        sent.set()  # grpc asked for the message after the last chunk: all were handed over
    release.wait(10)


def test_aborted_uploads_store_nothing(daemon_factory):
    d = daemon_factory(None, *SERVE, env=ENV)
    truncated = hashlib.sha256(
        b"".join(_pattern(64 << 10, seed=1000 + i) for i in range(3))
    ).hexdigest()
    with _hostile_channel(d.target) as ch, hoard.connect(d.target) as client:
        stub = objects_pb2_grpc.ObjectsStub(ch)
        repo = client.repository()
        for attempt in range(30):
            release = threading.Event()
            if attempt % 3 == 2:  # the deadline passes mid-upload
                call = stub.Put.future(_unsized_upload(release), timeout=0.3)
                with pytest.raises(grpc.RpcError):
                    call.result()
            else:  # the client cancels mid-upload
                sent = threading.Event()
                call = stub.Put.future(_unsized_upload(release, sent=sent))
                assert sent.wait(10)
                call.cancel()
            release.set()
        time.sleep(0.5)
        assert repo.has_objects([truncated]) == [False]
        assert repo.get_info()["objects"] == 0

        # A stream that ends without PutFinish (and without a declared size) is refused.
        release = threading.Event()
        release.set()
        with pytest.raises(grpc.RpcError) as err:
            stub.Put(_unsized_upload(release))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "incomplete" in err.value.details()
        assert repo.has_objects([truncated]) == [False]

        # Normal SDK uploads, sized and unsized, still work.
        import io

        class Unsized(io.RawIOBase):
            def __init__(self, data: bytes) -> None:
                self._data = io.BytesIO(data)

            def readable(self) -> bool:
                return True

            def readinto(self, b) -> int:
                return self._data.readinto(b)

        for n in (0, 5, 3 << 20, 9 << 20):
            data = _pattern(n, seed=n + 7)
            assert (
                repo.put_object_from_filelike(io.BytesIO(data)) == hashlib.sha256(data).hexdigest()
            )
            key = repo.put_object_from_filelike(io.BufferedReader(Unsized(data)))
            assert key == hashlib.sha256(data).hexdigest()
            assert repo.get_object_content(key) == data


def test_the_sdk_retries_a_busy_daemon_as_it_asks_and_never_a_full_one(daemon_factory):
    """A stream refused for want of a slot is RESOURCE_EXHAUSTED with reason OVERLOADED and a
    retry pushback: the SDK's retry policy waits and tries again, so a burst of clients
    slows down instead of failing. When no slot comes free, the error says it was busy,
    not that the disk is full."""
    d = daemon_factory(None, *SERVE, "--max-read-streams", "1", env=ENV)
    data = _pattern(24 << 20, seed=7)  # more than flow control lets the daemon send unread
    with hoard.connect(d.target) as client:
        repo = client.repository()
        key = repo.put_object(data)
        channel = _hostile_channel(d.target)
        stub = objects_pb2_grpc.ObjectsStub(channel)
        stalled = stub.Read(pb.ReadRequest(repository="default", key=key))
        next(stalled)  # the only read slot is now held by a client that does not read on
        with pytest.raises(hoard.OverloadedError) as refused:
            repo.get_object_content(key)  # every retry finds the slot still taken
        assert not isinstance(refused.value, hoard.StorageFullError)
        assert "max_read_streams" in str(refused.value)
        threading.Timer(0.3, stalled.cancel).start()  # the slot comes free during retries
        assert repo.get_object_content(key) == data
        channel.close()


_FROZEN_CLIENT = r"""
import sys, time, grpc
from hoard.v1 import objects_pb2 as pb, objects_pb2_grpc
target, key, n, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ch = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", -1)])
stub = objects_pb2_grpc.ObjectsStub(ch)
stub.Has(pb.HasRequest(repository="default", keys=[key]))  # connected
calls = [stub.ReadRange.future(pb.ReadRequest(repository="default", key=key, length=size))
         for _ in range(n)]
print("sent", flush=True)
time.sleep(600)
"""


def test_unary_replies_a_frozen_client_never_takes_are_bounded(daemon_factory, tmp_path):
    """ReadRange replies wait in grpc's buffers after the handler returned: a client that
    asks for many and then stops reading its socket (here: a process frozen with SIGSTOP)
    must not make the daemon hold them all (they count against the response budget), and
    what it holds comes back when the daemon drops the connection that no longer answers
    its keepalive pings (a cancel alone cannot get through a socket nobody reads)."""
    import os
    import signal
    import subprocess
    import sys

    budget = 48 << 20  # three of the replies
    d = daemon_factory(
        None,
        *SERVE,
        env={
            "HOARD_STREAM_IDLE_TIMEOUT": "3",
            "HOARD_RESPONSE_MEMORY_BYTES": str(budget),
            "HOARD_KEEPALIVE_INTERVAL": "1",
            "HOARD_KEEPALIVE_TIMEOUT": "1",
        },
    )
    size, asks = 16 << 20, 24
    data = os.urandom(size)  # incompressible: stored raw, read fast
    with hoard.connect(d.target) as client:
        repo = client.repository()
        key = repo.put_object(data)
        assert repo.read(key, 0, 4096) == data[:4096]
        before = steady_rss(d.pid)
        script = tmp_path / "frozen.py"
        script.write_text(_FROZEN_CLIENT)
        child = subprocess.Popen(
            [sys.executable, str(script), d.target, key, str(asks), str(size)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout.readline().strip() == "sent"
            child.send_signal(signal.SIGSTOP)  # it stops reading its socket
            grown = steady_rss(d.pid) - before  # once the replies have piled up as they will
            # the budget, plus replies being built (a few copies each) and what the allocator
            # keeps; before the budget covered ReadRange this grew by ~950 MiB
            assert grown < 320 << 20, f"daemon RSS grew by {grown >> 20} MiB"
            _healthy(d.target)

            def read_served() -> bool:
                try:
                    return repo.read(key, 1 << 20, 4 << 20) == data[1 << 20 : 5 << 20]
                except hoard.OverloadedError:
                    return False

            # an unanswered ping: the connection is dropped, the budget returns
            wait_until(read_served, what="a read served once the frozen client is dropped")
        finally:
            child.kill()
            child.wait()
