"""What one client may take from the daemon: streams at once, time without a deadline of its
own, the size of one message, memory while it stalls. Against the real daemon, plus the
client identity the stream limits count by."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import steady_rss, wait_until

import hoard
from hoard.errors import from_rpc_error
from hoard.metadata.records import FileRecord, FileSignature
from hoard.transport import MAX_MESSAGE_BYTES
from hoard.v1 import datasets_pb2 as dpb
from hoard.v1 import datasets_pb2_grpc, metadata_pb2_grpc, objects_pb2_grpc
from hoard.v1 import metadata_pb2 as mpb
from hoard.v1 import objects_pb2 as opb
from hoard_server.auth.tokens import Role, add_token
from hoard_server.daemon.config import Config
from hoard_server.errors import Overloaded
from hoard_server.grpc import call
from hoard_server.grpc.limits import UNIX_PEERS, StreamLimits, client_of


def _channel(target: str) -> grpc.Channel:
    """A connection of its own (stalled streams share no flow control with other calls)."""
    return grpc.insecure_channel(
        target,
        options=[("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", -1)],
    )


def _healthy(target: str) -> None:
    with grpc.insecure_channel(target) as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _big_object(target: str, size: int = 48 << 20) -> str:
    """An object large enough that a stream of it waits on a client that does not read
    (more than HTTP/2 flow control lets through unread)."""
    with hoard.connect(target) as client:
        return client.repository().put_object(os.urandom(size))


# -- who a client is ---------------------------------------------------------------------------


@dataclass
class Peer:
    """The two things StreamLimits asks of a call's context."""

    address: str

    def peer(self) -> str:
        return self.address

    def time_remaining(self) -> float:
        return 1e12  # what grpc says of a call without a deadline


@pytest.mark.parametrize(
    ("peer", "client"),
    [
        ("ipv4:10.0.0.7:53122", "host 10.0.0.7"),
        ("ipv6:%5B2001:db8::2%5D:5000", "host 2001:db8::2"),
        # the host's own processes share its loopback address: each connection is a client
        ("ipv4:127.0.0.1:53122", "connection 127.0.0.1:53122"),
        ("ipv6:[::1]:5000", "connection [::1]:5000"),
        ("unix:/run/hoard/hoard.sock", UNIX_PEERS),
        ("unix:", UNIX_PEERS),
    ],
)
def test_a_client_without_a_token_is_its_host_or_its_loopback_connection(peer: str, client: str):
    assert client_of(Peer(peer)) == client  # type: ignore[arg-type]


def test_streams_per_client_count_by_token_and_spare_other_clients():
    limits = StreamLimits({"read": (10, "max_read_streams")}, 0, 1 << 20, (1, "streams_per_client"))
    context: Any = Peer("ipv4:10.0.0.7:1")

    def as_token(name: str) -> None:
        call.begin(call.Call("/hoard.v1.Objects/Read", "r", "ipv4:10.0.0.7:1", token=name))

    try:
        as_token("alice")
        with limits.stream("read", context):
            with pytest.raises(Overloaded) as refused, limits.stream("read", context):
                pass
            assert refused.value.reason == "TOO_MANY_STREAMS"
            assert refused.value.details["setting"] == "streams_per_client"
            assert "token alice" in str(refused.value)
            as_token("bob")  # same host, another token: a client of its own
            with limits.stream("read", context):
                pass
        as_token("alice")
        with limits.stream(None, context):  # alice's stream ended: her slot is back
            pass
    finally:
        call.begin(None)  # type: ignore[arg-type]
        limits.close()


