"""Every bad input gets a precise gRPC status, a message a person can act on, and changes nothing.

Talks to the real daemon with the raw generated stubs, so the codes themselves are checked
(the SDK's mapping of codes to exceptions is tested in test_sdk_*).
"""

from __future__ import annotations

import hashlib

import grpc
import pytest

from hoard.v1 import objects_pb2 as pb
from hoard.v1 import objects_pb2_grpc, repositories_pb2_grpc
from hoard.v1 import repositories_pb2 as rpb

GOOD = b"some stored content"
GOOD_KEY = hashlib.sha256(GOOD).hexdigest()
ABSENT_KEY = hashlib.sha256(b"never stored").hexdigest()


@pytest.fixture
def stubs(hoard_daemon):
    channel = grpc.insecure_channel(hoard_daemon.target)
    objects = objects_pb2_grpc.ObjectsStub(channel)
    repos = repositories_pb2_grpc.RepositoriesStub(channel)
    objects.PutBatch(pb.PutBatchRequest(repository="default", objects=[GOOD]), timeout=30)
    yield objects, repos
    channel.close()


def code_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as exc:
        result = call()
        if hasattr(result, "__iter__") and not isinstance(result, bytes | str):
            list(result)
    return exc.value.code(), exc.value.details()


def unchanged(objects) -> None:
    info = objects.Info(pb.InfoRequest(repository="default"), timeout=30)
    assert info.object_count == 1
    data = b"".join(
        m.data for m in objects.Read(pb.ReadRequest(repository="default", key=GOOD_KEY), timeout=30)
    )
    assert data == GOOD


BAD_KEYS = ["", "xyz", GOOD_KEY.upper(), GOOD_KEY[:-1], GOOD_KEY + "0", "../../etc/passwd"]


@pytest.mark.parametrize("bad", BAD_KEYS)
def test_malformed_keys_are_invalid_argument(stubs, bad):
    objects, _ = stubs
    calls = [
        lambda: objects.Read(pb.ReadRequest(repository="default", key=bad)),
        lambda: objects.Has(pb.HasRequest(repository="default", keys=[GOOD_KEY, bad])),
        lambda: objects.Stat(pb.StatRequest(repository="default", keys=[bad])),
        lambda: objects.Delete(pb.DeleteRequest(repository="default", keys=[GOOD_KEY, bad])),
        lambda: objects.ReadMany(pb.ReadManyRequest(repository="default", keys=[bad])),
    ]
    for call in calls:
        code, message = code_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "SHA-256 key" in message
    unchanged(objects)


def test_hash_mismatch_is_invalid_argument_and_stores_nothing(stubs):
    objects, _ = stubs

    def put(expected: str, size: int | None = None, chunks=(b"abc", b"def")):
        header = pb.PutHeader(repository="default", expected_key=expected)
        if size is not None:
            header.size = size
        parts = [pb.PutRequest(header=header)] + [pb.PutRequest(chunk=c) for c in chunks]
        if size is None:  # an unsized upload is complete only with its PutFinish
            parts.append(pb.PutRequest(finish=pb.PutFinish(size=sum(map(len, chunks)))))
        return objects.Put(iter(parts))

    code, message = code_of(lambda: put(ABSENT_KEY))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not the expected key" in message
    code, message = code_of(lambda: put("", size=99))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "announced 99 bytes" in message
    code, message = code_of(lambda: put("nothex"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, message = code_of(lambda: objects.Put(iter([pb.PutRequest(chunk=b"no header")])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "header" in message
    unchanged(objects)


def test_missing_object_is_not_found(stubs):
    objects, _ = stubs
    code, message = code_of(
        lambda: objects.Read(pb.ReadRequest(repository="default", key=ABSENT_KEY))
    )
    assert code == grpc.StatusCode.NOT_FOUND and ABSENT_KEY in message
    code, message = code_of(
        lambda: objects.ReadMany(
            pb.ReadManyRequest(repository="default", keys=[GOOD_KEY, ABSENT_KEY])
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND and ABSENT_KEY in message and GOOD_KEY not in message
    reply = objects.Delete(
        pb.DeleteRequest(repository="default", keys=[GOOD_KEY, ABSENT_KEY], require_all=True)
    )
    assert list(reply.missing) == [ABSENT_KEY] and list(reply.deleted) == []
    unchanged(objects)


def test_offset_past_the_end_is_out_of_range(stubs):
    objects, _ = stubs
    code, message = code_of(
        lambda: objects.Read(
            pb.ReadRequest(repository="default", key=GOOD_KEY, offset=len(GOOD) + 1)
        )
    )
    assert code == grpc.StatusCode.OUT_OF_RANGE and "past the end" in message
    # offset == size is an empty read, not an error
    msgs = list(objects.Read(pb.ReadRequest(repository="default", key=GOOD_KEY, offset=len(GOOD))))
    assert b"".join(m.data for m in msgs) == b"" and msgs[0].object_size == len(GOOD)
    unchanged(objects)


@pytest.mark.parametrize("name", ["nope", "", "../default", "a/b", "x" * 200])
def test_unknown_or_bad_repository(stubs, name):
    objects, repos = stubs
    code, message = code_of(lambda: objects.Has(pb.HasRequest(repository=name, keys=[GOOD_KEY])))
    if name == "nope":
        assert code == grpc.StatusCode.NOT_FOUND
        assert "repository 'nope' does not exist" in message
    else:
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = code_of(lambda: repos.GetRepository(rpb.GetRepositoryRequest(repository=name)))
    assert code == (
        grpc.StatusCode.NOT_FOUND if name == "nope" else grpc.StatusCode.INVALID_ARGUMENT
    )
    code, _ = code_of(lambda: repos.EraseRepository(rpb.EraseRepositoryRequest(repository=name)))
    assert code == (
        grpc.StatusCode.NOT_FOUND if name == "nope" else grpc.StatusCode.INVALID_ARGUMENT
    )
    if name != "nope":
        code, _ = code_of(
            lambda: repos.CreateRepository(rpb.CreateRepositoryRequest(repository=name))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    unchanged(objects)


def test_bad_page_token(stubs):
    objects, _ = stubs
    code, message = code_of(
        lambda: objects.List(pb.ListRequest(repository="default", page_size=10, page_token="zz"))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "page token" in message


def test_health_and_reflection_are_served(hoard_daemon):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    channel = grpc.insecure_channel(hoard_daemon.target)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "hoard.v1.Objects", "hoard.v1.Repositories"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = list(
        refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    )
    names = {s.name for s in replies[0].list_services_response.service}
    assert {"hoard.v1.Objects", "hoard.v1.Repositories", "grpc.health.v1.Health"} <= names
    channel.close()


def test_read_range_limits(stubs):
    objects, _ = stubs

    def rr(**kw):
        return lambda: objects.ReadRange(pb.ReadRequest(repository="default", key=GOOD_KEY, **kw))

    assert (
        objects.ReadRange(
            pb.ReadRequest(repository="default", key=GOOD_KEY, offset=5, length=6)
        ).data
        == GOOD[5:11]
    )
    code, message = code_of(rr(offset=0))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "needs a length" in message
    code, message = code_of(rr(offset=0, length=(16 << 20) + 1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "use Read" in message
    code, _ = code_of(rr(offset=len(GOOD) + 1, length=1))
    assert code == grpc.StatusCode.OUT_OF_RANGE
    code, _ = code_of(
        lambda: objects.ReadRange(pb.ReadRequest(repository="default", key=ABSENT_KEY, length=1))
    )
    assert code == grpc.StatusCode.NOT_FOUND
