"""Fuzz every RPC of every hoard.v1 service with requests drawn from its descriptor.

Each RPC gets malformed and extreme messages (see ``hostile_requests``) and raw bytes that
are not a message at all; client streams get a few such messages, server streams are read
to their end. Fields name real things most of the time (the repositories, files, keys,
datasets, buffers and records stored first, and valid arrays, selections, filters), so
that calls get past the first check.

The property: no answer is INTERNAL, UNKNOWN or UNIMPLEMENTED, no call hangs, the daemon
answers its health check after every example, and at the end what was stored before
reads back the same. Only read-only methods (ROLE_READ) may name the repository holding
that data; the others act on a copy of it ("scratch") that they may wreck. An RPC that no
servicer implements yet is an expected failure (xfail), fuzzed as soon as one does.

``HOARD_FUZZ_EXAMPLES`` sets the examples per RPC (default 120, about a minute in all); the
``slow`` variant runs many more.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import grpc
import h5py
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness import DaemonProcess
from hostile_requests import (
    METHODS,
    Hints,
    Method,
    call_raw,
    garbage,
    mostly,
    request_messages,
    serialized,
    served,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from stored_data import FOLDER, H5, WORKSTATION, XML, StoredData

from hoard.v1 import datasets_pb2 as dpb
from hoard.v1 import metadata_pb2 as mpb
from hoard.v1 import objects_pb2 as opb
from hoard.v1 import repositories_pb2 as rpb
from hoard.v1 import repositories_pb2_grpc
from hoard_server.daemon.services import SERVICES

EXAMPLES = int(os.environ.get("HOARD_FUZZ_EXAMPLES", "120"))
SLOW_EXAMPLES = 2000
KEPT = "default"  # read-only methods only
SCRATCH = "scratch"  # everything else
ENDLESS = {"Datasets.Follow"}  # streams that last until the client cancels
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNIMPLEMENTED}
CALL_TIMEOUT = 60.0  # a call that takes longer hangs (DEADLINE_EXCEEDED fails the test)


def test_every_rpc_is_fuzzed():
    """The parametrisation comes from the descriptors: every hoard.v1 service the daemon
    serves (its one table, ``SERVICES``) must be among them, each RPC once."""
    fuzzed = {m.descriptor.containing_service.full_name for m in METHODS}
    served_by_daemon = {row.name for row in SERVICES if row.name.startswith("hoard.")}
    assert served_by_daemon == fuzzed
    assert len(METHODS) == len({m.path for m in METHODS})
    assert {m.name for m in METHODS} >= ENDLESS


def examples() -> dict[str, list]:
    """Valid messages of the types that are hard to hit field by field."""
    nodes = [
        dpb.NodeRef(repository=r, path=H5, dataset=d)
        for r in (KEPT, SCRATCH)
        for d in ("data", "rows", "")
    ]
    arrays = [
        dpb.Array(dtype="<f8", shape=[2, 3], data=bytes(48)),
        dpb.Array(dtype="<i4", shape=[4, 5], data=bytes(80)),
        dpb.Array(dtype="<i4", shape=[], data=bytes(4)),
        dpb.Array(dtype="str", shape=[2], strings=["a", "b"]),
        dpb.Array(dtype="<f8", shape=[0, 3]),
    ]
    selections = [
        dpb.Selection(),
        dpb.Selection(items=[dpb.SelectionItem(index=1)]),
        dpb.Selection(items=[dpb.SelectionItem(slice=dpb.Slice(start=1, stop=3, step=1))]),
        dpb.Selection(items=[dpb.SelectionItem(ellipsis=True), dpb.SelectionItem(index=-1)]),
        dpb.Selection(items=[dpb.SelectionItem(indices=dpb.IndexList(values=[0, 2]))]),
    ]
    conditions = [
        mpb.Condition(field="process", op=">=", values=[mpb.FieldValue(int_value=1)]),
        mpb.Condition(field="label", op="prefix", values=[mpb.FieldValue(string_value="run")]),
        mpb.Condition(
            field="process", op="in", values=[mpb.FieldValue(int_value=n) for n in range(3)]
        ),
    ]
    records = [
        mpb.Record(
            path="C:/fuzz/f",
            signature=mpb.FileSignature(size=1, mtime_ns=1, ctime_ns=1, inode=1),
            fields={"process": mpb.FieldValue(int_value=7)},
        )
    ]
    return {
        "hoard.v1.NodeRef": nodes,
        "hoard.v1.Array": arrays,
        "hoard.v1.Selection": selections,
        "hoard.v1.Condition": conditions,
        "hoard.v1.Filter": [mpb.Filter(condition=c) for c in conditions],
        "hoard.v1.Record": records,
        "hoard.v1.PutHeader": [opb.PutHeader(repository=SCRATCH, size=3)],
        "hoard.v1.ImportHeader": [dpb.ImportHeader(repository=SCRATCH, path="fuzz/in.h5")],
        # the messages of the client streams: a stream drawn from them is often whole
        "hoard.v1.PutRequest": [
            opb.PutRequest(header=opb.PutHeader(repository=SCRATCH)),
            opb.PutRequest(chunk=b"abc"),
            opb.PutRequest(finish=opb.PutFinish(size=3)),
        ],
        "hoard.v1.ImportRequest": [
            dpb.ImportRequest(header=dpb.ImportHeader(repository=SCRATCH, path="fuzz/in.h5")),
            dpb.ImportRequest(chunk=small_h5()),
        ],
        "hoard.v1.AppendDataRequest": [
            dpb.AppendDataRequest(
                node=dpb.NodeRef(repository=SCRATCH, path=H5, dataset="appended"),
                data=arrays[0],
                grow_dimension=0,
            )
        ],
        "hoard.v1.AppendRequest": [
            dpb.AppendRequest(
                node=dpb.NodeRef(repository=SCRATCH, path=H5, dataset="appended"),
                data=arrays[0],
                grow_dimension=0,
                sequence=n,
            )
            for n in (1, 2)
        ],
    }


def small_h5() -> bytes:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f["x"] = list(range(10))
    return buffer.getvalue()


class Target:
    """The module's daemon, its channel and the data stored before the fuzzing."""

    def __init__(self, base: Path) -> None:
        self.sync_root = base / "instrument"
        self.backup_root = base / "backups"
        self.backup_root.mkdir()
        self.daemon = DaemonProcess(
            str(base / "data"),
            "--sync-root",
            str(self.sync_root),
            "--backup-root",
            str(self.backup_root),
        )
        self.daemon.start()
        self.channel = grpc.insecure_channel(self.daemon.target)
        self.kept = StoredData(KEPT, self.sync_root).seed(self.channel)
        self.scratch = StoredData(SCRATCH, self.sync_root).seed(self.channel)
        self.before = self.kept.snapshot(self.channel)
        buffers = self.kept.buffers
        self.hints = Hints(
            by_field={
                "repository": [KEPT],
                "key": self.kept.keys,
                "expected_key": self.kept.keys,
                "page_token": ["", *self.kept.keys],
                "path": [H5, XML, FOLDER, "keep", *buffers, str(self.sync_root)],
                "hoard.v1.ReadFileRequest.path": buffers,
                "file": buffers,
                "folder": ["", "keep", FOLDER],
                "source": [H5, XML, FOLDER],
                "destination": [H5, "keep/other.h5", str(self.backup_root / "b")],
                "exclude": ["data.h5"],
                "dataset": ["data", "rows", "", "appended"],
                "where": ["", "/", "/x"],
                "dtype": ["<f8", "<i4", "|b1", "|S16", "<c16", "str", "O", "V8", "<M8[ns]"],
                "machine_id": [WORKSTATION, "", "@datasets"],
                "under": ["", "C:/", "C:/keep"],
                "field": ["process", "label", "machine_id", "path", "filename", "error"],
                "op": ["==", "!=", "<", "<=", ">", ">=", "in", "prefix", "like"],
                "text": ["process >= 0", "label == 'run 1' and process < 3", "(", "x =="],
                "output": ["paths", "records", "fields"],
                "regex_pattern": ["", "(", ".*", "^.*p[0-9]*c[0-9]b[0-9]{2}"],
                "glob_pattern": ["", "*", "**", "[", "*p*c?b*"],
            },
            protected=frozenset({KEPT}),
            writable=[SCRATCH],
            examples=examples(),
        )

    def restore_scratch(self) -> None:
        """Before each RPC's fuzzing: "scratch" exists (an EraseRepository took it: store
        it again) and has no quota (a SetRepositoryQuota may have set a tiny one), so that
        each RPC's requests get as far as they can."""
        stub = repositories_pb2_grpc.RepositoriesStub(self.channel)
        names = stub.ListRepositories(rpb.ListRepositoriesRequest(), timeout=30)
        if not any(r.name == SCRATCH for r in names.repositories):
            self.scratch.seed(self.channel)
        quota = next(m for m in METHODS if m.name == "Repositories.SetRepositoryQuota")
        if served(quota):
            stub.SetRepositoryQuota(rpb.SetRepositoryQuotaRequest(repository=SCRATCH), timeout=30)

    def healthy(self) -> None:
        health = health_pb2_grpc.HealthStub(self.channel)
        reply = health.Check(health_pb2.HealthCheckRequest(), timeout=30)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert self.daemon.running, "the daemon exited:\n" + self.daemon.log_tail()

    def check_intact(self) -> None:
        """The daemon answers, the kept repository reads back as before, and the daemon's
        log holds no traceback."""
        self.healthy()
        after = self.kept.snapshot(self.channel)
        for part, value in self.before.items():
            assert after[part] == value, f"the kept repository's {part} changed"
        log = "".join(self.daemon.log)
        assert "Traceback" not in log, log[-6000:]

    def close(self) -> None:
        self.channel.close()
        self.daemon.stop()


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    t = Target(tmp_path_factory.mktemp("fuzz"))
    try:
        yield t
        t.check_intact()
    finally:
        t.close()