def test_a_client_over_its_streams_is_refused_and_others_are_not(daemon_factory: Any, tmp_path):
    socket = tmp_path / "hoard.sock"
    d = daemon_factory(None, "--streams-per-client", "2", "--listen", f"unix:{socket}")
    key = _big_object(d.target)
    request = opb.ReadRequest(repository="default", key=key)
    tcp = _channel(d.target)
    held = [objects_pb2_grpc.ObjectsStub(tcp).Read(request) for _ in range(2)]
    try:
        for c in held:
            next(c)  # admitted and sending; never read further
        third = objects_pb2_grpc.ObjectsStub(tcp).Read(request)
        with pytest.raises(grpc.RpcError):
            next(third)
        assert third.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        error = from_rpc_error(third)
        assert error.reason == "TOO_MANY_STREAMS"
        assert error.details["setting"] == "streams_per_client"
        assert "connection 127.0.0.1:" in str(error) and "streams_per_client" in str(error)
        # other clients are not affected: another connection from this host, and unix-socket
        # peers (not told apart, so not limited per client)
        with hoard.connect(d.target, options=[("grpc.use_local_subchannel_pool", 1)]) as other:
            assert len(other.repository().get_object_content(key)) == 48 << 20
        unix = _channel(f"unix:{socket}")
        more = [objects_pb2_grpc.ObjectsStub(unix).Read(request) for _ in range(3)]
        try:
            for c in more:  # over the limit, yet admitted
                next(c)
        finally:
            for c in more:
                c.cancel()
            unix.close()
        _healthy(d.target)
    finally:
        for c in held:
            c.cancel()

    def admitted() -> bool:
        c = objects_pb2_grpc.ObjectsStub(tcp).Read(request)
        try:
            next(c)
            return True
        except grpc.RpcError:
            return False
        finally:
            c.cancel()

    wait_until(admitted, what="the client's slots back once its streams ended")
    tcp.close()


def test_with_tokens_a_client_is_its_token(daemon_factory: Any, tmp_path):
    tokens_file = str(tmp_path / "tokens.toml")
    alice, bob = (add_token(tokens_file, name, {"*": Role.WRITE}) for name in ("alice", "bob"))
    d = daemon_factory(None, "--tokens-file", tokens_file, "--streams-per-client", "1")
    with hoard.connect(d.target, token=alice) as client:
        key = client.repository().put_object(os.urandom(48 << 20))
    request = opb.ReadRequest(repository="default", key=key)

    def read(token: str) -> Any:
        stub = objects_pb2_grpc.ObjectsStub(tcp)
        return stub.Read(request, metadata=[("authorization", f"Bearer {token}")])

    with _channel(d.target) as tcp:
        held = read(alice)
        try:
            next(held)
            second = read(alice)
            with pytest.raises(grpc.RpcError):
                next(second)
            error = from_rpc_error(second)
            assert error.reason == "TOO_MANY_STREAMS" and "token alice" in str(error)
            other = read(bob)  # the same host, another token: a client of its own
            try:
                assert next(other).data
            finally:
                other.cancel()
        finally:
            held.cancel()


# -- the default deadline ----------------------------------------------------------------------


def test_a_stream_without_a_deadline_ends_at_the_default_one(daemon_factory: Any):
    d = daemon_factory(None, "--default-deadline", "1")
    key = _big_object(d.target)
    request = opb.ReadRequest(repository="default", key=key)
    with _channel(d.target) as ch:
        stub = objects_pb2_grpc.ObjectsStub(ch)
        own = stub.Read(request, timeout=600)  # a deadline of its own: left alone
        bare = stub.Read(request)
        try:
            first = next(own)
            next(bare)  # neither reads further: both wait on their client
            # the client sees the status once it reads what came before it
            wait_until(lambda: "default_deadline" in "".join(d.log), what="the daemon to end it")
            with pytest.raises(grpc.RpcError):
                for _ in bare:
                    pass
            assert bare.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "default_deadline" in bare.details()
            rest = sum(len(m.data) for m in own)  # served whole, past the default deadline
            assert len(first.data) + rest == 48 << 20
        finally:
            own.cancel()
            bare.cancel()
    _healthy(d.target)


# -- message size ------------------------------------------------------------------------------


