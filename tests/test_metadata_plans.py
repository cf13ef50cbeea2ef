"""The query plans made for speed give what brute force gives, on an index large enough for
them to be chosen: a wide range ruled out by the few records outside it, the first order
field's index walked with no limit, a small limit walked with each file's stored values
checked (equalities as set tests, prefixes and ranges as ranges), paging through all of it."""

from __future__ import annotations

import random

import pytest

from hoard.metadata.records import FileRecord, FileSignature
from hoard_server.services.metadata import filters as f
from hoard_server.services.metadata.query import MetadataQuery, MetadataQueryEngine
from hoard_server.storage.metadata.index import MetadataIndex

N = 3000


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    rng = random.Random(9)
    records = []
    for i in range(N):
        fields = {"process": i, "channel": rng.randint(1, 4), "rate": rng.choice([1.5, 2, 4.0]),
                  "part": rng.choice(["PN-1", "PN-2", "XY-1"]), "day": rng.randint(1, 30)}
        if i % 500 == 7:
            fields["day"] = None  # a null among the values of a field every record holds
        records.append(FileRecord(f"/data/d{i % 7}/f{i:05d}", FileSignature(i, i, i, i), fields))
    index = MetadataIndex(str(tmp_path_factory.mktemp("plans") / "index"))
    for start in range(0, N, 1000):
        index.upsert_many(records[start:start + 1000])
    yield MetadataQueryEngine(index), records
    index.close()


def expected(records, text, order=(), limit=None):
    expr = f.parse(text) if text else None
    found = [r for r in records if f.evaluate(expr, r.all_fields())]
    for name in reversed(order):
        field = name.lstrip("-")
        found.sort(key=lambda r, fl=field: (r.fields.get(fl) is not None, r.fields.get(fl)),
                   reverse=name.startswith("-"))
    paths = [r.path for r in found]
    return paths[:limit] if limit is not None else paths


def pages(eng, text, order=(), limit=None, size=None):
    """Every path, through pages of ``size`` (resume tokens), up to ``limit``."""
    query = MetadataQuery.from_text(text, order_by=order, limit=size or limit)
    out: list[str] = []
    while True:
        page = eng.run(query)
        out.extend(m.path for m in page.items)
        if page.next_token is None or (limit is not None and len(out) >= limit):
            return out[:limit] if limit is not None else out
        query = MetadataQuery.from_text(text, order_by=order, limit=size or limit,
                                        resume_token=page.next_token)


@pytest.mark.parametrize("text", [
    "process > 100",
    "channel == 1 and process > 100",
    "channel == 1 and rate == 4 and process >= 20 and process < 2990",
    "part prefix \"PN\" and day > 2",
    "day >= 2 and channel in (2, 3)",
])
def test_filters_give_the_brute_force_files(engine, text) -> None:
    eng, records = engine
    assert sorted(eng.iter_paths(MetadataQuery.from_text(text))) == sorted(
        expected(records, text))
    # unordered: in the order the files were indexed, page by page (resume tokens)
    want = list(eng.iter_paths(MetadataQuery.from_text(text)))
    assert list(eng.iter_paths(MetadataQuery.from_text(text), page_size=37)) == want
    assert pages(eng, text, size=37) == want


@pytest.mark.parametrize(("text", "order", "limit"), [
    ("channel == 2", ("-process",), 100),
    ("channel == 2 and part prefix \"PN\"", ("process",), 50),
    ("rate == 2 and day < 10", ("-process",), 7),
    ("channel == 4", ("process",), None),
    ("", ("process",), None),
    ("", ("-process",), 2500),
])
def test_ordered_pages_give_the_brute_force_order(engine, text, order, limit) -> None:
    eng, records = engine
    want = expected(records, text, order, limit)
    assert pages(eng, text, order, limit) == want
    assert pages(eng, text, order, limit, size=37) == want
    assert list(eng.iter_paths(MetadataQuery.from_text(text, order_by=order, limit=limit))
                ) == want
