"""The SDK's metadata cache against the real daemon: the query builder (results equal a
brute-force evaluation of the same filter over the same records, hypothesis), paging,
outputs, query by example, matching buffers read locally or streamed, client-side sync
change scenarios, server-side sync, and bad queries as the SDK's exceptions."""

from __future__ import annotations

import os
import random
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from buffers import BufferSpec, write_buffer
from harness.daemon import DaemonProcess
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import hoard
from hoard.errors import (
    InvalidArgumentError,
    InvalidMachineIdError,
    InvalidPageTokenError,
    InvalidPatternError,
    InvalidQueryError,
    NotASyncDirectoryError,
    OutsideSyncRootsError,
    TypeMismatchError,
    UnknownFieldError,
)
from hoard.metadata.client import MetadataCache, MetadataRecord, SyncProgress
from hoard.metadata.query import And, Condition, Field, Filter, M, Not, Or, and_, not_, or_, select
from hoard.metadata.records import FileRecord, FileSignature, Value
from hoard.v1 import metadata_pb2 as pb

# -- a daemon for the module, a fresh repository per test ---------------------------------------


@pytest.fixture(scope="module")
def sync_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("instrument")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, sync_root: Path) -> Iterator[DaemonProcess]:
    d = DaemonProcess(str(tmp_path_factory.mktemp("data")), "--sync-root", str(sync_root))
    d.start()
    try:
        yield d
    finally:
        try:
            d.stop()
        finally:
            d.kill()


@pytest.fixture(scope="module")
def client(daemon: DaemonProcess) -> Iterator[hoard.Client]:
    with hoard.connect(daemon.target) as c:
        yield c


def fresh_cache(client: hoard.Client, machine_id: str | None = None) -> MetadataCache:
    name = f"m-{uuid.uuid4().hex[:12]}"
    client.create_repository(name)
    return client.metadata(name, machine_id=machine_id)


@pytest.fixture
def cache(client: hoard.Client) -> MetadataCache:
    return fresh_cache(client)


def make_buffers(directory: Path, count: int, start: int = 0) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + count):
        spec = BufferSpec(process=i, channel=1 + i % 3, compression_frq=(1, 4, 8)[i % 3],
                          partnumber=f"PN-{i % 5:04d}")
        out.append(write_buffer(directory / spec.file_name(), spec))
    return out


def done(progress: list[SyncProgress]) -> SyncProgress:
    assert progress and progress[-1].done and not any(p.done for p in progress[:-1])
    return progress[-1]


# -- the records every query test runs over ---------------------------------------------------

WHEN = datetime(2024, 1, 1, tzinfo=UTC)
FIELDS = {  # field -> the values a record may hold (None: absent)
    "channel": [1, 2, 3, 4, None],
    "process": list(range(0, 40)),
    "x": [-1.5, 0.0, 2.25, 3, 7, None],  # numbers, int and float mixed
    "label": ["", "a", "ab", "abc", "b", "PN-1", None],
    "flag": [True, False, None],
    "when": [WHEN + timedelta(hours=h) for h in (0, 1, 5, 24)] + [None],
    "odd name": ["é", "x y", "z", None],
}


def synthetic_records(count: int, seed: int = 7) -> list[FileRecord]:
    rng = random.Random(seed)
    records = []
    for i in range(count):
        fields: dict[str, Value] = {}
        for name, choices in FIELDS.items():
            value = rng.choice(choices)
            if value is not None or rng.random() < 0.5:  # absent and null alike
                fields[name] = value
        fields["process"] = i % 40
        path = f"/synthetic/{'ab'[i % 2]}/{i:04d}.dat"
        records.append(FileRecord(path, FileSignature(i, i, i, i), fields))
    return records


@pytest.fixture(scope="module")
def loaded(client: hoard.Client) -> tuple[MetadataCache, list[MetadataRecord]]:
    """A cache holding 120 synthetic records under two machines; every record as the
    cache returns it."""
    cache = fresh_cache(client)
    records = synthetic_records(120)
    cache.push_records(records[:80], machine_id="ws-1")
    cache.push_records(records[80:], machine_id="ws-2")
    everything = cache.get_matching_metadata(select(M))
    assert len(everything) == 120
    return cache, everything


