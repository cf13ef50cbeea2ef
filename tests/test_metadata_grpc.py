"""hoard.v1.MetadataCache against the real daemon (a subprocess), through the generated
stubs: every RPC's happy path and its refusals (status and reason), query results equal
to the engine's on the same files, paging by token, progress streams, a sync cancelled
midway, sync roots, the dataset files indexed as they are written, and the cache in
backup, restore, verify, info and erase."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from buffers import BufferSpec, write_buffer
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from harness import wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hoard.v1 import datasets_pb2 as dpb
from hoard.v1 import datasets_pb2_grpc, metadata_pb2_grpc, objects_pb2_grpc, repositories_pb2_grpc
from hoard.v1 import metadata_pb2 as pb
from hoard.v1 import objects_pb2 as opb
from hoard.v1 import repositories_pb2 as rpb
from hoard_server.services.metadata import filters as f
from hoard_server.services.metadata.cache import MetadataCache
from hoard_server.services.metadata.query import ALL_FIELDS, MetadataQuery, OrderBy
from hoard_server.services.metadata.sync import default_workers

REPO = "default"


def failure(call) -> tuple[grpc.StatusCode, str, error_details_pb2.ErrorInfo]:
    with pytest.raises(grpc.RpcError) as exc:
        result = call()
        if hasattr(result, "__iter__"):
            list(result)
    err = exc.value
    status = rpc_status.from_call(err)
    info = error_details_pb2.ErrorInfo()
    assert status is not None and status.details[0].Unpack(info)
    return err.code(), err.details(), info


def refused(call, code: grpc.StatusCode, reason: str) -> str:
    got, message, info = failure(call)
    assert (got, info.reason) == (code, reason), message
    return message


def make_buffers(directory: Path, count: int, start: int = 0) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        spec = BufferSpec(process=i, channel=1 + i % 3, compression_frq=(1, 4)[i % 2],
                          partnumber=f"PN-{i % 5:04d}")
        paths.append(write_buffer(directory / spec.file_name(), spec))
    return paths


@pytest.fixture
def roots(tmp_path: Path) -> Path:
    root = tmp_path / "instrument"
    make_buffers(root / "a", 24)
    make_buffers(root / "b" / "deep", 6, start=100)
    return root


@pytest.fixture
def daemon(daemon_factory, tmp_path, roots):
    return daemon_factory(tmp_path / "data", "--sync-root", str(roots))


@pytest.fixture
def stub(daemon) -> Iterator[metadata_pb2_grpc.MetadataCacheStub]:
    with grpc.insecure_channel(daemon.target) as channel:
        yield metadata_pb2_grpc.MetadataCacheStub(channel)


def sync(stub, *paths, **kw) -> list[pb.SyncProgress]:
    kw.setdefault("sync_subdirectories", True)
    return list(stub.SynchronizeDirectory(
        pb.SyncRequest(repository=kw.pop("repository", REPO), paths=[str(p) for p in paths],
                       **kw)))


def query(stub, **kw) -> list[pb.Record]:
    kw.setdefault("repository", REPO)
    return [r for msg in stub.Query(pb.QueryRequest(**kw)) for r in msg.records]


def paths(records) -> list[str]:
    return [r.path for r in records]


def cond(field: str, op: str, *values: pb.FieldValue) -> pb.Filter:
    return pb.Filter(condition=pb.Condition(field=field, op=op, values=values))


def i(v: int) -> pb.FieldValue:
    return pb.FieldValue(int_value=v)


def s(v: str) -> pb.FieldValue:
    return pb.FieldValue(string_value=v)


@pytest.fixture
def engine(tmp_path, roots) -> Iterator[MetadataCache]:
    """The engine, in this process, over the same files: what the daemon must agree with."""
    with MetadataCache(str(tmp_path / "local"), sync_roots=[str(roots)]) as cache:
        list(cache.synchronize_directory(roots))
        yield cache


# -- syncs and queries ---------------------------------------------------------------------
def test_a_sync_streams_progress_and_queries_equal_the_engine_s(stub, roots, engine):
    progress = sync(stub, roots, batch_size=7)
    assert len(progress) > 2 and progress[-1].done and not any(p.done for p in progress[:-1])
    assert (progress[-1].scanned, progress[-1].added, progress[-1].failed) == (30, 30, 0)
    again = sync(stub, roots)[-1]
    assert (again.unchanged, again.added, again.updated) == (30, 0, 0)

    cases = [
        ("channel == 1 and process > 4", ["process"]),
        ("compression_frq in (4) or partnumber prefix 'PN-0003'", ["-process"]),
        ("not (channel == 2)", ["channel", "-process"]),
        ("", ["partnumber", "process"]),
    ]
    for text, order in cases:
        expected = engine.get_matching_files(MetadataQuery.from_text(text, order_by=order))
        order_by = [pb.OrderBy(field=o.lstrip("-"), descending=o.startswith("-"))
                    for o in order]
        assert paths(query(stub, text=text, order_by=order_by)) == expected, text
        count = stub.Count(pb.CountRequest(repository=REPO, text=text)).count
        assert count == len(expected) == engine.count(text)


def test_a_structured_filter_means_what_its_text_form_means(stub, roots):
    sync(stub, roots)
    text = "channel == 1 and (process >= 20 or partnumber prefix 'PN-0002') and not (process == 7)"
    structured = pb.Filter(all=pb.FilterList(filters=[
        cond("channel", "==", i(1)),
        pb.Filter(any=pb.FilterList(filters=[cond("process", ">=", i(20)),
                                             cond("partnumber", "prefix", s("PN-0002"))])),
        pb.Filter(**{"not": cond("process", "==", i(7))}),
    ]))
    by_text = paths(query(stub, text=text, order_by=[pb.OrderBy(field="process")]))
    assert by_text and by_text == paths(query(stub, filter=structured,
                                              order_by=[pb.OrderBy(field="process")]))
    assert stub.Count(pb.CountRequest(repository=REPO, filter=structured)).count == len(by_text)
    wanted = query(stub, filter=cond("process", "in", i(3), i(5), i(99)))
    assert sorted(r.fields["process"].int_value for r in query(
        stub, filter=cond("process", "in", i(3), i(5)), output="records")) == [3, 5]
    assert len(wanted) == 2


_OPS = ["==", "!=", "<", "<=", ">", ">="]


def _int_atom(name: str) -> st.SearchStrategy:
    compare = st.tuples(st.sampled_from(_OPS), st.integers(-1, 110)).map(
        lambda t: (cond(name, t[0], i(t[1])), f.Compare(name, t[0], t[1])))
    within = st.lists(st.integers(-1, 110), min_size=1, max_size=4).map(
        lambda vs: (cond(name, "in", *map(i, vs)), f.In(name, tuple(vs))))
    return st.one_of(compare, within)


_TEXTS = st.sampled_from(["PN-", "PN-0001", "PN-0003", "PN-0004", "Q"])
_ATOMS = st.one_of(
    *(_int_atom(n) for n in ("process", "channel", "compression_frq")),
    st.tuples(st.sampled_from(_OPS), _TEXTS).map(
        lambda t: (cond("partnumber", t[0], s(t[1])), f.Compare("partnumber", t[0], t[1]))),
    _TEXTS.map(lambda v: (cond("partnumber", "prefix", s(v)), f.Prefix("partnumber", v))),
)


def _combine(children: st.SearchStrategy) -> st.SearchStrategy:
    some = st.lists(children, min_size=1, max_size=3)
    return st.one_of(
        some.map(lambda cs: (pb.Filter(all=pb.FilterList(filters=[c[0] for c in cs])),
                             f.And(tuple(c[1] for c in cs)))),
        some.map(lambda cs: (pb.Filter(any=pb.FilterList(filters=[c[0] for c in cs])),
                             f.Or(tuple(c[1] for c in cs)))),
        children.map(lambda c: (pb.Filter(**{"not": c[0]}), f.Not(c[1]))),
    )


FILTERS = st.recursive(_ATOMS, _combine, max_leaves=6)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=FILTERS, descending=st.booleans())
def test_any_filter_through_grpc_selects_what_evaluating_it_selects(stub, roots, engine,
                                                                     pair, descending):
    if not stub.Count(pb.CountRequest(repository=REPO)).count:
        sync(stub, roots)
    structured, expr = pair
    records = [engine.index.get(p) for p in engine.get_matching_files(MetadataQuery())]
    expected = sorted((r for r in records if f.evaluate(expr, r.all_fields())),
                      key=lambda r: r.fields["process"], reverse=descending)
    got = query(stub, filter=structured,
                order_by=[pb.OrderBy(field="process", descending=descending)])
    assert paths(got) == [r.path for r in expected]
    assert stub.Count(pb.CountRequest(repository=REPO, filter=structured)).count == len(got)


def test_pages_by_token_add_up_to_the_whole_ordered_result(stub, roots, engine):
    sync(stub, roots)
    order = [pb.OrderBy(field="channel", descending=True), pb.OrderBy(field="process")]
    everything = paths(query(stub, order_by=order))
    assert everything == engine.get_matching_files(
        MetadataQuery(order_by=(OrderBy("channel", True), OrderBy("process"))))
    got: list[str] = []
    token = ""
    while True:
        messages = list(stub.Query(pb.QueryRequest(repository=REPO, order_by=order, limit=7,
                                                   page_token=token)))
        got += [r.path for m in messages for r in m.records]
        token = messages[-1].next_page_token
        if not token:
            break
    assert got == everything
    # without a limit, a token resumes the whole rest of the result
    first = list(stub.Query(pb.QueryRequest(repository=REPO, order_by=order, limit=10)))
    rest = query(stub, order_by=order, page_token=first[-1].next_page_token)
    assert paths(rest) == everything[10:]


def test_outputs_are_paths_records_or_the_fields_asked_for(stub, roots, engine):
    sync(stub, roots)
    (path_only,) = query(stub, text="process == 3 and channel == 1")
    assert path_only.path.endswith(".000") or path_only.path
    assert not path_only.fields and path_only.machine_id == ""
    (record,) = query(stub, text="process == 3 and channel == 1", output="records")
    local = engine.index.get(record.path).fields
    assert set(record.fields) == set(local)  # the built-in fields are implied
    assert record.fields["process"].int_value == 3
    assert record.fields["frq_per_band"].float_value == local["frq_per_band"]
    assert record.fields["partnumber"].string_value == "PN-0003"
    (chosen,) = query(stub, text="process == 3 and channel == 1", output="fields",
                      fields=["channel", "filename", "nothing_here"][:2])
    assert set(chosen.fields) == {"channel", "filename"}
    match = engine.query(MetadataQuery.from_text("process == 3 and channel == 1",
                                                 fields=ALL_FIELDS)).items[0]
    assert chosen.fields["filename"].string_value == match.fields["filename"]


def test_the_schema_lists_every_field_with_its_types(stub, roots):
    sync(stub, roots)
    schema = {f.name: f for f in stub.Schema(pb.SchemaRequest(repository=REPO)).fields}
    assert {"process", "channel", "path", "size"} <= set(schema)
    assert [(t.type, t.count) for t in schema["process"].types] == [("int", 30)]
    assert schema["process"].total == 30


def test_bad_queries_are_refused_naming_the_problem(stub, roots):
    sync(stub, roots)
    bad = grpc.StatusCode.INVALID_ARGUMENT
    message = refused(lambda: query(stub, text="nosuch == 1"), bad, "UNKNOWN_FIELD")
    assert "nosuch" in message
    message = refused(lambda: query(stub, text="process == 'x'"), bad, "TYPE_MISMATCH")
    assert "process" in message
    refused(lambda: query(stub, filter=cond("process", "<", s("x"))), bad, "TYPE_MISMATCH")
    refused(lambda: query(stub, text="process == = 1"), bad, "INVALID_QUERY")
    refused(lambda: query(stub, text="process == 1", filter=cond("process", "==", i(1))),
            bad, "INVALID_QUERY")
    refused(lambda: query(stub, filter=pb.Filter(condition=pb.Condition(field="process",
                                                                          op="~", values=[i(1)]))),
            bad, "INVALID_QUERY")
    refused(lambda: query(stub, filter=cond("process", "==")), bad, "INVALID_QUERY")
    refused(lambda: query(stub, filter=cond("process", "==", pb.FieldValue())), bad,
            "INVALID_QUERY")
    refused(lambda: query(stub, filter=pb.Filter(all=pb.FilterList())), bad, "INVALID_QUERY")
    refused(lambda: query(stub, output="everything"), bad, "INVALID_QUERY")
    refused(lambda: query(stub, order_by=[pb.OrderBy(field="nosuch")]), bad, "UNKNOWN_FIELD")
    refused(lambda: query(stub, page_token="not-a-token"), bad, "INVALID_PAGE_TOKEN")
    first = list(stub.Query(pb.QueryRequest(repository=REPO, limit=2,
                                            order_by=[pb.OrderBy(field="process")])))
    refused(lambda: query(stub, limit=2, page_token=first[-1].next_page_token,
                          order_by=[pb.OrderBy(field="channel")]), bad, "INVALID_PAGE_TOKEN")
    refused(lambda: stub.Count(pb.CountRequest(repository=REPO, text="process >")), bad,
            "INVALID_QUERY")
    refused(lambda: query(stub, repository="nope", text="process == 1"),
            grpc.StatusCode.NOT_FOUND, "REPOSITORY_NOT_FOUND")


def test_a_bad_pattern_is_refused_naming_it(stub, roots):
    bad = grpc.StatusCode.INVALID_ARGUMENT
    for regex in ("[unclosed", "(?P<x", "a{2,1}"):
        message = refused(lambda r=regex: sync(stub, roots, regex_pattern=r), bad,
                          "INVALID_PATTERN")
        assert regex in message
    for glob in ("a**b", "x/**c/*", "/abs/*"):
        message = refused(lambda g=glob: sync(stub, roots, glob_pattern=g), bad,
                          "INVALID_PATTERN")
        assert glob in message
    assert stub.Count(pb.CountRequest(repository=REPO)).count == 0  # nothing was read
    assert sync(stub, roots, glob_pattern="**/*p*c*b*")[-1].added == 30  # pathlib's walk


def test_erasing_a_repository_while_a_query_streams_ends_it_not_found(daemon, stub):
    """The query's stream is between two messages when the repository is erased: the
    erase does not wait for the client, and the rest of the stream fails NOT_FOUND
    (not INTERNAL from an index closed underneath it)."""
    filler = pb.FieldValue(string_value="x" * 2000)
    for start in range(0, 30_000, 10_000):  # ~60 MB of records: more than grpc sends ahead
        records = pushed(10_000, start)
        for r in records:
            r.path = f"C:/data/f{r.signature.size:06d}"
            r.fields["filler"].CopyFrom(filler)
        stub.PushRecords(pb.PushRecordsRequest(repository=REPO, machine_id="ws",
                                               records=records))
    stream = stub.Query(pb.QueryRequest(repository=REPO, output="records"))
    first = next(stream)
    assert first.records
    with grpc.insecure_channel(daemon.target) as channel:
        rpc = repositories_pb2_grpc.RepositoriesStub(channel)
        rpc.EraseRepository(rpb.EraseRepositoryRequest(repository=REPO))
    code, message, info = failure(lambda: list(stream))
    assert (code, info.reason) == (grpc.StatusCode.NOT_FOUND, "REPOSITORY_NOT_FOUND"), message
    refused(lambda: stub.Count(pb.CountRequest(repository=REPO)), grpc.StatusCode.NOT_FOUND,
            "REPOSITORY_NOT_FOUND")


# -- sync roots ----------------------------------------------------------------------------
def test_nothing_outside_the_sync_roots_is_read(stub, roots, tmp_path):
    outside = tmp_path / "outside"
    (secret,) = make_buffers(outside, 1)
    os.symlink(secret, roots / "a" / "Link_00001p3c0b09")
    os.symlink(outside, roots / "dirlink")
    denied = grpc.StatusCode.PERMISSION_DENIED
    for target in (outside, roots / ".." / "outside", roots / "dirlink"):
        message = refused(lambda t=target: sync(stub, t), denied, "OUTSIDE_SYNC_ROOTS")
        assert str(roots) in message  # names the roots
    refused(lambda: stub.AddFiles(pb.AddFilesRequest(repository=REPO, files=[secret])),
            denied, "OUTSIDE_SYNC_ROOTS")
    refused(lambda: stub.AddFiles(pb.AddFilesRequest(
        repository=REPO, files=[str(roots / "a" / "Link_00001p3c0b09")])),
        denied, "OUTSIDE_SYNC_ROOTS")
    refused(lambda: stub.ReadFile(pb.ReadFileRequest(repository=REPO, path=secret)),
            denied, "OUTSIDE_SYNC_ROOTS")
    refused(lambda: stub.GetNonSynchronizedFiles(pb.NonSynchronizedRequest(
        repository=REPO, files=[secret])), denied, "OUTSIDE_SYNC_ROOTS")
    done = sync(stub, roots)[-1]
    assert done.scanned == 30  # the links were not followed
    assert secret not in paths(query(stub))


def test_without_sync_roots_server_side_syncs_are_off(daemon_factory, tmp_path, roots):
    d = daemon_factory(tmp_path / "data2")
    with grpc.insecure_channel(d.target) as channel:
        stub = metadata_pb2_grpc.MetadataCacheStub(channel)
        message = refused(lambda: sync(stub, roots), grpc.StatusCode.PERMISSION_DENIED,
                          "OUTSIDE_SYNC_ROOTS")
        assert "--sync-root" in message


# -- the qass calls on the daemon's files --------------------------------------------------
def test_add_remove_and_the_non_synchronized_files(stub, roots):
    files = sorted(str(p) for p in (roots / "a").iterdir())
    added = list(stub.AddFiles(pb.AddFilesRequest(repository=REPO, files=files[:5],
                                                  batch_size=2)))
    assert added[-1].done and added[-1].added == 5
    reply = stub.GetNonSynchronizedFiles(pb.NonSynchronizedRequest(repository=REPO,
                                                                   files=files[2:]))
    assert sorted(reply.unsynchronized) == files[5:]
    assert sorted(reply.stale) == files[:2]
    os.utime(files[3], ns=(1, 1))  # changed since it was indexed
    reply = stub.GetNonSynchronizedFiles(pb.NonSynchronizedRequest(repository=REPO,
                                                                   files=files))
    assert sorted(reply.unsynchronized) == sorted([files[3], *files[5:]])
    removed = stub.RemoveFiles(pb.RemoveFilesFromCacheRequest(repository=REPO,
                                                              files=[*files[:2], "/x/nothing"]))
    assert removed.removed == 2
    assert sorted(paths(query(stub))) == files[2:5]
    refused(lambda: stub.AddFiles(pb.AddFilesRequest(repository=REPO, files=files[:1],
                                                     machine_id="@datasets")),
            grpc.StatusCode.INVALID_ARGUMENT, "INVALID_MACHINE_ID")


def test_read_file_streams_an_indexed_file_s_content(stub, roots, tmp_path):
    big = roots / "a" / "Big_00001p999c0b01"
    write_buffer(big, BufferSpec(process=999, blocks=40.5))
    sync(stub, roots)
    chunks = list(stub.ReadFile(pb.ReadFileRequest(repository=REPO, path=str(big))))
    data = big.read_bytes()
    assert len(data) > 1 << 20 and len(chunks) > 1
    assert chunks[0].size == len(data) and b"".join(c.data for c in chunks) == data
    assert max(len(c.data) for c in chunks) <= 1 << 20
    unindexed = roots / "a" / "New_00001p1000c0b01"
    write_buffer(unindexed, BufferSpec(process=1000))
    refused(lambda: stub.ReadFile(pb.ReadFileRequest(repository=REPO, path=str(unindexed))),
            grpc.StatusCode.NOT_FOUND, "FILE_NOT_FOUND")
    big.unlink()
    refused(lambda: stub.ReadFile(pb.ReadFileRequest(repository=REPO, path=str(big))),
            grpc.StatusCode.NOT_FOUND, "FILE_NOT_FOUND")


# -- client-side syncs ---------------------------------------------------------------------
def pushed(n: int, start: int = 0) -> list[pb.Record]:
    return [pb.Record(path=f"C:/data/f{k:03d}", machine_id="ignored",
                      signature=pb.FileSignature(size=k, mtime_ns=k, ctime_ns=k, inode=k),
                      fields={"process": i(k), "big": pb.FieldValue(uint_value=(1 << 64) - 1),
                              "when": pb.FieldValue(datetime_micros=1_700_000_000_000_000)})
            for k in range(start, start + n)]


def test_pushed_records_live_under_the_request_s_machine(stub):
    counts = stub.PushRecords(pb.PushRecordsRequest(repository=REPO, machine_id="ws-7",
                                                    records=pushed(12)))
    assert (counts.added, counts.updated) == (12, 0)
    again = pushed(2, 11)
    again[0].fields["process"].int_value = 111  # changed: replaces the stored record
    counts = stub.PushRecords(pb.PushRecordsRequest(repository=REPO, machine_id="ws-7",
                                                    records=again))
    assert (counts.added, counts.updated) == (1, 1)
    entries = [e for m in stub.Signatures(pb.SignaturesRequest(repository=REPO,
                                                               machine_id="ws-7"))
               for e in m.entries]
    assert [e.path for e in entries] == [f"C:/data/f{k:03d}" for k in range(13)]
    assert entries[5].signature.size == 5 and not entries[5].failed
    under = [e.path for m in stub.Signatures(pb.SignaturesRequest(
        repository=REPO, machine_id="ws-7", under="C:/data/f01")) for e in m.entries]
    assert under == [f"C:/data/f{k:03d}" for k in range(10, 13)]
    assert list(stub.Signatures(pb.SignaturesRequest(repository=REPO,
                                                     machine_id="ignored"))) == []
    (rec,) = query(stub, text="process == 4", output="records")
    assert rec.machine_id == "ws-7"
    assert rec.fields["big"].uint_value == (1 << 64) - 1
    assert rec.fields["when"].datetime_micros == 1_700_000_000_000_000
    assert query(stub, text="when >= '2023-11-14T22:13:20'")  # 1.7e9 s
    counts = stub.RemoveRecords(pb.RemoveRecordsRequest(repository=REPO, machine_id="ws-7",
                                                        paths=["C:/data/f000", "C:/nope"]))
    assert counts.removed == 1
    assert stub.Count(pb.CountRequest(repository=REPO)).count == 12
    assert paths(query(stub, text="process == 111")) == ["C:/data/f011"]


def test_records_carry_each_value_as_itself(stub):
    """Equal values of different kinds (True, 1 and 1.0) come back each as itself,
    however many records share them (-0.0 is stored as 0.0)."""
    values = {"t": pb.FieldValue(bool_value=True), "one": i(1),
              "neg": pb.FieldValue(float_value=-0.0), "pos": pb.FieldValue(float_value=0.0),
              "f1": pb.FieldValue(float_value=1.0), "s": s("1")}
    records = [pb.Record(path=f"C:/v/{k}", signature=pb.FileSignature(size=k),
                         fields=values) for k in range(3)]
    stub.PushRecords(pb.PushRecordsRequest(repository=REPO, machine_id="ws", records=records))
    got = query(stub, output="records", text="t == true")
    assert len(got) == 3
    for rec in got:
        out = {k: (v.WhichOneof("kind"), getattr(v, v.WhichOneof("kind")))
               for k, v in rec.fields.items() if k in values}
        assert out == {"t": ("bool_value", True), "one": ("int_value", 1),
                       "neg": ("float_value", -0.0), "pos": ("float_value", 0.0),
                       "f1": ("float_value", 1.0), "s": ("string_value", "1")}


def test_bad_pushes_are_refused(stub):
    bad = grpc.StatusCode.INVALID_ARGUMENT
    nan = pushed(1)
    nan[0].fields["v"].CopyFrom(pb.FieldValue(float_value=float("nan")))
    refused(lambda: stub.PushRecords(pb.PushRecordsRequest(repository=REPO, machine_id="w",
                                                           records=nan)), bad, "INVALID_VALUE")
    empty = pushed(1)
    empty[0].fields["v"].CopyFrom(pb.FieldValue())
    refused(lambda: stub.PushRecords(pb.PushRecordsRequest(repository=REPO, machine_id="w",
                                                           records=empty)),
            bad, "INVALID_VALUE")
    many = pb.PushRecordsRequest(repository=REPO, machine_id="w")
    many.records.extend(pb.Record(path=f"/p{k}") for k in range(10_001))
    refused(lambda: stub.PushRecords(many), bad, "TOO_MANY_RECORDS")
    for call in (
        lambda: stub.PushRecords(pb.PushRecordsRequest(repository=REPO, machine_id="@me",
                                                       records=pushed(1))),
        lambda: stub.RemoveRecords(pb.RemoveRecordsRequest(repository=REPO,
                                                           machine_id="@datasets",
                                                           paths=["x"])),
        lambda: sync(stub, "/", machine_id="@datasets"),
    ):
        code, message, info = failure(call)
        assert code in (bad, grpc.StatusCode.PERMISSION_DENIED)
        if code == bad:
            assert info.reason == "INVALID_MACHINE_ID" and "reserved" in message
    assert stub.Count(pb.CountRequest(repository=REPO)).count == 0


# -- a sync cancelled midway ---------------------------------------------------------------
def test_a_cancelled_sync_stops_at_a_batch_boundary_leaving_the_index_whole(
        daemon, stub, tmp_path):
    total = 2000
    many = tmp_path / "instrument" / "many"
    make_buffers(many, total, start=1000)
    stream = stub.SynchronizeDirectory(pb.SyncRequest(
        repository=REPO, paths=[str(many)], sync_subdirectories=True, batch_size=2))
    first = next(stream)
    assert not first.done and first.added == 2
    stream.cancel()
    with grpc.insecure_channel(daemon.target) as channel:
        verify = objects_pb2_grpc.ObjectsStub(channel).Verify(opb.VerifyRequest(repository=REPO))
        last = list(verify)[-1]
    assert last.done and last.problem_count == 0, list(last.problems)
    indexed = stub.Count(pb.CountRequest(repository=REPO)).count
    assert 2 <= indexed < total and indexed % 2 == 0  # whole batches only, then it stopped
    done = sync(stub, many)[-1]  # the next sync picks up the rest
    assert done.added + done.unchanged + done.updated == total
    assert stub.Count(pb.CountRequest(repository=REPO)).count == total


def test_a_big_sync_goes_through_the_worker_pool_and_can_be_cancelled(daemon, stub, tmp_path):
    """Batches of 1,000 files or more are extracted by the daemon's workers: a sync
    cancelled after its first batch keeps whole batches; the next one finishes."""
    total = 2400
    many = tmp_path / "instrument" / "big"
    make_buffers(many, total, start=5000)
    stream = stub.SynchronizeDirectory(pb.SyncRequest(
        repository=REPO, paths=[str(many)], sync_subdirectories=True, batch_size=1000))
    first = next(stream)
    assert not first.done and first.added == 1000
    stream.cancel()  # the batch being written when the cancel lands may still commit
    done = sync(stub, many, batch_size=1000)[-1]
    assert done.added + done.unchanged == total and done.updated == 0
    assert done.unchanged in (1000, 2000)  # whole batches only
    assert stub.Count(pb.CountRequest(repository=REPO)).count == total
    assert len(query(stub, text="process >= 5000")) == total
    with grpc.insecure_channel(daemon.target) as channel:
        verify = objects_pb2_grpc.ObjectsStub(channel).Verify(opb.VerifyRequest(repository=REPO))
        last = list(verify)[-1]
    assert last.done and last.problem_count == 0, list(last.problems)
    if default_workers():  # the workers are the daemon's children
        children = Path(f"/proc/{daemon.pid}/task/{daemon.pid}/children").read_text().split()
        spawned = [c for c in children
                   if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(spawned) == default_workers()


# -- the dataset files, indexed as they change ----------------------------------------------
def dataset_records(stub, **kw) -> dict[str, pb.Record]:
    at_datasets = cond("machine_id", "==", s("@datasets"))
    return {r.path: r for r in query(stub, filter=at_datasets, output="records", **kw)}


def test_files_written_through_the_datasets_face_are_indexed(daemon, stub):
    with grpc.insecure_channel(daemon.target) as channel:
        ds = datasets_pb2_grpc.DatasetsStub(channel)
        files = datasets_pb2_grpc.DatasetFilesStub(channel)

        def ref(path: str, dataset: str = "") -> dpb.NodeRef:
            return dpb.NodeRef(repository=REPO, path=path, dataset=dataset)

        def rows(n: int) -> dpb.Array:
            return dpb.Array(dtype="<f8", shape=[n, 3], data=bytes(8 * 3 * n))

        ds.AppendData(dpb.AppendDataRequest(node=ref("sim/ts.h5", "data"), data=rows(4),
                                            grow_dimension=0))
        ds.SetMetadata(dpb.SetMetadataRequest(node=ref("sim/ts.h5"), metadata={
            "subject": dpb.Value(string_value="John"), "nr": dpb.Value(int_value=7)}))

        def shape_is(expected: str) -> pb.Record | None:
            rec = dataset_records(stub).get("sim/ts.h5")
            ok = rec is not None and rec.fields["data.shape"].string_value == expected
            return rec if ok else None

        rec = wait_until(lambda: shape_is("4x3"), what="the new file indexed")
        wait_until(lambda: "subject" in dataset_records(stub)["sim/ts.h5"].fields,
                   what="its attributes indexed")
        rec = dataset_records(stub)["sim/ts.h5"]
        assert rec.fields["subject"].string_value == "John"
        assert rec.fields["nr"].int_value == 7
        assert rec.fields["data.dtype"].string_value == "float64"
        assert rec.fields["size"].int_value > 0 and not rec.has_error

        appender = iter([dpb.AppendRequest(node=ref("sim/ts.h5", "data"), data=rows(6),
                                           grow_dimension=0, sequence=1)])
        list(ds.Append(appender))
        wait_until(lambda: shape_is("10x3"), what="the append indexed")
        assert paths(query(stub, filter=pb.Filter(all=pb.FilterList(filters=[
            cond("machine_id", "==", s("@datasets")),
            cond("data.shape", "==", s("10x3"))])))) == ["sim/ts.h5"]

        files.RenameFile(dpb.RenameRequest(repository=REPO, source="sim/ts.h5",
                                           destination="sim/renamed.h5"))
        wait_until(lambda: set(dataset_records(stub)) == {"sim/renamed.h5"},
                   what="the rename reflected")
        files.CopyFile(dpb.RenameRequest(repository=REPO, source="sim/renamed.h5",
                                         destination="other/copy.h5"))
        wait_until(lambda: set(dataset_records(stub)) == {"sim/renamed.h5", "other/copy.h5"},
                   what="the copy indexed")
        files.RenameFolder(dpb.RenameRequest(repository=REPO, source="other",
                                             destination="moved"))
        wait_until(lambda: set(dataset_records(stub)) == {"sim/renamed.h5", "moved/copy.h5"},
                   what="the folder rename reflected")
        files.DeleteFile(dpb.FileRequest(repository=REPO, path="sim/renamed.h5"))
        wait_until(lambda: set(dataset_records(stub)) == {"moved/copy.h5"},
                   what="the delete reflected")
        assert dataset_records(stub)["moved/copy.h5"].fields["data.shape"].string_value == "10x3"


# -- maintenance -----------------------------------------------------------------------------
def test_info_backup_restore_verify_and_erase_cover_the_cache(daemon_factory, tmp_path, roots):
    backups = tmp_path / "backups"
    backups.mkdir()
    data = tmp_path / "data"
    d = daemon_factory(data, "--sync-root", str(roots), "--backup-root", str(backups))
    with grpc.insecure_channel(d.target) as channel:
        stub = metadata_pb2_grpc.MetadataCacheStub(channel)
        obj = objects_pb2_grpc.ObjectsStub(channel)
        info = obj.Info(opb.InfoRequest(repository=REPO))
        assert info.metadata_records == 0
        sync(stub, roots)
        stub.PushRecords(pb.PushRecordsRequest(repository=REPO, machine_id="ws",
                                               records=pushed(3)))
        assert obj.Info(opb.InfoRequest(repository=REPO)).metadata_records == 33
        last = list(obj.Verify(opb.VerifyRequest(repository=REPO)))[-1]
        assert last.done and last.problem_count == 0
        backup = backups / "b1"
        progress = list(obj.Backup(opb.BackupRequest(repository=REPO, destination=str(backup))))
        assert progress[-1].stage == "done"
        assert (backup / "metadata" / "data.mdb").is_file()
    expected = {r.path for r in query_all(d)}
    d.stop()

    from hoard_server.maintenance.backup import restore
    summary = restore(str(backup), str(data), "restored")
    assert summary["metadata_records"] == 33
    d.start()
    with grpc.insecure_channel(d.target) as channel:
        stub = metadata_pb2_grpc.MetadataCacheStub(channel)
        assert {r.path for r in query(stub, repository="restored")} == expected
        rpc = repositories_pb2_grpc.RepositoriesStub(channel)
        rpc.EraseRepository(rpb.EraseRepositoryRequest(repository="restored"))
        assert not (data / "repositories" / "restored").exists()
        rpc.CreateRepository(rpb.CreateRepositoryRequest(repository="restored"))
        assert stub.Count(pb.CountRequest(repository="restored")).count == 0


def query_all(d) -> list[pb.Record]:
    with grpc.insecure_channel(d.target) as channel:
        return query(metadata_pb2_grpc.MetadataCacheStub(channel))


def test_verify_reports_a_damaged_cache_under_metadata(daemon_factory, tmp_path, roots):
    data = tmp_path / "data"
    d = daemon_factory(data, "--sync-root", str(roots))
    with grpc.insecure_channel(d.target) as channel:
        sync(metadata_pb2_grpc.MetadataCacheStub(channel), roots)
    d.stop()
    from hoard_server.storage.metadata.index import MetadataIndex
    with MetadataIndex(str(data / "repositories" / REPO / "metadata")) as index:
        with index.lmdb.write() as txn:  # an index entry without its record
            txn.put(b"field\x00bogus-entry", b"", db=index.lmdb.dbs["fields"])
        assert index.check()
    d.start()
    with grpc.insecure_channel(d.target) as channel:
        obj = objects_pb2_grpc.ObjectsStub(channel)
        reports = list(obj.Verify(opb.VerifyRequest(repository=REPO)))
    problems = [p for r in reports for p in r.problems]
    assert reports[-1].problem_count >= 1
    assert problems and all(p.path == "metadata" for p in problems)
    assert any("index entry without its record" in p.problem for p in problems)


def test_dataset_files_are_checked_when_their_repository_opens(daemon_factory, tmp_path):
    """Files the cache has not seen (written before it existed, restored...) are indexed
    once their repository is opened, holding no more HDF5 handles than the daemon allows."""
    data = tmp_path / "data"
    d = daemon_factory(data, "--max-open-files", "2")
    names = [f"a/f{k}.h5" for k in range(6)]
    with grpc.insecure_channel(d.target) as channel:
        ds = datasets_pb2_grpc.DatasetsStub(channel)
        for k, name in enumerate(names):
            ds.StoreData(dpb.StoreDataRequest(
                node=dpb.NodeRef(repository=REPO, path=name, dataset="x"),
                data=dpb.Array(dtype="<i4", shape=[k + 1], data=bytes(4 * (k + 1)))))
        stub = metadata_pb2_grpc.MetadataCacheStub(channel)
        wait_until(lambda: set(dataset_records(stub)) == set(names), what="indexed")
    d.stop()
    import shutil
    shutil.rmtree(data / "repositories" / REPO / "metadata")
    d.start()
    with grpc.insecure_channel(d.target) as channel:
        stub = metadata_pb2_grpc.MetadataCacheStub(channel)
        wait_until(lambda: set(dataset_records(stub)) == set(names), what="indexed again")
        assert dataset_records(stub)["a/f4.h5"].fields["x.shape"].string_value == "5"
    fds = Path(f"/proc/{d.pid}/fd")
    def target(fd: Path) -> str:
        try:
            return os.readlink(fd)
        except FileNotFoundError:  # closed between the listing and the read
            return ""

    open_h5 = [p for p in fds.iterdir() if target(p).endswith(".h5")]
    assert len(open_h5) <= 2