def payloads(method: Method, hints: Hints) -> st.SearchStrategy[list[bytes]]:
    """What one call sends: messages of the method's request type, or garbage bytes
    (a few of either for a client stream, or the type's examples in any order: a whole
    upload now and then)."""
    message = request_messages(method.request, hints, method.read_only).map(
        lambda m: m.SerializeToString()
    )
    one = mostly(message, garbage())
    if not method.client_streaming:
        return one.map(lambda p: [p])
    drawn = st.lists(one, min_size=0, max_size=4)
    examples = hints.examples_of(method.request, method.read_only)
    if not examples:
        return drawn
    return st.one_of(drawn, st.permutations(examples).map(serialized))


def shown(sent: list[bytes]) -> list[bytes]:
    return [p if len(p) <= 300 else p[:300] + b"..." for p in sent]


def fuzz(target: Target, method: Method, examples: int) -> None:
    if not served(method):
        pytest.xfail(f"{method.name}: no servicer implements it yet (UNIMPLEMENTED)")
    target.restore_scratch()
    seen: dict[str, int] = {}

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(sent=payloads(method, target.hints))
    def check(sent: list[bytes]) -> None:
        if not method.read_only:  # never a write that names the kept repository by chance
            assume(not any(KEPT.encode() in p for p in sent))
        endless = 0.5 if method.name in ENDLESS else None
        outcome = call_raw(target.channel, method, sent, CALL_TIMEOUT, endless_after=endless)
        seen[outcome.code.name] = seen.get(outcome.code.name, 0) + 1
        assert outcome.code not in FORBIDDEN, (method.name, shown(sent), outcome)
        if endless is None:
            assert outcome.code != grpc.StatusCode.DEADLINE_EXCEEDED, (method.name, outcome)
        target.healthy()

    check()
    print(method.name, seen)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_fuzzed_requests(target, method):
    fuzz(target, method, EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_fuzzed_requests_long(target, method):
    fuzz(target, method, SLOW_EXAMPLES)


# What the fuzzing found, each with the precise status it now gets.
FOUND = [
    # a machine_id past the index's limit reached the record encoder of a sync's workers
    # (a 16-bit length): INTERNAL struct.error
    (
        "MetadataCache.SynchronizeDirectory",
        lambda t: mpb.SyncRequest(
            repository=SCRATCH, paths=[str(t.sync_root)], machine_id="m" * 70_000
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    # an empty order_by field went to the schema's lookup, and LMDB takes no empty key:
    # INTERNAL BadValsizeError
    (
        "MetadataCache.Query",
        lambda t: mpb.QueryRequest(repository=KEPT, order_by=[mpb.OrderBy(field="")]),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    # text with a NUL reached h5py, whose variable-length strings refuse it: INTERNAL
    # ValueError (found by the slow variant)
    (
        "Datasets.SetMetadata",
        lambda t: dpb.SetMetadataRequest(
            node=dpb.NodeRef(repository=SCRATCH, path=H5, dataset="data"),
            metadata={"k": dpb.Value(string_value="a\x00b")},
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "Datasets.SetMetadata",
        lambda t: dpb.SetMetadataRequest(
            node=dpb.NodeRef(repository=SCRATCH, path=H5),
            metadata={
                "k": dpb.Value(array_value=dpb.Array(dtype="str", shape=[1], strings=["\x00"]))
            },
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    # a key of 64 KiB or more: HDF5 (libver "latest") stored the attribute, and the
    # node's attributes could never be read again (INTERNAL RuntimeError "bad version
    # number for datatype message" on every later call)
    (
        "Datasets.SetMetadata",
        lambda t: dpb.SetMetadataRequest(
            node=dpb.NodeRef(repository=SCRATCH, path=H5, dataset="data"),
            metadata={"a" * 70_000: dpb.Value(int_value=1)},
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    # an append creating a dataset with an empty fixed dimension: h5py cannot chunk it,
    # INTERNAL ValueError
    (
        "Datasets.AppendData",
        lambda t: dpb.AppendDataRequest(
            node=dpb.NodeRef(repository=SCRATCH, path="found/zero.h5", dataset="rows"),
            data=dpb.Array(dtype="<f8", shape=[0, 3]),
            grow_dimension=1,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "Datasets.StoreData",
        lambda t: dpb.StoreDataRequest(
            node=dpb.NodeRef(repository=SCRATCH, path=H5, dataset="text"),
            data=dpb.Array(dtype="str", shape=[2], strings=["ok", "a\x00b"]),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
]


@pytest.mark.parametrize(("name", "make", "expected"), FOUND, ids=[f[0] for f in FOUND])
def test_what_the_fuzzing_found(target, name, make, expected):
    method = next(m for m in METHODS if m.name == name)
    outcome = call_raw(target.channel, method, [make(target).SerializeToString()], CALL_TIMEOUT)
    assert outcome.code == expected, outcome
    target.healthy()


def test_an_append_under_a_dataset_is_not_a_group(target):
    """Appending to "d/x" where "d" is a dataset: FAILED_PRECONDITION NOT_A_GROUP, as for
    StoreData (it was an INTERNAL TypeError from h5py's require_group)."""
    by_name = {m.name: m for m in METHODS}
    node = dpb.NodeRef(repository=SCRATCH, path="found/parents.h5", dataset="d")
    store = dpb.StoreDataRequest(node=node, data=dpb.Array(dtype="<i4", shape=[2], data=bytes(8)))
    assert call_raw(target.channel, by_name["Datasets.StoreData"], serialized([store])).code == (
        grpc.StatusCode.OK
    )
    under = dpb.NodeRef(repository=SCRATCH, path="found/parents.h5", where="/d", dataset="x")
    rows = dpb.Array(dtype="<f8", shape=[1, 3], data=bytes(24))
    append = dpb.AppendDataRequest(node=under, data=rows, grow_dimension=0)
    stream = dpb.AppendRequest(node=under, data=rows, grow_dimension=0, sequence=1)
    for name, request in [("Datasets.AppendData", append), ("Datasets.Append", stream)]:
        outcome = call_raw(target.channel, by_name[name], serialized([request]))
        assert outcome.code == grpc.StatusCode.FAILED_PRECONDITION, (name, outcome)
    target.healthy()


def test_stored_data_is_intact_after_the_fuzzing(target):
    """Runs last in the module (the fixture checks again at its end, for a run of the
    slow variant alone)."""
    target.check_intact()