# -- the reference meaning, written from the docs -----------------------------------------------


def kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    return type(v).__name__


def holds(f: Filter, record: MetadataRecord) -> bool:
    if isinstance(f, And):
        return all(holds(p, record) for p in f.parts)
    if isinstance(f, Or):
        return any(holds(p, record) for p in f.parts)
    if isinstance(f, Not):
        return not holds(f.part, record)
    assert isinstance(f, Condition)
    v = record.get(f.field)
    if f.op == "prefix":
        return isinstance(v, str) and v.startswith(str(f.values[0]))
    if f.op == "in":
        return any(holds(Condition(f.field, "==", (x,)), record) for x in f.values)
    (lit,) = f.values
    if lit is None:
        return (v is None) == (f.op == "==")
    if v is None or kind(v) != kind(lit):
        return False
    return {"==": v == lit, "!=": v != lit, "<": v < lit, "<=": v <= lit, ">": v > lit,
            ">=": v >= lit}[f.op]


# -- random filters built with the builder ----------------------------------------------------


def values_of(name: str) -> st.SearchStrategy[Any]:
    present = [v for v in FIELDS[name] if v is not None]
    return st.sampled_from(present)


@st.composite
def conditions(draw: st.DrawFn) -> Filter:
    name = draw(st.sampled_from(sorted(FIELDS)))
    field = M[name] if " " in name else getattr(M, name)
    value = draw(values_of(name))
    op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "null", "notnull",
                               "prefix"]))
    if op == "in":
        return field.in_(draw(st.lists(values_of(name), min_size=1, max_size=3)))
    if op == "null":
        return field == None  # noqa: E711 (the builder's IS NULL, as in SQLAlchemy)
    if op == "notnull":
        return field.is_not(None)
    if op == "prefix":
        if not isinstance(value, str):
            return field == value
        return field.startswith(value[:1])
    if isinstance(value, bool) and op not in ("==", "!="):
        op = "=="
    return {"==": field == value, "!=": field != value, "<": field < value,
            "<=": field <= value, ">": field > value, ">=": field >= value}[op]


filters = st.recursive(
    conditions(),
    lambda inner: st.one_of(
        st.builds(lambda a, b: a & b, inner, inner),
        st.builds(lambda a, b: a | b, inner, inner),
        st.builds(lambda a: ~a, inner),
        st.lists(inner, min_size=1, max_size=3).map(lambda ps: and_(*ps)),
        st.lists(inner, min_size=1, max_size=3).map(lambda ps: or_(*ps)),
    ),
    max_leaves=5,
)


TAG = {type(None): 0, bool: 1, int: 2, float: 3, str: 4, datetime: 5}  # records.py's order


def sort_key(value: Any) -> tuple[int, Any]:
    """A field's order (records.py): by type (null < bool < int < float < str < datetime),
    then by value."""
    return (TAG[type(value)], 0 if value is None else value)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(f=filters, order=st.lists(st.tuples(st.sampled_from(sorted(FIELDS)), st.booleans()),
                                 max_size=2),
       limit=st.one_of(st.none(), st.integers(1, 30)))
# found by hypothesis: overlapping ranges of an `or` made a capped index scan look complete
@example(f=(M.flag == True) & ((M.channel == 1) | (M.flag == True)),  # noqa: E712
         order=[("process", False)], limit=None)
