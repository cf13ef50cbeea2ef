"""Every bad input gets a precise gRPC status, a message a person can act on, and changes nothing.

Talks to the real daemon with the raw generated stubs, so the codes themselves are checked
(the SDK's mapping of codes to exceptions is tested in test_sdk_*), and so is the
``google.rpc.ErrorInfo`` each status carries (domain "hoard", a stable reason, what it
concerns) that clients pick their exceptions from.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from hoard.v1 import objects_pb2 as pb
from hoard.v1 import objects_pb2_grpc, repositories_pb2_grpc
from hoard.v1 import repositories_pb2 as rpb
from hoard_server.errors import Overloaded, StorageFull
from hoard_server.grpc.status import failure_of

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


def rejection(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as exc:
        result = call()
        if hasattr(result, "__iter__") and not isinstance(result, bytes | str):
            list(result)
    return exc.value


def code_of(call) -> tuple[grpc.StatusCode, str]:
    err = rejection(call)
    return err.code(), err.details()


def error_info(call) -> tuple[grpc.StatusCode, error_details_pb2.ErrorInfo]:
    """The status code of a failing call and the one ErrorInfo its google.rpc.Status holds."""
    return info_of(rejection(call))


def info_of(err: grpc.RpcError) -> tuple[grpc.StatusCode, error_details_pb2.ErrorInfo]:
    status = rpc_status.from_call(err)
    assert status is not None, f"{err.code()} without a google.rpc.Status: {err.details()}"
    assert status.code == err.code().value[0] and status.message == err.details()
    infos = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            infos.append(info)
    assert len(infos) == 1, status.details
    assert infos[0].domain == "hoard"
    return err.code(), infos[0]


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


# -- ErrorInfo: the reason and what the error concerns, for programs ------------------------

# The key check lives in the storage engine, which names its reason INVALID_KEY (and the
# hash check HASH_MISMATCH) from the storage branch on; until then both are INVALID_ARGUMENT.
INVALID_KEY = {"INVALID_KEY", "INVALID_ARGUMENT"}
HASH_MISMATCH = {"HASH_MISMATCH", "INVALID_ARGUMENT"}


def test_error_info_names_the_key_and_the_repository(stubs):
    objects, _ = stubs
    code, info = error_info(lambda: objects.Read(pb.ReadRequest(repository="default", key="xyz")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and info.reason in INVALID_KEY
    assert info.metadata["repository"] == "default"

    code, info = error_info(
        lambda: objects.ReadMany(
            pb.ReadManyRequest(repository="default", keys=[GOOD_KEY, ABSENT_KEY])
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND and info.reason == "OBJECT_NOT_FOUND"
    assert info.metadata["keys"] == ABSENT_KEY and info.metadata["repository"] == "default"

    code, info = error_info(
        lambda: objects.ReadRange(
            pb.ReadRequest(repository="default", key=GOOD_KEY, offset=len(GOOD) + 1, length=1)
        )
    )
    assert code == grpc.StatusCode.OUT_OF_RANGE
    assert info.reason in {"OUT_OF_RANGE", "OFFSET_OUT_OF_RANGE"}
    assert info.metadata["repository"] == "default"


@pytest.mark.parametrize("name", ["nope", "", "../default", "x" * 200])
def test_error_info_for_repositories(stubs, name):
    objects, repos = stubs
    reason = "REPOSITORY_NOT_FOUND" if name == "nope" else "INVALID_REPOSITORY_NAME"
    calls = [
        lambda: objects.Has(pb.HasRequest(repository=name, keys=[GOOD_KEY])),
        lambda: objects.List(pb.ListRequest(repository=name)),
        lambda: repos.GetRepository(rpb.GetRepositoryRequest(repository=name)),
        lambda: repos.EraseRepository(rpb.EraseRepositoryRequest(repository=name)),
        lambda: put(objects, name, [b"abc"]),
    ]
    if name != "nope":
        calls.append(lambda: repos.CreateRepository(rpb.CreateRepositoryRequest(repository=name)))
    for call in calls:
        _code, info = error_info(call)
        assert info.reason == reason
        assert name.startswith(info.metadata["repository"])  # long names are cut short


def put(objects, repository: str, chunks, expected: str = "", finish: bool = True):
    parts = [pb.PutRequest(header=pb.PutHeader(repository=repository, expected_key=expected))]
    parts += [pb.PutRequest(chunk=c) for c in chunks]
    if finish:
        parts.append(pb.PutRequest(finish=pb.PutFinish(size=sum(map(len, chunks)))))
    return objects.Put(iter(parts), timeout=30)


def test_error_info_for_uploads(stubs):
    objects, _ = stubs
    code, info = error_info(lambda: put(objects, "default", [b"abc"], expected=ABSENT_KEY))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and info.reason in HASH_MISMATCH
    assert info.metadata["repository"] == "default"
    code, info = error_info(lambda: put(objects, "default", [b"abc"], finish=False))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and info.reason == "INVALID_ARGUMENT"
    assert info.metadata["repository"] == "default"
    code, info = error_info(lambda: objects.Put(iter([pb.PutRequest(chunk=b"no header")])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and info.reason == "INVALID_ARGUMENT"
    unchanged(objects)


def test_error_info_for_arguments_and_preconditions(stubs):
    objects, _ = stubs
    code, info = error_info(
        lambda: objects.Maintain(pb.MaintainRequest(repository="default", dead_fraction=2))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and info.reason == "INVALID_ARGUMENT"
    assert info.metadata["setting"] == "dead_fraction"
    assert info.metadata["repository"] == "default"
    code, info = error_info(
        lambda: objects.ReadRange(pb.ReadRequest(repository="default", key=GOOD_KEY))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and info.reason == "INVALID_ARGUMENT"
    # the daemon has no backup root configured
    code, info = error_info(
        lambda: objects.Backup(pb.BackupRequest(repository="default", destination="/tmp/b"))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and info.reason == "FAILED_PRECONDITION"
    assert info.metadata["path"] == "/tmp/b" and info.metadata["repository"] == "default"


def test_undecodable_request_has_its_reason(hoard_daemon):
    with grpc.insecure_channel(hoard_daemon.target) as channel:
        garbage = channel.unary_unary("/hoard.v1.Objects/Has")
        code, info = error_info(lambda: garbage(b"\xff\xff\xff", timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and info.reason == "UNDECODABLE_REQUEST"
    assert info.metadata["method"] == "/hoard.v1.Objects/Has"


def test_overloaded_is_not_reported_as_a_full_disk(daemon_factory, tmp_path):
    """A stream over its slots is RESOURCE_EXHAUSTED, reason OVERLOADED, naming the setting,
    with a retry pushback a retry policy honours."""
    d = daemon_factory(tmp_path / "data", "--max-read-streams", "1")
    big = os.urandom(8 << 20)
    with grpc.insecure_channel(d.target) as channel:
        objects = objects_pb2_grpc.ObjectsStub(channel)
        key = put(
            objects, "default", [big[i : i + (1 << 20)] for i in range(0, len(big), 1 << 20)]
        ).key
        read = pb.ReadRequest(repository="default", key=key)
        held = objects.Read(read)  # never read: it keeps the one read slot
        try:
            deadline = time.monotonic() + 10
            while True:  # until the held stream has its slot
                try:
                    list(objects.Read(read, timeout=30))
                except grpc.RpcError as exc:
                    refused = exc
                    break
                assert time.monotonic() < deadline, "the held stream never took the slot"
            code, info = info_of(refused)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and info.reason == "OVERLOADED"
            assert dict(info.metadata) == {"repository": "default", "setting": "max_read_streams"}
            assert int(dict(refused.trailing_metadata())["grpc-retry-pushback-ms"]) > 0
            code, _ = code_of(lambda: objects.Has(pb.HasRequest(repository="default", keys=["x"])))
            assert code == grpc.StatusCode.INVALID_ARGUMENT  # short calls still answer
        finally:
            held.cancel()


def test_resource_exhausted_says_which():
    """The mapping itself: only a full disk is STORAGE_FULL (and asks not to be retried)."""
    full = failure_of(OSError(errno.ENOSPC, "No space left on device", "/data/packs/7"), "r")
    assert full.code == grpc.StatusCode.RESOURCE_EXHAUSTED and full.reason == "STORAGE_FULL"
    assert full.retry_pushback_ms == -1 and full.details == {
        "repository": "r",
        "path": "/data/packs/7",
    }
    assert failure_of(StorageFull("the index is full")).reason == "STORAGE_FULL"
    busy = failure_of(Overloaded("busy", retry_after=0.5))
    assert busy.code == grpc.StatusCode.RESOURCE_EXHAUSTED and busy.reason == "OVERLOADED"
    assert 500 <= busy.retry_pushback_ms <= 1000
    other = failure_of(OSError(errno.EIO, "I/O error"))
    assert other.code == grpc.StatusCode.INTERNAL and other.reason == "INTERNAL"
