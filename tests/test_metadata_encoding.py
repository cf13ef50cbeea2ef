"""The index's byte encodings: memcmp order is value order, for every type and across
types; no encoding is a prefix of another (so composite and descending keys sort right);
long values keep to LMDB's key limit; records come back as stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hoard.metadata.records import MAX_FIELD_NAME, FileRecord, FileSignature
from hoard_server.storage.metadata import encoding as enc

int_values = st.integers(-(1 << 63), (1 << 64) - 1)
float_values = st.floats(allow_nan=False, width=64)
str_values = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
dt_values = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                         timezones=st.just(UTC))
TYPE_ORDER = {type(None): 0, bool: 1, int: 2, float: 3, str: 4, datetime: 5}
any_values = st.one_of(st.none(), st.booleans(), int_values, float_values, str_values,
                       dt_values)


def value_key(v: object) -> tuple:
    return (TYPE_ORDER[type(v)], 0 if v is None else v)


@given(int_values, int_values)
def test_int_bytes_sort_as_ints(a: int, b: int) -> None:
    assert (enc.encode(a) < enc.encode(b)) == (a < b)
    assert (enc.encode(a) == enc.encode(b)) == (a == b)


@given(float_values, float_values)
def test_float_bytes_sort_as_floats(a: float, b: float) -> None:
    assert (enc.encode(a) < enc.encode(b)) == (a < b)
    assert (enc.encode(a) == enc.encode(b)) == (a == b)  # -0.0 is 0.0


@given(str_values, str_values)
def test_string_bytes_sort_as_strings(a: str, b: str) -> None:
    assert (enc.encode(a) < enc.encode(b)) == (a < b)
    assert (enc.encode(a) == enc.encode(b)) == (a == b)


@given(dt_values, dt_values)
def test_datetime_bytes_sort_as_datetimes(a: datetime, b: datetime) -> None:
    assert (enc.encode(a) < enc.encode(b)) == (a < b)


@given(any_values, any_values)
def test_types_sort_null_first_then_by_tag(a: object, b: object) -> None:
    ka, kb = value_key(a), value_key(b)
    assert (enc.encode(a) < enc.encode(b)) == (ka < kb)


@given(st.lists(any_values, min_size=1, max_size=3), st.lists(any_values, min_size=1,
                                                               max_size=3))
def test_no_encoding_is_a_prefix_so_tuples_and_inversions_sort(xs: list, ys: list) -> None:
    if len(xs) != len(ys):
        ys = (ys * 3)[: len(xs)]
    ex = [enc.encode(x) for x in xs]
    ey = [enc.encode(y) for y in ys]
    for a, b in zip(ex, ey, strict=True):
        assert a == b or not (a.startswith(b) or b.startswith(a))
    kx = [value_key(x) for x in xs]
    ky = [value_key(y) for y in ys]
    assert (b"".join(ex) < b"".join(ey)) == (kx < ky)
    # the first part descending, the rest ascending
    dx = enc.invert(ex[0]) + b"".join(ex[1:])
    dy = enc.invert(ey[0]) + b"".join(ey[1:])
    if kx[0] != ky[0]:
        assert (dx < dy) == (kx[0] > ky[0])
    else:
        assert (dx < dy) == (kx[1:] < ky[1:])


def test_nan_is_refused_and_minus_zero_is_zero() -> None:
    with pytest.raises(ValueError, match="NaN"):
        enc.encode(float("nan"))
    assert enc.encode(-0.0) == enc.encode(0.0)
    with pytest.raises(ValueError):
        enc.encode(1 << 64)


def test_naive_datetimes_are_utc() -> None:
    aware = datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert enc.encode(datetime(2024, 5, 1, 12)) == enc.encode(aware)
    other = aware.astimezone(__import__("datetime").timezone(timedelta(hours=2)))
    assert enc.encode(other) == enc.encode(aware)


@given(st.text(min_size=300, max_size=900), st.text(min_size=300, max_size=900))
def test_long_values_fit_a_key_and_stay_inside_their_prefix_range(a: str, b: str) -> None:
    for s in (a, b):
        form, shortened = enc.index_value(enc.encode(s))
        assert len(form) <= enc.LONGEST + 1
        assert shortened == (len(enc.encode(s)) > enc.LONGEST)
        assert len(("x" * MAX_FIELD_NAME).encode()) + 1 + len(form) + 8 <= 511
        # every range a query builds from a value's first KEEP bytes holds the form
        head = enc.encode(s)[: enc.KEEP]
        assert head <= form < (enc.successor(head) or b"\xff" * 600)
    fa, _ = enc.index_value(enc.encode(a))
    fb, _ = enc.index_value(enc.encode(b))
    assert (fa == fb) == (a == b)


@given(st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda s: "\x00" not in s),
                       any_values, max_size=6),
       st.text(min_size=1, max_size=20), st.one_of(st.none(), st.text(max_size=20)))
def test_records_come_back_as_stored(fields: dict, path: str, error: str | None) -> None:
    record = FileRecord("/" + path, FileSignature(1, -2, 3, 1 << 63), fields, "m", error)
    location, body = enc.pack_record(record)
    assert enc.unpack_record(location, body) == record
    assert enc.unpack_location(location) == ("m", "/" + path)
    assert enc.unpack_signature(location) == (record.signature, error is not None)