def test_builder_results_equal_a_brute_force_evaluation(loaded, f, order, limit):
    cache, everything = loaded
    expected = sorted((r for r in everything if holds(f, r)),
                      key=lambda r: (r["machine_id"], r.path))  # ties: machine, then path
    for name, descending in reversed(order):  # stable sorts, last key first
        expected.sort(key=lambda r, n=name: sort_key(r.get(n)), reverse=descending)
    keys = [M[name].desc() if descending else M[name] for name, descending in order]
    q = select(M).filter(f).order_by(*keys).limit(limit)
    got = cache.get_matching_files(q)
    text_form = cache.get_matching_files(select(M).filter(f.text()).order_by(*keys).limit(limit))
    everyone = [r.path for r in expected]
    if order:
        assert got == text_form == everyone[:limit]
    else:  # no order asked: the order of indexing, any matches up to the limit
        assert len(got) == len(set(got)) == len(everyone[:limit]) and set(got) <= set(everyone)
        assert text_form == got
    assert cache.count(q) == len(expected)


def test_select_reads_like_qass_and_compiles_to_the_proto() -> None:
    q = select(M).filter(M.channel == 1, M.process > 100).order_by(M.process.desc()).limit(5)
    request = q.to_request("r")
    assert request.limit == 5 and request.output == "records"
    assert [(o.field, o.descending) for o in request.order_by] == [("process", True)]
    both = request.filter.all.filters
    assert [(c.condition.field, c.condition.op, c.condition.values[0].int_value)
            for c in both] == [("channel", "==", 1), ("process", ">", 100)]
    f = (M.a == None) | ~M["odd name"].in_([1, "x"]) & M.t.startswith("PN")  # noqa: E711
    assert f.to_proto().WhichOneof("node") == "any"
    assert str(f) == 'a == null or not `odd name` in (1, "x") and t prefix "PN"'
    assert not_(not_(M.a == 1)) == (M.a == 1)
    assert or_(M.a == 1) == (M.a == 1)
    assert select(M.path, "process").to_request("r").fields == ["path", "process"]
    assert select(M.a).output() == "fields" and select().output() == "records"
    when = (M.when == datetime(2024, 1, 1)).to_proto().condition.values[0]
    assert when.datetime_micros == 1_704_067_200_000_000
    big = (M.project_id == (1 << 64) - 1).to_proto().condition.values[0]
    assert big.WhichOneof("kind") == "uint_value"


def test_mistakes_the_builder_sees_raise_before_anything_is_sent() -> None:
    with pytest.raises(TypeError, match="no truth value"):
        select(M).filter(M.a == 1 and M.b == 2)
    with pytest.raises(TypeMismatchError) as mismatch:  # a TypeError
        _ = M.a == object()
    assert isinstance(mismatch.value, TypeError)
    with pytest.raises(TypeError):
        M.a.startswith(3)  # type: ignore[arg-type]
    for bad in (lambda: M.a < None, lambda: M.a.in_([]), lambda: M.a == float("nan"),
                lambda: M.a == 1 << 64, lambda: M[""], lambda: M.a == M.b,
                lambda: select(M).filter("a == 1", M.b == 2), lambda: select(M).limit(-1)):
        with pytest.raises(InvalidQueryError) as exc:  # a ValueError
            bad()
        assert isinstance(exc.value, ValueError)


def test_bad_queries_come_back_as_the_sdk_s_exceptions(loaded) -> None:
    cache, _ = loaded
    with pytest.raises(UnknownFieldError) as unknown:  # also an AttributeError and a ValueError
        cache.get_matching_files(select(M).filter(M.no_such_field == 1))
    assert isinstance(unknown.value, AttributeError) and isinstance(unknown.value, ValueError)
    assert unknown.value.field == "no_such_field" and "no_such_field" in str(unknown.value)
    with pytest.raises(TypeMismatchError) as mismatch:  # also a TypeError
        cache.count(M.channel == "one")
    assert isinstance(mismatch.value, TypeError) and "channel" in str(mismatch.value)
    with pytest.raises(InvalidQueryError):
        cache.count("channel == ")
    with pytest.raises(InvalidQueryError):
        list(cache.query("channel in ()"))
    with pytest.raises(InvalidPageTokenError):
        cache.page(select(M), 5, page_token="not-a-token")
    with pytest.raises(UnknownFieldError):
        cache.get_matching_files(select(M).order_by(M.nowhere))