def test_a_message_over_the_limit_is_refused_and_the_daemon_stays_up(daemon_factory: Any):
    limit = 8 << 20  # the smallest the daemon accepts
    d = daemon_factory(None, "--max-message-bytes", str(limit))
    with _channel(d.target) as ch:
        too_big = opb.PutBatchRequest(repository="default", objects=[os.urandom(limit + 1)])
        with pytest.raises(grpc.RpcError) as refused:
            objects_pb2_grpc.ObjectsStub(ch).PutBatch(too_big)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with hoard.connect(d.target) as client:
        ds = client.datasets()
        with pytest.raises(hoard.ResourceExhaustedError) as error:
            ds.store_data("big.h5", "x", np.zeros(limit // 8 + 1024))
        assert "larger than max" in str(error.value)
        # the SDK's own messages fit: PutBatch calls of 4 MiB, appender batches of 1 MiB
        repo = client.repository()
        data = [os.urandom(1 << 20) for _ in range(12)]
        keys = repo.put_objects(data)
        assert repo.get_objects_content(keys) == dict(zip(keys, data, strict=True))
        rows = np.arange(2 * limit // 8, dtype=np.float64)
        with ds.appender("big.h5", "x") as appender:
            appender.append(rows)
        # a selection larger than a message is refused as a reply (REPLY_TOO_LARGE), so the
        # SDK streams it instead
        assert np.array_equal(ds.get_data("big.h5", "x"), rows)
    _healthy(d.target)


def test_the_sdk_limit_is_the_daemons_and_its_batches_stay_under_it(hoard_daemon: Any):
    assert Config().limits.max_message_bytes == MAX_MESSAGE_BYTES
    with hoard.connect(hoard_daemon.target) as client:
        repo = client.repository()
        data = [os.urandom(1 << 20) for _ in range(80)]  # 80 MiB: several PutBatch calls
        keys = repo.put_objects(data)
        assert repo.has_objects(keys) == [True] * 80
        # one block larger than a message: the appender sends it in slices
        block = np.arange((MAX_MESSAGE_BYTES + (8 << 20)) // 8, dtype=np.float64)
        ds = client.datasets()
        with ds.appender("big.h5", "x") as appender:
            appender.append(block)
        assert ds.get_data_shape("big.h5", "x").shape == block.shape
        assert ds.get_data("big.h5", "x", np.s_[-3:]).tolist() == block[-3:].tolist()


# -- stalled readers of the datasets and the metadata cache ------------------------------------


def test_fifty_stalled_readers_of_datasets_and_queries_leave_memory_bounded(
    daemon_factory: Any,
):
    """50 clients start a ReadData of a 64 MiB dataset or a Query of every record, and read
    nothing: what the daemon builds for them waits within the response budget (32 MiB
    here), however many they are."""
    d = daemon_factory(
        None,
        "--workers",
        "96",
        env={
            "HOARD_RESPONSE_MEMORY_BYTES": str(32 << 20),
            "HOARD_MAX_READ_STREAMS": "50",
            "HOARD_STREAMS_PER_CLIENT": "0",
            "HOARD_STREAM_IDLE_TIMEOUT": "300",
        },
    )
    rows = (64 << 20) // 8
    with hoard.connect(d.target) as client:
        ds = client.datasets()
        with ds.appender("big.h5", "x") as appender:
            for lo in range(0, rows, 1 << 20):
                appender.append(np.arange(lo, lo + (1 << 20), dtype=np.float64))
        cache = client.metadata()
        records = [
            FileRecord(f"/data/run-{i:06d}.h5", FileSignature(i, i, i, i), {"note": "x" * 200})
            for i in range(20_000)
        ]
        cache.push_records(records, machine_id="lab")
    read = dpb.GetDataRequest(node=dpb.NodeRef(repository="default", path="big.h5", dataset="x"))
    query = mpb.QueryRequest(repository="default", output="records")
    channels = [_channel(d.target) for _ in range(5)]
    calls = []
    try:
        for ch in channels:  # one whole read each: the daemon's steady state first
            for _ in datasets_pb2_grpc.DatasetsStub(ch).ReadData(read):
                pass
        before = steady_rss(d.pid)

        def stall(n: int) -> int:
            """``n`` more clients that start a read and read nothing; the daemon's RSS once
            they have built what they will."""
            for _ in range(n):
                ch = channels[len(calls) % len(channels)]
                if len(calls) % 2:
                    calls.append(metadata_pb2_grpc.MetadataCacheStub(ch).Query(query))
                else:
                    calls.append(datasets_pb2_grpc.DatasetsStub(ch).ReadData(read))
            return steady_rss(d.pid)

        half = stall(25)
        full = stall(25)
        # what stalled streams hold is bounded by the budget, not by their number: the second
        # 25 add little (unbounded, each would hold its answer: 64 MiB, or 5 MiB of records)
        assert full - half < 64 << 20, f"25 more stalled readers took {(full - half) >> 20} MiB"
        assert full - before < 512 << 20, f"daemon RSS grew by {(full - before) >> 20} MiB"
        _healthy(d.target)
    finally:
        for c in calls:
            c.cancel()
        for ch in channels:
            ch.close()
    with hoard.connect(d.target) as client:  # and everything is served again
        assert client.datasets().get_data_shape("big.h5", "x").shape == (rows,)
