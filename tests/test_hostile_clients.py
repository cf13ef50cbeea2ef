"""Hostile clients, RPC by RPC: garbage bytes, undecodable fields, bad names and keys,
extreme numbers, cancellations. Every RPC of every service is listed once in ``CALLS``; a
new RPC (or a new face's service) joins the table and is covered by every test here.

Each answer must be the precise status for the mistake, never INTERNAL or UNKNOWN, the log
must not fill with tracebacks, and what was stored before is still there, byte for byte.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import h5py
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import DaemonProcess, wait_until
from harness.waiting import WaitTimeout
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hoard
from hoard.v1 import datasets_pb2 as dpb
from hoard.v1 import datasets_pb2_grpc
from hoard.v1 import metadata_pb2 as mpb
from hoard.v1 import objects_pb2 as opb
from hoard.v1 import repositories_pb2 as rpb

OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
STORED = b"stored before the attack " * 100
KEY = hashlib.sha256(STORED).hexdigest()


@dataclass(frozen=True)
class Call:
    """One RPC and a valid request for it in repository ``repo`` (messages for a client
    stream). ``keys`` says where a key goes, for the bad-key test."""

    path: str
    client_streaming: bool
    server_streaming: bool
    make: Callable[[str, str], list]  # (repository, key) -> request messages
    has_repository: bool = True
    takes_key: bool = False
    endless: bool = False  # a stream that lasts until the client cancels (Follow)


def _h5_file() -> bytes:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f["x"] = list(range(10))
    return buffer.getvalue()


H5 = _h5_file()
# Dataset files the fixture makes in "default" for the DatasetFiles calls. The renamed and
# deleted ones are used once, by test_valid_requests_are_answered.
STORED_H5 = "hostile/stored.h5"
RENAME_ME = "hostile/rename-me.h5"
DELETE_ME = "hostile/delete-me.h5"
FOLDER_A = "hostile/folder-a"
PROJECT_XML = "hostile/Project.xml"


def _import(repo: str, key: str) -> list:
    return [
        dpb.ImportRequest(
            header=dpb.ImportHeader(repository=repo, path="hostile/imported.h5", overwrite=True)
        ),
        dpb.ImportRequest(chunk=H5),
    ]


def _put(repo: str, key: str) -> list:
    return [
        opb.PutRequest(header=opb.PutHeader(repository=repo, expected_key=key, size=len(STORED))),
        opb.PutRequest(chunk=STORED),
    ]


CALLS = [
    Call("/hoard.v1.Objects/Put", True, False, _put, takes_key=True),
    Call(
        "/hoard.v1.Objects/PutBatch",
        False,
        False,
        lambda r, k: [opb.PutBatchRequest(repository=r, objects=[b"x"])],
    ),
    Call(
        "/hoard.v1.Objects/Read",
        False,
        True,
        lambda r, k: [opb.ReadRequest(repository=r, key=k)],
        takes_key=True,
    ),
    Call(
        "/hoard.v1.Objects/ReadRange",
        False,
        False,
        lambda r, k: [opb.ReadRequest(repository=r, key=k, length=10)],
        takes_key=True,
    ),
    Call(
        "/hoard.v1.Objects/ReadMany",
        False,
        True,
        lambda r, k: [opb.ReadManyRequest(repository=r, keys=[k])],
        takes_key=True,
    ),
    Call(
        "/hoard.v1.Objects/Has",
        False,
        False,
        lambda r, k: [opb.HasRequest(repository=r, keys=[k])],
        takes_key=True,
    ),
    Call(
        "/hoard.v1.Objects/Stat",
        False,
        False,
        lambda r, k: [opb.StatRequest(repository=r, keys=[k])],
        takes_key=True,
    ),
    Call(
        "/hoard.v1.Objects/List",
        False,
        True,
        lambda r, k: [opb.ListRequest(repository=r, page_size=1, page_token=k)],
        takes_key=True,
    ),
    Call(
        "/hoard.v1.Objects/Delete",
        False,
        False,
        # a key that is not stored: the test must not delete what it checks afterwards
        lambda r, k: [opb.DeleteRequest(repository=r, keys=[k if k != KEY else "0" * 64])],
        takes_key=True,
    ),
    Call("/hoard.v1.Objects/Info", False, False, lambda r, k: [opb.InfoRequest(repository=r)]),
    Call(
        "/hoard.v1.Objects/Maintain",
        False,
        True,
        lambda r, k: [opb.MaintainRequest(repository=r, dry_run=True)],
    ),
    Call(
        "/hoard.v1.Objects/Verify",
        False,
        True,
        lambda r, k: [opb.VerifyRequest(repository=r, sample=0.5)],
    ),
    Call(
        "/hoard.v1.Objects/Backup",
        False,
        True,
        lambda r, k: [opb.BackupRequest(repository=r, destination=str(BACKUP_ROOT / "backup"))],
    ),
    Call(
        "/hoard.v1.Repositories/CreateRepository",
        False,
        False,
        lambda r, k: [rpb.CreateRepositoryRequest(repository=r)],
    ),
    Call(
        "/hoard.v1.Repositories/GetRepository",
        False,
        False,
        lambda r, k: [rpb.GetRepositoryRequest(repository=r)],
    ),
    Call(
        "/hoard.v1.Repositories/ListRepositories",
        False,
        False,
        lambda r, k: [rpb.ListRepositoriesRequest()],
        has_repository=False,
    ),
    Call(
        "/hoard.v1.Repositories/EraseRepository",
        False,
        False,
        # never the repository the tests read back: erase a throwaway one
        lambda r, k: [rpb.EraseRepositoryRequest(repository=r if r != "default" else "scratch")],
    ),
    Call(
        "/hoard.v1.Repositories/SetRepositoryQuota",
        False,
        False,
        lambda r, k: [rpb.SetRepositoryQuotaRequest(repository=r, quota_bytes=0)],
    ),
    Call(
        "/hoard.v1.DatasetFiles/ListFiles",
        False,
        True,
        lambda r, k: [dpb.ListFilesRequest(repository=r, folder="hostile", recursive=True)],
    ),
    Call(
        "/hoard.v1.DatasetFiles/DeleteFile",
        False,
        False,
        lambda r, k: [dpb.FileRequest(repository=r, path=DELETE_ME)],
    ),
    Call(
        "/hoard.v1.DatasetFiles/RenameFile",
        False,
        False,
        lambda r, k: [
            dpb.RenameRequest(
                repository=r, source=RENAME_ME, destination="hostile/renamed.h5", overwrite=True
            )
        ],
    ),
    Call(
        "/hoard.v1.DatasetFiles/CopyFile",
        False,
        False,
        lambda r, k: [
            dpb.RenameRequest(
                repository=r, source=STORED_H5, destination="hostile/copy.h5", overwrite=True
            )
        ],
    ),
    Call(
        "/hoard.v1.DatasetFiles/RemoveFiles",
        False,
        False,
        lambda r, k: [
            dpb.RemoveFilesRequest(repository=r, paths=["hostile/absent"], ignore_errors=True)
        ],
    ),
    Call(
        "/hoard.v1.DatasetFiles/DiskUsage",
        False,
        False,
        lambda r, k: [dpb.DiskUsageRequest(repository=r, path="hostile", h5_only=True)],
    ),
    Call(
        "/hoard.v1.DatasetFiles/ExportFile",
        False,
        True,
        lambda r, k: [dpb.FileRequest(repository=r, path=STORED_H5)],
    ),
    Call("/hoard.v1.DatasetFiles/ImportFile", True, False, _import),
    Call(
        "/hoard.v1.DatasetFiles/SnapshotFile",
        False,
        False,
        lambda r, k: [dpb.FileRequest(repository=r, path=STORED_H5)],
    ),
    Call(
        "/hoard.v1.DatasetFiles/CreateFolder",
        False,
        False,
        lambda r, k: [dpb.FolderRequest(repository=r, path="hostile/new-folder")],
    ),
    Call(
        "/hoard.v1.DatasetFiles/RenameFolder",
        False,
        False,
        lambda r, k: [
            dpb.RenameRequest(
                repository=r, source=FOLDER_A, destination="hostile/folder-b", overwrite=True
            )
        ],
    ),
    Call(
        "/hoard.v1.DatasetFiles/RemoveFolder",
        False,
        False,
        lambda r, k: [dpb.FolderRequest(repository=r, path="hostile/absent", ignore_errors=True)],
    ),
    Call(
        "/hoard.v1.DatasetFiles/WriteXmlMetadata",
        False,
        False,
        lambda r, k: [dpb.XmlMetadata(repository=r, path=PROJECT_XML, metadata={"name": "x"})],
    ),
    Call(
        "/hoard.v1.DatasetFiles/ReadXmlMetadata",
        False,
        False,
        lambda r, k: [dpb.FileRequest(repository=r, path=PROJECT_XML)],
    ),
    Call(
        "/hoard.v1.DatasetFiles/ZipFolder",
        False,
        True,
        lambda r, k: [dpb.ZipFolderRequest(repository=r, folder="hostile", exclude=["copy.h5"])],
    ),
]
DATASETS_H5 = "hostile/datasets.h5"


def _node(repo: str, dataset: str = "") -> dpb.NodeRef:
    return dpb.NodeRef(repository=repo, path=DATASETS_H5, dataset=dataset)


def _rows(n: int = 2) -> dpb.Array:
    return dpb.Array(dtype="<f8", shape=[n, 3], data=bytes(8 * 3 * n))


CALLS += [
    Call(
        "/hoard.v1.Datasets/StoreData",
        False,
        False,
        lambda r, k: [
            dpb.StoreDataRequest(
                node=_node(r, "data"), data=dpb.Array(dtype="<i4", shape=[4], data=bytes(16))
            )
        ],
    ),
    Call(
        "/hoard.v1.Datasets/AppendData",
        False,
        False,
        lambda r, k: [dpb.AppendDataRequest(node=_node(r, "rows"), data=_rows(), grow_dimension=0)],
    ),
    Call(
        "/hoard.v1.Datasets/Append",
        True,
        True,
        lambda r, k: [
            dpb.AppendRequest(node=_node(r, "rows"), data=_rows(), grow_dimension=0, sequence=1),
            dpb.AppendRequest(data=_rows(3), grow_dimension=0, sequence=2),
        ],
    ),
    Call(
        "/hoard.v1.Datasets/GetData",
        False,
        False,
        lambda r, k: [dpb.GetDataRequest(node=_node(r, "data"))],
    ),
    Call(
        "/hoard.v1.Datasets/ReadData",
        False,
        True,
        lambda r, k: [dpb.GetDataRequest(node=_node(r, "rows"))],
    ),
    Call(
        "/hoard.v1.Datasets/Follow",
        False,
        True,
        lambda r, k: [dpb.FollowRequest(node=_node(r, "rows"), grow_dimension=0)],
        endless=True,
    ),
    Call("/hoard.v1.Datasets/GetDataShape", False, False, lambda r, k: [_node(r, "rows")]),
    Call(
        "/hoard.v1.Datasets/SetMetadata",
        False,
        False,
        lambda r, k: [
            dpb.SetMetadataRequest(node=_node(r), metadata={"k": dpb.Value(int_value=1)})
        ],
    ),
    Call("/hoard.v1.Datasets/GetMetadata", False, False, lambda r, k: [_node(r)]),
    Call(
        "/hoard.v1.Datasets/RemoveMetadata",
        False,
        False,
        lambda r, k: [dpb.RemoveMetadataRequest(node=_node(r), key="k")],
    ),
    # after the calls that read "data": the table's requests run once each, in this order
    Call("/hoard.v1.Datasets/RemoveData", False, False, lambda r, k: [_node(r, "data")]),
    Call("/hoard.v1.Datasets/IsValidFile", False, False, lambda r, k: [_node(r)]),
    Call("/hoard.v1.Datasets/CloseFile", False, False, lambda r, k: [_node(r)]),
    Call("/hoard.v1.Datasets/Describe", False, False, lambda r, k: [_node(r)]),
]
BACKUP_ROOT = Path("/nonexistent")  # set by the fixture
SYNC_ROOT = Path("/nonexistent")  # set by the fixture: a sync root holding BUFFER
BUFFER = "Hostile_00001p1c0b01_dump_00.000"  # a buffer's name; not one inside: a parse failure


def _buffer() -> str:
    return str(SYNC_ROOT / BUFFER)


def _record(n: int = 0) -> mpb.Record:
    return mpb.Record(
        path=f"C:/hostile/f{n}",
        signature=mpb.FileSignature(size=1, mtime_ns=2, ctime_ns=3, inode=4),
        fields={"process": mpb.FieldValue(int_value=n)},
    )


def _filter() -> mpb.Filter:
    return mpb.Filter(
        condition=mpb.Condition(field="process", op=">=", values=[mpb.FieldValue(int_value=0)])
    )


CALLS += [
    Call(
        "/hoard.v1.MetadataCache/SynchronizeDirectory",
        False,
        True,
        lambda r, k: [mpb.SyncRequest(repository=r, paths=[str(SYNC_ROOT)], batch_size=10)],
    ),
    Call(
        "/hoard.v1.MetadataCache/AddFiles",
        False,
        True,
        lambda r, k: [mpb.AddFilesRequest(repository=r, files=[_buffer()])],
    ),
    Call(
        "/hoard.v1.MetadataCache/RemoveFiles",
        False,
        False,
        lambda r, k: [mpb.RemoveFilesFromCacheRequest(repository=r, files=["/gone/file"])],
    ),
    Call(
        "/hoard.v1.MetadataCache/GetNonSynchronizedFiles",
        False,
        False,
        lambda r, k: [mpb.NonSynchronizedRequest(repository=r, files=[_buffer()])],
    ),
    Call(
        "/hoard.v1.MetadataCache/Signatures",
        False,
        True,
        lambda r, k: [mpb.SignaturesRequest(repository=r, machine_id="ws", under="C:/")],
    ),
    Call(
        "/hoard.v1.MetadataCache/PushRecords",
        False,
        False,
        lambda r, k: [mpb.PushRecordsRequest(repository=r, machine_id="ws",
                                             records=[_record(0), _record(1)])],
    ),
    Call(
        "/hoard.v1.MetadataCache/RemoveRecords",
        False,
        False,
        lambda r, k: [mpb.RemoveRecordsRequest(repository=r, machine_id="ws",
                                               paths=["C:/hostile/f1"])],
    ),
    Call(
        "/hoard.v1.MetadataCache/Query",
        False,
        True,
        lambda r, k: [mpb.QueryRequest(repository=r, filter=_filter(), limit=5,
                                       order_by=[mpb.OrderBy(field="process")],
                                       output="records")],
    ),
    Call(
        "/hoard.v1.MetadataCache/Count",
        False,
        False,
        lambda r, k: [mpb.CountRequest(repository=r, text="process >= 0")],
    ),
    Call(
        "/hoard.v1.MetadataCache/Schema",
        False,
        False,
        lambda r, k: [mpb.SchemaRequest(repository=r)],
    ),
    Call(
        "/hoard.v1.MetadataCache/ReadFile",
        False,
        True,
        lambda r, k: [mpb.ReadFileRequest(repository=r, path=_buffer())],
    ),
]


def test_every_rpc_is_in_the_table():
    """A new RPC must join CALLS, so that every test here covers it."""
    listed = {c.path for c in CALLS}
    services = [
        *opb.DESCRIPTOR.services_by_name.values(),
        *rpb.DESCRIPTOR.services_by_name.values(),
        *dpb.DESCRIPTOR.services_by_name.values(),
        *mpb.DESCRIPTOR.services_by_name.values(),
    ]
    for service in services:
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            assert path in listed, f"{path} is missing from CALLS"
            call = next(c for c in CALLS if c.path == path)
            assert call.client_streaming == method.client_streaming
            assert call.server_streaming == method.server_streaming


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    global BACKUP_ROOT, SYNC_ROOT
    base = tmp_path_factory.mktemp("hostile")
    BACKUP_ROOT = base / "backups"
    BACKUP_ROOT.mkdir()
    SYNC_ROOT = base / "instrument"
    SYNC_ROOT.mkdir()
    (SYNC_ROOT / BUFFER).write_bytes(b"not a buffer header " * 100)
    d = DaemonProcess(
        str(base / "data"), "--backup-root", str(BACKUP_ROOT), "--sync-root", str(SYNC_ROOT)
    ).start()
    with hoard.connect(d.target) as client:
        assert client.repository().put_object(STORED) == KEY
    with grpc.insecure_channel(d.target) as ch:  # what the DatasetFiles calls act on
        files = datasets_pb2_grpc.DatasetFilesStub(ch)
        for path in (STORED_H5, RENAME_ME, DELETE_ME):
            files.ImportFile(iter(_import("default", "")))
            files.RenameFile(
                dpb.RenameRequest(
                    repository="default", source="hostile/imported.h5", destination=path
                )
            )
        files.CreateFolder(dpb.FolderRequest(repository="default", path=FOLDER_A))
        files.WriteXmlMetadata(
            dpb.XmlMetadata(repository="default", path=PROJECT_XML, metadata={"name": "x"})
        )
        for call in CALLS:  # a dataset with rows, for the Datasets calls; the buffer indexed
            if call.path.endswith(("/StoreData", "/AppendData", "/SynchronizeDirectory")):
                assert send(ch, call, call.make("default", KEY))[0] == OK
    yield d
    d.stop()


@pytest.fixture(scope="module")
def channel(daemon):
    with grpc.insecure_channel(daemon.target) as ch:
        yield ch


def invoke(channel: grpc.Channel, call: Call, payloads: list[bytes], timeout: float = 20):
    """Send raw bytes; return the status code (the whole response stream is read)."""
    try:
        if call.client_streaming and call.server_streaming:
            list(channel.stream_stream(call.path)(iter(payloads), timeout=timeout))
        elif call.client_streaming:
            channel.stream_unary(call.path)(iter(payloads), timeout=timeout)
        elif call.server_streaming and call.endless:
            stream = channel.unary_stream(call.path)(payloads[0], timeout=timeout)
            next(stream, None)  # it answered; it would go on until cancelled
            stream.cancel()
        elif call.server_streaming:
            list(channel.unary_stream(call.path)(payloads[0], timeout=timeout))
        else:
            channel.unary_unary(call.path)(payloads[0], timeout=timeout)
    except grpc.RpcError as exc:
        return exc.code(), exc.details()
    return OK, ""


def send(channel, call: Call, messages: list, timeout: float = 20):
    return invoke(channel, call, [m.SerializeToString() for m in messages], timeout)


def assert_daemon_whole(
    daemon: DaemonProcess, channel: grpc.Channel, short_calls_only: bool = False
) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with hoard.connect(daemon.target) as client:
        repo = client.repository()
        assert repo.has_objects([KEY]) == [True]
        assert repo.read(KEY, 0, len(STORED)) == STORED  # one unary ReadRange
        if not short_calls_only:
            assert repo.get_object_content(KEY) == STORED  # a Read stream
    assert daemon.proc.poll() is None
    log = "".join(daemon.log)
    assert "Traceback" not in log, log[-4000:]


def test_valid_requests_are_answered(daemon, channel):
    """The table's requests are valid: the other tests change one thing at a time."""
    with hoard.connect(daemon.target) as client:
        client.create_repository("scratch")  # what the EraseRepository request erases
    for call in CALLS:
        code, details = send(channel, call, call.make("default", KEY))
        assert code == OK, (call.path, code, details)
    assert_daemon_whole(daemon, channel)