# -- results: paging, outputs, example, schema ---------------------------------------------------


def test_paging_gives_every_record_once_in_order(loaded) -> None:
    cache, everything = loaded
    q = select(M).filter(M.channel.in_([1, 2])).order_by(M.label, M.process.desc())
    whole = cache.get_matching_files(q)
    assert len(whole) == sum(1 for r in everything if r.get("channel") in (1, 2)) > 10
    pages = list(cache.pages(q, 7))
    assert [p for page in pages for p in (r.path for r in page.records)] == whole
    assert all(len(p.records) == 7 for p in pages[:-1]) and not pages[-1].next_page_token
    first = cache.page(q, 3)
    assert [r.path for r in first.records] == whole[:3] and first.next_page_token
    assert [r.path for r in cache.page(q, 3, first.next_page_token).records] == whole[3:6]


def test_records_fields_and_query_by_example(loaded) -> None:
    cache, everything = loaded
    records = cache.get_matching_metadata(select(M).filter(M.label == "ab"))
    assert records and all(r.label == "ab" and r["label"] == "ab" for r in records)
    r = records[0]
    assert r.machine_id in ("ws-1", "ws-2") and r["filename"] == os.path.basename(r.path)
    assert r["directory_path"] == os.path.dirname(r.path) and isinstance(r, MetadataRecord)
    with pytest.raises(AttributeError):
        _ = r.no_such_field
    chosen = cache.get_matching_metadata(select(M.process, M.filename).filter(M.label == "ab"))
    assert [dict(c) for c in chosen] == [
        {"process": x.process, "filename": x.filename, "path": x.path} for x in records]
    # datetimes come back aware, in UTC
    timed = cache.get_matching_metadata(select(M.when).filter(M.when >= WHEN))
    assert timed and all(t.when.tzinfo is not None and t.when >= WHEN for t in timed)
    # qass's query by example: the set fields become equalities
    example = {"channel": 2, "label": "a", "flag": None}
    q = cache.get_buffer_metadata_query(example)
    want = sorted(x.path for x in everything
                  if x.get("channel") == 2 and x.get("label") == "a")
    assert sorted(cache.get_matching_files(q)) == want
    schema = {f.name: f for f in cache.schema()}
    assert schema["x"].types.keys() >= {"int", "float"} and schema["when"].type == "datetime"
    assert schema["process"].total == 120


# -- client-side sync ------------------------------------------------------------------------


def by_path(cache: MetadataCache, machine: str | None = None) -> dict[str, MetadataRecord]:
    q = select(M) if machine is None else select(M).filter(M.machine_id == machine)
    return {r.path: r for r in cache.get_matching_metadata(q)}


def test_client_side_sync_follows_every_kind_of_change(client, tmp_path) -> None:
    cache = fresh_cache(client, machine_id="lab-pc")
    root = tmp_path / "run"
    files = make_buffers(root, 12) + make_buffers(root / "sub", 3, start=50)
    first = done(list(cache.iter_synchronize_directory(root, batch_size=4)))
    assert (first.scanned, first.added, first.updated, first.failed) == (15, 15, 0, 0)
    held = by_path(cache)
    assert set(held) == set(files) and {r.machine_id for r in held.values()} == {"lab-pc"}
    assert held[files[5]].process == 5 and held[files[5]].channel == 3
    again = cache.synchronize_directory(root)
    assert (again.unchanged, again.added, again.updated) == (15, 0, 0)

    # rewrite in place (same size), growth, delete, rename, a parse failure
    write_buffer(files[0], BufferSpec(process=0, channel=1, compression_frq=1,
                                      partnumber="PN-9999"))
    with open(files[1], "ab") as grow:
        grow.write(b"\0" * 4096)
    os.remove(files[2])
    renamed = str(root / "Renamed_01234p3c0b00_dump_00.000")
    os.rename(files[3], renamed)
    with open(files[4], "r+b") as damage:
        damage.write(b"NOTQASS!")
    report = cache.synchronize_directory(root, delete_stale_entries=True)
    held = by_path(cache)
    assert held[files[0]].partnumber == "PN-9999"
    assert held[files[1]].size == os.path.getsize(files[1])
    assert files[2] not in held and files[3] not in held and renamed in held
    assert held[files[4]].error and "buffer" in held[files[4]].error
    assert (report.added, report.updated, report.removed, report.failed) == (1, 3, 2, 1)
    # a failed file is retried only when it changes: now it is fixed
    assert cache.synchronize_directory(root).failed == 0
    write_buffer(files[4], BufferSpec(process=4, channel=2))
    fixed = cache.synchronize_directory(root)
    assert (fixed.updated, fixed.failed) == (1, 0)
    assert by_path(cache)[files[4]].error is None
    # not recursing leaves the subdirectory alone, stale entries included
    shutil.rmtree(root / "sub")
    flat = cache.synchronize_directory(root, sync_subdirectories=False, delete_stale_entries=True)
    assert flat.removed == 0 and len(by_path(cache)) == 14
    assert cache.synchronize_directory(root, delete_stale_entries=True).removed == 3


