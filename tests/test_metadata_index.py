"""The metadata index on its own: one record per (machine_id, path), a replaced record's
index entries replaced in the same transaction, the schema counted, long paths and long
values, a bad batch leaving nothing behind, and the consistency check seeing damage."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hoard.metadata.records import FieldType, FileRecord, FileSignature
from hoard_server.errors import InvalidArgument
from hoard_server.services.metadata.filters import parse
from hoard_server.services.metadata.query import MetadataQuery, MetadataQueryEngine, OrderBy
from hoard_server.storage.metadata.index import MetadataIndex


def rec(path: str, machine: str = "", inode: int = 1, **fields) -> FileRecord:
    return FileRecord(path, FileSignature(10, 20, 30, inode), fields, machine)


def paths(index: MetadataIndex, text: str, machine: str | None = None) -> list[str]:
    page = MetadataQueryEngine(index).run(MetadataQuery(filter=parse(text)))
    return [m.path for m in page.items if machine is None or m.machine_id == machine]


@pytest.fixture
def index(tmp_path):
    with MetadataIndex(str(tmp_path / "meta"), map_size=256 << 20) as idx:
        yield idx


def schema(index: MetadataIndex) -> dict[str, dict[str, int]]:
    return {f.name: {t.label: n for t, n in f.counts.items() if n} for f in index.schema()}


def test_a_replaced_record_takes_its_index_entries_with_it(index) -> None:
    counts = index.upsert_many([rec("/a/x", process=1, channel=1), rec("/a/y", process=2)])
    assert (counts.added, counts.updated) == (2, 0)
    counts = index.upsert_many([rec("/a/x", process=5, partnumber="P")])
    assert (counts.added, counts.updated) == (0, 1)
    assert index.count() == 2
    assert paths(index, "process == 1") == []
    assert paths(index, "process == 5") == ["/a/x"]
    assert paths(index, "partnumber == 'P'") == ["/a/x"]
    assert schema(index)["process"] == {"int": 2}
    assert "channel" not in schema(index)  # no record holds it any more
    assert index.check() == []
    again = index.upsert_many([rec("/a/x", process=5, partnumber="P")])
    assert again.unchanged == 1


def test_one_path_on_two_machines_is_two_records(index) -> None:
    index.upsert_many([rec("/d/f", "", process=1), rec("/d/f", "lab-pc", process=2)])
    assert index.count() == 2
    assert index.get("/d/f").fields["process"] == 1
    assert index.get("/d/f", "lab-pc").fields["process"] == 2
    assert paths(index, "machine_id == 'lab-pc'") == ["/d/f"]
    index.remove_many([("lab-pc", "/d/f")])
    assert index.get("/d/f", "lab-pc") is None and index.get("/d/f") is not None
    assert index.check() == []


def test_schema_counts_types_and_nulls(index) -> None:
    when = datetime(2024, 1, 2, tzinfo=UTC)
    index.upsert_many([
        rec("/f1", v=1, t=when, flag=True), rec("/f2", v="x", t=None), rec("/f3", v=2.5),
    ])
    s = schema(index)
    assert s["v"] == {"int": 1, "str": 1, "float": 1}
    assert s["t"] == {"datetime": 1, "null": 1}
    assert s["flag"] == {"bool": 1}
    assert s["path"] == {"str": 3}
    info = next(f for f in index.schema() if f.name == "v")
    assert set(info.types) == {FieldType.INT, FieldType.STR, FieldType.FLOAT}
    assert paths(index, "v > 1") == ["/f3"]  # numbers only: the string is not compared


def test_long_paths_and_long_values_are_kept_whole(index) -> None:
    deep = "/" + "/".join(["d" * 200] * 5) + "/file"
    long_text = "x" * 1000
    index.upsert_many([rec(deep, note=long_text), rec("/short", note=long_text + "y")])
    assert index.get(deep).path == deep
    assert paths(index, f"note == '{long_text}'") == [deep]
    assert sorted(paths(index, "note prefix 'xxx'")) == sorted([deep, "/short"])
    assert schema(index)["note"] == {"str": 2}
    assert next(f for f in index.schema() if f.name == "note").shortened == 2
    page = MetadataQueryEngine(index).run(MetadataQuery(order_by=(OrderBy("note", True),)))
    assert [m.path for m in page.items] == ["/short", deep]
    index.remove_many([("", deep)])
    assert index.check() == []
    assert [p for p, _s, _f in index.signatures()] == ["/short"]


def test_signatures_under_a_directory(index) -> None:
    index.upsert_many([rec("/r/a", inode=1), rec("/r/sub/b", inode=2), rec("/rx/c", inode=3),
                       rec("/r/\x01odd", inode=4), rec("/r/a", "m2", inode=5)])
    under = sorted(p for p, _sig, _failed in index.signatures("", under="/r/"))
    assert under == ["/r/\x01odd", "/r/a", "/r/sub/b"]
    assert [s.inode for _p, s, _f in index.signatures("m2")] == [5]


def test_a_batch_with_a_bad_value_writes_nothing(index) -> None:
    index.upsert_many([rec("/ok", v=1)])
    with pytest.raises(InvalidArgument) as caught:
        index.upsert_many([rec("/new", v=2), rec("/bad", v=float("nan"))])
    assert caught.value.reason == "INVALID_VALUE"
    assert index.count() == 1 and index.get("/new") is None
    with pytest.raises(InvalidArgument):
        index.upsert_many([rec("/m", "x" * 200)])
    assert index.check() == []


def test_records_survive_reopening(tmp_path) -> None:
    where = str(tmp_path / "meta")
    with MetadataIndex(where, map_size=64 << 20) as index:
        index.upsert_many([rec("/a", v=1), rec("/b", v=2)])
    with MetadataIndex(where, map_size=64 << 20) as index:
        assert index.count() == 2 and paths(index, "v >= 2") == ["/b"]
        assert index.check() == []


def test_the_check_sees_a_missing_entry_and_an_orphan(index) -> None:
    index.upsert_many([rec("/a", v=1)])
    fields = index.lmdb.dbs["fields"]
    with index.lmdb.write() as txn:
        key = next(k for k, _ in txn.cursor(db=fields) if k.startswith(b"v\x00"))
        txn.delete(key, db=fields)
        txn.put(b"w\x00" + key[2:], b"", db=fields)
    problems = index.check()
    assert any("missing index entry" in p for p in problems)
    assert any("without its record" in p for p in problems)
    assert any("schema" in p for p in problems) or len(problems) >= 2


# -- any sequence of writes leaves the index consistent and answering as the records say --

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_metadata_query import (  # noqa: E402
    KINDS,
    filters,
    ref_holds,
    ref_order,
    ref_problem,
)

PATHS = [f"/p/{i}" for i in range(6)] + ["/p/" + "long" * 200]


@st.composite
def write_sequences(draw: st.DrawFn) -> list[tuple[str, list[FileRecord]]]:
    ops = []
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.integers(0, 3)) == 0:
            ops.append(("remove", [FileRecord(p, FileSignature(0, 0, 0, 0),
                                              machine_id=draw(st.sampled_from(["", "m"])))
                                   for p in draw(st.lists(st.sampled_from(PATHS)))]))
            continue
        batch = []
        for path in draw(st.lists(st.sampled_from(PATHS), max_size=5)):
            fields = {name: draw(values) for name, values in KINDS.items()
                      if draw(st.booleans())}
            error = draw(st.one_of(st.none(), st.just("buffer: broken")))
            batch.append(FileRecord(path, FileSignature(1, 2, 3, draw(st.integers(0, 2))),
                                    fields, draw(st.sampled_from(["", "m"])), error))
        ops.append(("upsert", batch))
    return ops


@settings(max_examples=150, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ops=write_sequences(), probes=st.lists(filters, min_size=1, max_size=3),
       order=st.lists(st.builds(OrderBy, st.sampled_from([*KINDS, "path"]), st.booleans()),
                      min_size=1, max_size=2, unique_by=lambda o: o.field))
def test_any_writes_leave_the_index_consistent(tmp_path_factory, ops, probes, order) -> None:
    model: dict[tuple[str, str], FileRecord] = {}
    where = str(tmp_path_factory.mktemp("idx"))
    with MetadataIndex(where, map_size=64 << 20) as index:
        for kind, records in ops:
            if kind == "upsert":
                index.upsert_many(records)
                for r in records:
                    model[(r.machine_id, r.path)] = r
            else:
                index.remove_many((r.machine_id, r.path) for r in records)
                for r in records:
                    model.pop((r.machine_id, r.path), None)
        assert index.check() == []
        assert index.count() == len(model)
        for (machine, path), r in model.items():
            assert index.get(path, machine) == r
        engine = MetadataQueryEngine(index)
        records = list(model.values())
        for expr in probes:
            if ref_problem(records, expr) is not None:
                continue
            got = sorted((m.machine_id, m.path) for m in engine.run(MetadataQuery(expr)).items)
            matching = [r for r in records if ref_holds(expr, r.all_fields())]
            assert got == sorted((r.machine_id, r.path) for r in matching)
            known = {name for r in records for name in r.all_fields()} | {"path"}
            if all(o.field in known for o in order):
                page = engine.run(MetadataQuery(expr, tuple(order)))
                assert [m.path for m in page.items] == ref_order(matching, tuple(order))