GARBAGE = [b"\xff", b"\xff\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x12\x05abc", b"\x08"]


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c.path.rsplit("/", 1)[1])
def test_undecodable_requests_are_invalid_argument_with_one_log_line(daemon, channel, call):
    before = len(daemon.log)
    for garbage in GARBAGE:
        code, details = invoke(channel, call, [garbage])
        assert code == INVALID, (call.path, garbage, code, details)
        assert "not a valid" in details
    if call.has_repository:  # field 1 is the repository (or the Put header): bad UTF-8 there
        bad_utf8 = (
            b"\x0a\x03a\xffb" if call.path != "/hoard.v1.Objects/Put" else b"\x0a\x04\x0a\x02\xc3("
        )
        code, details = invoke(channel, call, [bad_utf8])
        assert code == INVALID, (call.path, code, details)
    expected = len(GARBAGE) + call.has_repository
    daemon.wait_for_log("undecodable request", count=expected, since=before)
    lines = daemon.log[before:]
    assert sum("undecodable request" in line for line in lines) == expected
    assert not any("Traceback" in line for line in lines), "".join(lines)


BAD_NAMES = ["", "../default", "a/b", "x" * 200, ".creating-0123abcd", "-x", "a\x00b", "déjà"]


@pytest.mark.parametrize("call", [c for c in CALLS if c.has_repository], ids=lambda c: c.path)
def test_bad_repository_names(daemon, channel, call):
    for name in BAD_NAMES:
        code, details = send(channel, call, call.make(name, KEY))
        assert code == INVALID, (call.path, name, code, details)
        assert "repository" in details
    if "CreateRepository" not in call.path and "Backup" not in call.path:
        code, details = send(channel, call, call.make("no-such-repository", KEY))
        assert code == NOT_FOUND, (call.path, code, details)
    assert_daemon_whole(daemon, channel)