def test_two_machines_keep_their_own_records_of_one_path(client, tmp_path) -> None:
    name = f"m-{uuid.uuid4().hex[:12]}"
    client.create_repository(name)
    a, b = client.metadata(name, machine_id="pc-a"), client.metadata(name, machine_id="pc-b")
    root = tmp_path / "shared"
    files = make_buffers(root, 4)
    assert a.synchronize_directory(root).added == 4
    assert b.synchronize_directory(root).added == 4
    assert a.count() == 8 and a.count(M.machine_id == "pc-b") == 4
    os.remove(files[0])
    assert a.synchronize_directory(root, delete_stale_entries=True).removed == 1
    assert files[0] in by_path(b, "pc-b") and files[0] not in by_path(a, "pc-a")
    assert a.get_non_synchronized_files(files[1:]) == ([], [])
    unsynced, stale = b.get_non_synchronized_files([*files[1:], str(root / "new")])
    assert unsynced == [] and stale == [files[0]]
    assert b.remove_files_from_cache([files[0]]) == 1 and a.count() == 6


def test_add_and_remove_files_and_patterns(cache, tmp_path) -> None:
    root = tmp_path / "files"
    files = make_buffers(root, 5)
    other = root / "notes.txt"
    other.write_text("not a buffer")
    assert cache.add_files_to_cache(files[:3]).added == 3
    assert cache.add_files_to_cache(files).added == 2  # only those not in step
    assert cache.get_non_synchronized_files([*files, str(other)]) == ([str(other)], [])
    # the default patterns skip notes.txt; a glob of our own takes it, as a parse failure
    assert cache.synchronize_directory(root).scanned == 5
    wide = cache.synchronize_directory(root, glob_pattern="*", regex_pattern=".*")
    assert (wide.scanned, wide.added, wide.failed) == (6, 1, 1)
    assert cache.remove_files_from_cache([files[0], str(other), "/nowhere"]) == 2
    with pytest.raises(InvalidPatternError):
        cache.synchronize_directory(root, regex_pattern="(")
    with pytest.raises(NotASyncDirectoryError) as not_dir:  # also a NotADirectoryError
        cache.synchronize_directory(files[1])
    assert isinstance(not_dir.value, NotADirectoryError)
    with pytest.raises(InvalidArgumentError):
        cache.synchronize_directory(root, batch_size=0)
    with pytest.raises(InvalidMachineIdError):
        cache.synchronize_directory(root, machine_id="@datasets")


# -- server-side sync, and the files opened ---------------------------------------------------


