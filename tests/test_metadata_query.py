"""Metadata queries: whatever the records, filter and ordering, the index answers what a
brute-force evaluation over the same records answers (hypothesis), page by page; the text
form parses to the same filters; bad queries name their problem."""

from __future__ import annotations

import functools
import re
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hoard.metadata.records import FileRecord, FileSignature
from hoard_server.errors import InvalidArgument
from hoard_server.services.metadata import filters as f
from hoard_server.services.metadata.query import (
    ALL_FIELDS,
    MetadataQuery,
    MetadataQueryEngine,
    OrderBy,
)
from hoard_server.storage.metadata.index import MetadataIndex

# -- the reference: the documented meaning, written again without the engine's code ------

RANK = {type(None): 0, bool: 1, int: 2, float: 2, str: 3, datetime: 4}
TYPE_RANK = {type(None): 0, bool: 1, int: 2, float: 3, str: 4, datetime: 5}


def ref_holds(expr: f.Expr, fields: dict[str, Any]) -> bool:
    if isinstance(expr, f.And):
        return all(ref_holds(p, fields) for p in expr.parts)
    if isinstance(expr, f.Or):
        return any(ref_holds(p, fields) for p in expr.parts)
    if isinstance(expr, f.Not):
        return not ref_holds(expr.part, fields)
    v = fields.get(expr.field)
    if isinstance(expr, f.Prefix):
        return isinstance(v, str) and v.startswith(expr.prefix)
    if isinstance(expr, f.In):
        return any(ref_holds(f.Compare(expr.field, "==", x), fields) for x in expr.values)
    lit = expr.value
    if lit is None:
        return {"==": v is None, "!=": v is not None}[expr.op]
    if v is None or RANK[type(v)] != RANK[type(lit)]:
        return False
    return {
        "==": v == lit, "!=": v != lit, "<": v < lit, "<=": v <= lit, ">": v > lit,
        ">=": v >= lit,
    }[expr.op]


def ref_order(records: list[FileRecord], order: tuple[OrderBy, ...]) -> list[str]:
    def cmp_values(a: Any, b: Any) -> int:
        ka, kb = TYPE_RANK[type(a)], TYPE_RANK[type(b)]
        if ka != kb:
            return -1 if ka < kb else 1
        if a is None or a == b:
            return 0
        return -1 if a < b else 1

    if not order:  # the order records were first indexed in
        return [r.path for r in records]

    def cmp(r1: FileRecord, r2: FileRecord) -> int:
        f1, f2 = r1.all_fields(), r2.all_fields()
        for o in order:
            c = cmp_values(f1.get(o.field), f2.get(o.field))
            if c:
                return -c if o.descending else c
        a, b = (r1.machine_id, r1.path), (r2.machine_id, r2.path)
        return 0 if a == b else (-1 if a < b else 1)

    return [r.path for r in sorted(records, key=functools.cmp_to_key(cmp))]


def ref_problem(records: list[FileRecord], expr: f.Expr | None) -> str | None:
    """The reason the engine must refuse ``expr`` with, or None."""
    if expr is None:
        return None
    if isinstance(expr, f.And | f.Or):
        for p in expr.parts:
            problem = ref_problem(records, p)
            if problem:
                return problem
        return None
    if isinstance(expr, f.Not):
        return ref_problem(records, expr.part)
    builtin = expr.field in ("path", "directory_path", "filename", "machine_id", "error")
    present = [r.all_fields()[expr.field] for r in records if expr.field in r.all_fields()]
    if not present and not builtin:
        return "UNKNOWN_FIELD"
    held = {RANK[type(v)] for v in present if v is not None} or ({3} if builtin else set())
    if isinstance(expr, f.Prefix):
        return "TYPE_MISMATCH" if held and 3 not in held else None
    literals = expr.values if isinstance(expr, f.In) else (expr.value,)
    for lit in literals:
        if lit is not None and held and RANK[type(lit)] not in held:
            return "TYPE_MISMATCH"
    return None


# -- generated records, filters and orderings ---------------------------------------------

LONG = "L" * 420  # longer than an index key keeps: stored shortened
ints = st.one_of(st.integers(-4, 4), st.sampled_from([-(1 << 63), (1 << 63) - 1, (1 << 64) - 1]))
floats = st.one_of(
    st.sampled_from([-1.5, -0.0, 0.0, 0.5, 2.0, 3.0, float("inf"), float("-inf")]),
    st.floats(allow_nan=False, width=64),
)
texts = st.one_of(
    st.text(alphabet="ab\x00é", max_size=3),
    st.builds(lambda s: LONG + s, st.text(alphabet="ab\x00", max_size=2)),
)
stamps = st.builds(
    lambda d: datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=d),
    st.integers(-3, 3),
)
KINDS = {
    "n": ints,
    "x": floats,
    "s": texts,
    "b": st.booleans(),
    "t": stamps,
    "m": st.one_of(ints, floats, texts, st.none()),
}
FIELD_NAMES = list(KINDS)