BAD_KEYS = ["", "xyz", KEY.upper(), KEY + "0", KEY[:-1], " " * 64, KEY[:-1] + "\x00"]


@pytest.mark.parametrize("call", [c for c in CALLS if c.takes_key], ids=lambda c: c.path)
def test_bad_keys(daemon, channel, call):
    for key in BAD_KEYS:
        if key == "" and ("Put" in call.path or "List" in call.path):
            continue  # an empty expected key / page token means "none"
        code, details = send(channel, call, call.make("default", key))
        assert code == INVALID, (call.path, key, code, details)
    assert_daemon_whole(daemon, channel)


U64 = 2**64 - 1


def test_extreme_numbers(daemon, channel):
    by_name = {c.path.rsplit("/", 1)[1]: c for c in CALLS}
    cases = [
        (
            "Read",
            opb.ReadRequest(repository="default", key=KEY, offset=U64),
            grpc.StatusCode.OUT_OF_RANGE,
        ),
        ("Read", opb.ReadRequest(repository="default", key=KEY, offset=5, length=U64), OK),
        (
            "ReadRange",
            opb.ReadRequest(repository="default", key=KEY, offset=U64, length=1),
            grpc.StatusCode.OUT_OF_RANGE,
        ),
        ("ReadRange", opb.ReadRequest(repository="default", key=KEY, length=U64), INVALID),
        ("ReadMany", opb.ReadManyRequest(repository="default", keys=[KEY], inline_limit=U64), OK),
        ("List", opb.ListRequest(repository="default", page_size=2**32 - 1), OK),
        ("Maintain", opb.MaintainRequest(repository="default", dead_fraction=math.nan), INVALID),
        ("Maintain", opb.MaintainRequest(repository="default", dead_fraction=-1), INVALID),
        ("Maintain", opb.MaintainRequest(repository="default", dead_fraction=math.inf), INVALID),
        (
            "Maintain",
            opb.MaintainRequest(repository="default", dry_run=True, max_packs=2**32 - 1),
            OK,
        ),
        ("Verify", opb.VerifyRequest(repository="default", sample=math.nan), INVALID),
        ("Verify", opb.VerifyRequest(repository="default", sample=2), INVALID),
        ("Verify", opb.VerifyRequest(repository="default", pack_id=2**32 - 1), OK),
    ]
    for name, request, expected in cases:
        code, details = send(channel, by_name[name], [request])
        assert code == expected, (name, request, code, details)
    put = by_name["Put"]
    header = opb.PutRequest(header=opb.PutHeader(repository="default", size=3))
    for messages in (
        [],  # no header at all
        [opb.PutRequest(chunk=b"abc")],  # data before the header
        [header, header, opb.PutRequest(chunk=b"abc")],  # two headers
        [header, opb.PutRequest(chunk=b"abcd")],  # more than announced
        [header, opb.PutRequest(chunk=b"ab")],  # less than announced
        [
            opb.PutRequest(header=opb.PutHeader(repository="default", size=U64)),
            opb.PutRequest(chunk=b"a"),
        ],
    ):
        code, details = send(channel, put, messages)
        assert code == INVALID, (messages, code, details)
    assert_daemon_whole(daemon, channel)