def test_server_side_sync_and_matching_buffers(client, sync_root, tmp_path) -> None:
    cache = fresh_cache(client, machine_id="elsewhere")  # this workstation is another machine
    root = sync_root / f"s-{uuid.uuid4().hex[:8]}"
    files = make_buffers(root, 6)
    progress = list(cache.iter_synchronize_directory(root, server_side=True, batch_size=2))
    assert done(progress).added == 6
    held = by_path(cache)
    assert set(held) == {os.path.realpath(f) for f in files}
    assert {r.machine_id for r in held.values()} == {""}
    again = cache.synchronize_directory(root, server_side=True)
    assert again.unchanged == 6
    q = select(M).filter(M.channel == 1).order_by(M.process)
    buffers = cache.get_matching_buffers(q)
    assert [b.process for b in buffers] == [0, 3]
    for b in buffers:  # streamed from the daemon: the files are not this machine's
        assert not b.is_local and b.content == Path(b.path).read_bytes()
        assert b.channel == 1 and b["process"] == b.process
    # the same files synced client-side by the daemon's own machine read locally
    local = fresh_cache(client, machine_id="")
    local.synchronize_directory(root)
    (mine,) = local.get_matching_buffers(select(M).filter(M.process == 3))
    assert mine.is_local and mine.open().read() == Path(mine.path).read_bytes()
    with pytest.raises(OutsideSyncRootsError):  # a PermissionError
        cache.synchronize_directory(tmp_path, server_side=True)
    with pytest.raises(PermissionError):
        cache.add_files_to_cache([str(tmp_path / "x")], server_side=True)
    # files of a third machine cannot be read from here
    other = fresh_cache(client, machine_id="pc-z")
    other.push_records([FileRecord("/far/away", FileSignature(1, 1, 1, 1), {"process": 1})])
    (far,) = other.get_matching_buffers(select(M))
    client_view = client.metadata(other.repository, machine_id="pc-y")
    with pytest.raises(FileNotFoundError, match="pc-z"):
        _ = client_view.get_matching_buffers(select(M))[0].content
    assert far.path == "/far/away"


def test_progress_is_reported_and_values_round_trip(cache, tmp_path) -> None:
    seen: list[SyncProgress] = []
    root = tmp_path / "p"
    make_buffers(root, 7)
    final = cache.synchronize_directory(root, batch_size=3, progress=seen.append)
    assert final == seen[-1] and final.done and final.added == 7 and len(seen) >= 3
    values = {"i": -5, "u": (1 << 64) - 1, "f": 2.5, "s": "é\x00x", "b": True, "n": None,
              "d": datetime(2001, 2, 3, 4, 5, 6, 789, tzinfo=UTC)}
    cache.push_records([FileRecord("/v", FileSignature(1, 2, 3, 4), values)], machine_id="v")
    (back,) = cache.get_matching_metadata(select(M).filter(M.machine_id == "v"))
    assert {k: back[k] for k in values} == values
    assert cache.count(M.u == (1 << 64) - 1) == 1
    assert cache.remove_records(["/v"], machine_id="v").removed == 1


def test_field_references_hash_and_order_keys() -> None:
    with pytest.raises(TypeError):
        {M.a}  # noqa: B018 (a field is no value: == builds a condition)
    assert Field("a").name == M.a.name == "a"
    assert select(M).order_by("-x", M.y.desc(), "z").to_request("r").order_by[0].descending
    assert repr(M["odd name"]) == "M['odd name']" and repr(M.channel) == "M.channel"
    assert pb.Filter() != (M.a == 1).to_proto()


# -- qass's facade ---------------------------------------------------------------------------