@st.composite
def record_sets(draw: st.DrawFn) -> list[FileRecord]:
    count = draw(st.integers(0, 30))
    always = draw(st.sampled_from(["n", "x", "s", None]))
    records = []
    for i in range(count):
        fields: dict[str, Any] = {}
        for name, values in KINDS.items():
            if name == always or draw(st.integers(0, 3)) > 0:
                fields[name] = draw(values)
        machine = draw(st.sampled_from(["", "", "m1"]))
        path = f"/d{i % 3}/f{draw(st.integers(0, 5))}-{i}"
        records.append(FileRecord(path, FileSignature(i, i, i, i), fields, machine))
    return records


def literal_for(name: str) -> st.SearchStrategy[Any]:
    if name in ("n", "x", "m"):
        return st.one_of(ints, floats)
    if name == "s":
        return st.one_of(texts, st.just(LONG))
    return KINDS[name]


@st.composite
def atoms(draw: st.DrawFn) -> f.Expr:
    name = draw(st.sampled_from(FIELD_NAMES))
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return f.In(name, tuple(draw(st.lists(literal_for(name), min_size=1, max_size=3))))
    if shape == 1 and name in ("s", "m"):
        return f.Prefix(name, draw(st.sampled_from(["", "a", "b\x00", "L", LONG[:400]])))
    if shape == 2:
        return f.Compare(name, draw(st.sampled_from(["==", "!="])), None)
    op = draw(st.sampled_from(f.OPS))
    return f.Compare(name, op, draw(literal_for(name)))


filters = st.recursive(
    atoms(),
    lambda inner: st.one_of(
        st.builds(lambda ps: f.And(tuple(ps)), st.lists(inner, min_size=2, max_size=3)),
        st.builds(lambda ps: f.Or(tuple(ps)), st.lists(inner, min_size=2, max_size=3)),
        st.builds(f.Not, inner),
    ),
    max_leaves=5,
)
orderings = st.lists(
    st.builds(OrderBy, st.sampled_from([*FIELD_NAMES, "path"]), st.booleans()),
    max_size=2, unique_by=lambda o: o.field,
)


@pytest.fixture(scope="module")
def scratch():
    path = tempfile.mkdtemp(prefix="hoard-meta-query-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def fresh_index(scratch: str, records: list[FileRecord]) -> MetadataIndex:
    path = tempfile.mkdtemp(dir=scratch)
    index = MetadataIndex(path, map_size=64 << 20)
    index.upsert_many(records)
    return index


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=record_sets(), expr=st.one_of(st.none(), filters, filters, filters), order=orderings,
       limit=st.one_of(st.none(), st.integers(1, 5)))
def test_queries_answer_what_brute_force_answers(scratch, records, expr, order, limit) -> None:
    index = fresh_index(scratch, records)
    try:
        engine = MetadataQueryEngine(index)
        query = MetadataQuery(filter=expr, order_by=tuple(order), limit=limit)
        problem = ref_problem(records, expr)
        known = {name for r in records for name in r.all_fields()} | {"path"}
        if problem is None and any(o.field not in known for o in order):
            problem = "UNKNOWN_FIELD"
        if problem is not None:
            with pytest.raises(InvalidArgument) as caught:
                engine.run(query)
            assert caught.value.reason == problem
            return
        matching = [r for r in records if expr is None or ref_holds(expr, r.all_fields())]
        expected = ref_order(matching, tuple(order))
        # page by page, following the resume tokens
        got: list[str] = []
        token = None
        for _ in range(len(records) + 2):
            page = engine.run(MetadataQuery(expr, tuple(order), limit, token))
            got.extend(m.path for m in page.items)
            if limit is not None:
                assert len(page.items) <= limit
            token = page.next_token
            if token is None:
                break
        assert got == expected
        # the same through run_paths (an unordered query settled by its plan takes a
        # way of its own: doc ids straight to paths)
        got = []
        token = None
        for _ in range(len(records) + 2):
            paths, token = engine.run_paths(MetadataQuery(expr, tuple(order), limit, token))
            got.extend(paths)
            if limit is not None:
                assert len(paths) <= limit
            if token is None:
                break
        assert got == expected
        assert engine.count(expr) == len(expected)
    finally:
        index.close()


@settings(max_examples=40, deadline=None)
@given(records=record_sets(), order=orderings)
def test_records_and_chosen_fields_come_back_as_stored(scratch, records, order) -> None:
    index = fresh_index(scratch, records)
    try:
        engine = MetadataQueryEngine(index)
        known = {name for r in records for name in r.all_fields()} | {"path"}
        order = [o for o in order if o.field in known]
        whole = engine.run(MetadataQuery(order_by=tuple(order), fields=ALL_FIELDS)).items
        assert len(whole) == len(records)
        by_path = {(r.machine_id, r.path): r for r in records}
        for m in whole:
            assert m.fields == by_path[(m.machine_id, m.path)].all_fields()
        some = engine.run(MetadataQuery(order_by=tuple(order), fields=("path", "filename")))
        for m in some.items:
            assert m.fields == {"path": m.path, "filename": m.path.rsplit("/", 1)[1]}
    finally:
        index.close()