@pytest.mark.parametrize(
    "call", [c for c in CALLS if c.server_streaming or c.client_streaming], ids=lambda c: c.path
)
def test_cancel_mid_stream(daemon, channel, call):
    """A client that goes away mid-stream costs nothing lasting."""
    for _ in range(5):
        if call.client_streaming:  # cancelled once its first message is on its way
            messages = call.make("default", KEY)
            sent, resume = threading.Event(), threading.Event()

            def requests(messages=messages, sent=sent, resume=resume):
                yield messages[0]
                sent.set()  # grpc asks for the next one: the first has gone out
                resume.wait(10)
                yield from messages[1:]

            future = channel.stream_unary(
                call.path,
                request_serializer=lambda m: m.SerializeToString(),
            ).future(requests())
            assert sent.wait(10)
            future.cancel()
            resume.set()
        else:  # cancelled once its first reply arrived (or right away if it failed)
            stream = channel.unary_stream(
                call.path, request_serializer=lambda m: m.SerializeToString()
            )(call.make("default", KEY)[0])
            with contextlib.suppress(grpc.RpcError, StopIteration):
                next(stream)
            stream.cancel()
    assert_daemon_whole(daemon, channel)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    index=st.integers(0, len(CALLS) - 1),
    payload=st.one_of(st.binary(max_size=300), st.builds(os.urandom, st.integers(1, 64))),
)
def test_fuzzed_requests_never_get_an_internal_error(daemon, channel, index, payload):
    call = CALLS[index]
    if call.path.endswith(("EraseRepository", "Delete")):
        return  # fuzz may spell a valid request: never one that destroys the fixture's data
    code, details = invoke(channel, call, [payload], timeout=30)
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (
        call.path,
        payload,
        details,
    )