def test_the_qass_facade_keeps_qass_s_names(client, tmp_path) -> None:
    from hoard.qass import BufferMetadata as BM
    from hoard.qass import BufferMetadataCache as BMC
    from hoard.qass import select as qass_select

    name = f"m-{uuid.uuid4().hex[:12]}"
    client.create_repository(name)
    root = tmp_path / "q"
    files = make_buffers(root, 9)
    with pytest.raises(ValueError, match="SQL"):
        BMC("sqlite:///:memory:")
    bmc = BMC(client=client, repository=name, machine_id="qass-pc")
    final = bmc.synchronize_directory(str(root), verbose=0)
    assert final.added == 9
    q = qass_select(BM).filter(BM.compression_frq == 8, BM.channel == 3).order_by(BM.process)
    assert bmc.get_matching_files(q) == [files[2], files[5], files[8]]
    template = BM(compression_frq=4)
    assert template.channel is None and "compression_frq=4" in repr(template)
    by_example = bmc.get_matching_files(bmc.get_buffer_metadata_query(template))
    assert sorted(by_example) == sorted(files[1::3])
    assert bmc.get_matching_files(buffer_metadata=template) == by_example
    metadata = bmc.get_matching_metadata(q)
    assert [m.process for m in metadata] == [2, 5, 8]
    copy = BM.buffer_to_metadata(metadata[0])
    assert copy.process == 2 and copy.channel == 3
    newest_first = bmc.get_matching_files(q, sort_key=lambda m: -m.process)
    assert newest_first == [files[8], files[5], files[2]]
    buffers = bmc.get_matching_buffers(q)
    assert [b.process for b in buffers] == [2, 5, 8] and all(b.is_local for b in buffers)
    assert buffers[0].content == Path(files[2]).read_bytes()
    # deleted files: qass crashes; here they are removed without being opened
    os.remove(files[0])
    unsynced, stale = bmc.get_non_synchronized_files(files[1:])
    assert unsynced == [] and stale == [Path(files[0])]
    assert bmc.synchronize_directory(str(root), verbose=0, delete_stale_entries=True).removed == 1
    assert bmc.remove_files_from_cache(files[1:3]) == 2 and bmc.count() == 6
    with pytest.raises(AttributeError):  # qass: BM.no_such_column is an AttributeError
        bmc.get_matching_files(qass_select(BM).filter(BM.no_such_column == 1))


def test_values_the_wire_cannot_carry() -> None:
    from hoard.metadata.wire import WireValueError, from_field_value, to_field_value, to_record

    record = FileRecord("/x", FileSignature(1, 2, 3, 4), {"ok": 1, "big": 1 << 70,
                                                           "obj": object()})
    with pytest.raises(WireValueError):
        to_record(record)
    message = to_record(record, lenient=True)
    assert set(message.fields) == {"ok"} and message.has_error
    assert "big" in message.error and "obj" in message.error
    for value in (None, True, -1, (1 << 64) - 1, 0.5, "s", datetime(2020, 5, 6, tzinfo=UTC)):
        assert from_field_value(to_field_value(value)) == value
    assert select(M).where(M.a == 1).criteria == (M.a == 1)


def test_content_of_a_file_gone_since_it_was_indexed(client, sync_root) -> None:
    cache = fresh_cache(client, machine_id="elsewhere")
    root = sync_root / f"g-{uuid.uuid4().hex[:8]}"
    files = make_buffers(root, 2)
    cache.synchronize_directory(root, server_side=True)
    os.remove(files[0])
    gone, kept = cache.get_matching_buffers(select(M).order_by(M.process))
    with pytest.raises(FileNotFoundError):  # the daemon's FILE_NOT_FOUND
        _ = gone.content
    assert kept.content == Path(files[1]).read_bytes()
    assert [p.records for p in cache.pages(M.process > 99, 5)] == [[]]
    assert cache.get_matching_files(select(M).limit(0)) == [] and cache.count() == 2
    with pytest.raises(InvalidQueryError):
        cache.page(None, 0)


def test_client_side_and_server_side_syncs_give_the_same_records(client, sync_root) -> None:
    root = sync_root / f"same-{uuid.uuid4().hex[:8]}"
    make_buffers(root, 5)
    make_buffers(root / "deeper", 3, start=20)
    (root / "Broken_00001p1c0b00_dump_00.000").write_bytes(b"qassdata\x10\x00")  # fails
    here, there = fresh_cache(client, machine_id=""), fresh_cache(client)
    mine = here.synchronize_directory(root)
    theirs = there.synchronize_directory(root, server_side=True)
    assert mine == theirs and (mine.added, mine.failed) == (9, 1)
    assert {p: dict(r) for p, r in by_path(here).items()} == \
        {p: dict(r) for p, r in by_path(there).items()}