# -- the text form ------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expr"), [
    ("channel == 1 and process > 100",
     f.And((f.Compare("channel", "==", 1), f.Compare("process", ">", 100)))),
    ("a = 1 or not (b != 'x' and c <= -2.5)",
     f.Or((f.Compare("a", "==", 1),
           f.Not(f.And((f.Compare("b", "!=", "x"), f.Compare("c", "<=", -2.5))))))),
    ("compression_frq in (4, 8) AND partnumber prefix \"PN-\"",
     f.And((f.In("compression_frq", (4, 8)), f.Prefix("partnumber", "PN-")))),
    ("`raw/data.shape` == '10x3' and flag == true and note == null",
     f.And((f.Compare("raw/data.shape", "==", "10x3"), f.Compare("flag", "==", True),
            f.Compare("note", "==", None)))),
    ('t >= datetime("2024-01-31T12:00:00")',
     f.Compare("t", ">=", datetime(2024, 1, 31, 12, tzinfo=UTC))),
    ("x < 1e3 or x > -inf", f.Or((f.Compare("x", "<", 1000.0),
                                  f.Compare("x", ">", float("-inf"))))),
    ("", None),
])
def test_the_text_form_parses_to_the_filter(text: str, expr: f.Expr | None) -> None:
    assert f.parse(text) == expr


@pytest.mark.parametrize(("text", "where"), [
    ("channel ==", "found the end"),
    ("channel 1", "expected a comparison"),
    ("(channel == 1", "expected ')'"),
    ("channel == 1 process", "unexpected 'process'"),
    ("channel in 1", "expected '('"),
    ("and == 1", "expected a field name"),
    ("channel == 'x", "unexpected"),
    ("channel == foo", "expected a value"),
    ("x prefix 3", "must be a string"),
    ('t > datetime("yesterday")', "not an ISO 8601 datetime"),
])
def test_malformed_text_is_refused_with_where_and_why(text: str, where: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(where)) as caught:
        f.parse(text)
    assert caught.value.reason == "INVALID_QUERY"


def test_bad_queries_name_their_problem(tmp_path) -> None:
    records = [FileRecord(f"/d/f{i}", FileSignature(1, 1, 1, i),
                          {"process": i, "partnumber": "PN", "t": datetime(2024, 1, 1)})
               for i in range(5)]
    with MetadataIndex(str(tmp_path / "idx"), map_size=64 << 20) as index:
        index.upsert_many(records)
        engine = MetadataQueryEngine(index)
        cases = [
            (MetadataQuery.from_text("chanel == 1"), "UNKNOWN_FIELD", "'chanel'"),
            (MetadataQuery.from_text("process == 'x'"), "TYPE_MISMATCH", "'process' holds int"),
            (MetadataQuery.from_text("partnumber > 3"), "TYPE_MISMATCH", "holds str"),
            (MetadataQuery.from_text("process prefix 'x'"), "TYPE_MISMATCH", "prefix"),
            (MetadataQuery.from_text("t > 'soon'"), "INVALID_QUERY", "ISO 8601"),
            (MetadataQuery.from_text("process < null"), "INVALID_QUERY", "null"),
            (MetadataQuery.from_text("", order_by=["-nope"]), "UNKNOWN_FIELD", "'nope'"),
            (MetadataQuery(fields=("nope",)), "UNKNOWN_FIELD", "'nope'"),
            (MetadataQuery(limit=0), "INVALID_QUERY", "limit"),
            (MetadataQuery(resume_token="garbage"), "INVALID_PAGE_TOKEN", "malformed"),
        ]
        for query, reason, words in cases:
            with pytest.raises(InvalidArgument, match=words) as caught:
                engine.run(query)
            assert caught.value.reason == reason, query
        page = engine.run(MetadataQuery.from_text("process >= 0", order_by=["process"],
                                                  limit=2))
        assert page.next_token is not None
        other = MetadataQuery.from_text("process >= 1", order_by=["process"], limit=2,
                                        resume_token=page.next_token)
        with pytest.raises(InvalidArgument) as caught:
            engine.run(other)
        assert caught.value.reason == "INVALID_PAGE_TOKEN"
        # a string compared with a datetime field is read as ISO 8601
        assert len(engine.run(MetadataQuery.from_text("t >= '2024-01-01'")).items) == 5


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=record_sets(), expr=filters, order=orderings,
       limit=st.one_of(st.none(), st.integers(1, 5)))
def test_queries_answer_what_brute_force_answers_long(scratch, records, expr, order, limit
                                                       ) -> None:
    test_queries_answer_what_brute_force_answers.hypothesis.inner_test(  # type: ignore[attr-defined]
        scratch, records, expr, order, limit)