def test_fuzz_left_the_daemon_whole(daemon, channel):
    assert_daemon_whole(daemon, channel)


# -- repository names and start-up clean-up -------------------------------------------------


def test_names_like_leftovers_are_repositories_and_survive_a_restart(daemon_factory):
    """A user may call a repository "proj.creating-1": start-up clean-up must leave it (and
    its data) alone, and still remove real leftovers of a create or erase cut short."""
    d = daemon_factory()
    names = ["proj.creating-1", "x.erasing-abc", "y.creating-deadbeef"]
    with hoard.connect(d.target) as client:
        keys = {}
        for name in names:
            client.create_repository(name)
            keys[name] = client.repository(name).put_object(name.encode() * 10)
    root = Path(d.data_dir, "repositories")
    leftover = root / ".creating-0123456789abcdef"
    (leftover / "packs").mkdir(parents=True)
    d.restart()
    assert not leftover.exists()
    with hoard.connect(d.target) as client:
        assert sorted(r.name for r in client.list_repositories()) == sorted([*names, "default"])
        for name in names:
            assert client.repository(name).get_object_content(keys[name]) == name.encode() * 10
        client.erase_repository(names[0])
        assert not any(p.name.startswith(names[0]) for p in root.iterdir())


def test_hundreds_of_streams_that_never_read(daemon_factory):
    """300 Read streams from one client that reads none of them, spread over 3
    connections: each beyond the read slots is refused at once (RESOURCE_EXHAUSTED, reason
    OVERLOADED), the daemon's memory stays bounded, health and short calls keep answering,
    and the slots come back when the client goes away.

    A daemon of its own: the module's may still be unwinding the streams that the tests
    above cancelled, whose workers would delay the refusals counted here."""
    daemon = daemon_factory()
    channel = grpc.insecure_channel(daemon.target)
    big = os.urandom(8 << 20)
    with hoard.connect(daemon.target) as client:
        big_key = client.repository().put_object(big)
        assert client.repository().put_object(STORED) == KEY
    conns = [
        grpc.insecure_channel(daemon.target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(3)
    ]
    before = daemon.rss()
    calls = []
    try:
        for i in range(300):
            read = conns[i % 3].unary_stream(
                "/hoard.v1.Objects/Read",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=opb.ReadResponse.FromString,
            )
            calls.append(read(opb.ReadRequest(repository="default", key=big_key)))
        # 24 read slots of 64 workers: the streams beyond them are refused at once
        # (a few more may finish, or still wait for a stream of their connection)

        def refused() -> list:
            return [c for c in calls if c.done() and c.code() == grpc.StatusCode.RESOURCE_EXHAUSTED]

        def outcome() -> str:
            codes = collections.Counter(c.code().name if c.done() else "running" for c in calls)
            return ", ".join(f"{k}: {v}" for k, v in sorted(codes.items()))

        # not a timing check: a loaded CI machine may take a while to answer 300 streams
        try:
            wait_until(lambda: len(refused()) >= 300 - 24 - 10, timeout=90)
        except WaitTimeout:
            raise AssertionError(f"streams beyond the slots not refused: {outcome()}") from None
        assert_daemon_whole(daemon, channel, short_calls_only=True)  # streams: all slots taken
        assert hoard.errors.from_rpc_error(refused()[0]).reason == "OVERLOADED"  # ErrorInfo
        grown = daemon.rss() - before
        assert grown < 400 << 20, f"daemon RSS grew by {grown >> 20} MiB"
    finally:
        for c in calls:
            c.cancel()
        for ch in [*conns, channel]:
            ch.close()

    def all_slots_free() -> bool:
        """24 Read streams at once (the read slots), each admitted: none refused."""
        with grpc.insecure_channel(
            daemon.target, options=[("grpc.use_local_subchannel_pool", 1)]
        ) as ch:
            read = ch.unary_stream(
                "/hoard.v1.Objects/Read",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=opb.ReadResponse.FromString,
            )
            probes = [read(opb.ReadRequest(repository="default", key=big_key)) for _ in range(24)]
            try:
                for probe in probes:
                    next(probe)
                return True
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                return False
            finally:
                for probe in probes:
                    probe.cancel()

    wait_until(all_slots_free, what="the cancelled streams' slots to come back")
    with hoard.connect(daemon.target) as client:
        assert client.repository().get_object_content(big_key) == big
