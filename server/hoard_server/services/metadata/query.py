"""Metadata queries over the index: check, plan, run, page.

A ``MetadataQuery`` is a filter (``filters``), an ordering (fields, each ascending or
descending; ties are broken by machine_id and path, so every ordering is total; without
one, results come in the order the files were first indexed), a limit, a resume token and
what to return (paths, whole records or chosen fields).

How it runs, in one read snapshot of the index:

1. The filter is checked against the schema: an unknown field is UNKNOWN_FIELD, a value
   no record of the field could equal (a string for a number field...) TYPE_MISMATCH.
2. Candidates come from the most selective indexed condition of the filter's top-level
   ``and`` (each condition's index range is counted, up to the best count so far); an
   ``or`` or ``in`` is the union of its ranges; ``!=`` and ``not`` use no index.
   Ranges are wide enough never to miss a match (long values are kept shortened in the
   index), and every candidate is then checked against the whole filter on its record.
   A wide range on a field every record holds (``process > 100``) is not scanned: the
   few records outside it are ruled out instead.
3. With an ordering, the index of the first order field is walked in order instead when
   that costs less than sorting the candidates (``_walk_pays``), a group of equal values
   at a time, until the limit is reached (or to the end). With a small limit and only
   exact conditions, no plan is made at all: the walk checks each file's stored values
   (``_probe_walk``) and gives way to a plan when few files match.

A page ends with a resume token when more may follow: the sort key of its last item and
a fingerprint of the query it belongs to.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import itertools
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from hoard.metadata.records import BUILTIN_FIELDS, FieldType, FileRecord, Value
from hoard_server.errors import InvalidArgument
from hoard_server.services.metadata import filters as f
from hoard_server.storage.metadata import encoding as enc
from hoard_server.storage.metadata.index import FieldInfo, IndexSnapshot, MetadataIndex

ALL_FIELDS = ("*",)
MAX_LIMIT = 1_000_000


@dataclass(frozen=True)
class OrderBy:
    field: str
    descending: bool = False


@dataclass
class MetadataQuery:
    """What to find. ``fields``: None for paths only, ``ALL_FIELDS`` for whole records,
    or the names of the fields to return."""

    filter: f.Expr | None = None
    order_by: tuple[OrderBy, ...] = ()
    limit: int | None = None
    resume_token: str | None = None
    fields: tuple[str, ...] | None = None

    @classmethod
    def from_text(cls, text: str, order_by: Iterable[str] = (), **kwargs: object
                  ) -> MetadataQuery:
        """The CLI's form: ``'channel == 1 and process > 100'``, order fields as names
        with an optional leading ``-`` for descending."""
        order = tuple(OrderBy(o[1:], True) if o.startswith("-") else OrderBy(o)
                      for o in order_by)
        return cls(filter=f.parse(text), order_by=order, **kwargs)  # type: ignore[arg-type]


@dataclass(slots=True)
class Match:
    path: str
    machine_id: str
    fields: dict[str, Value] | None = None
    error: str | None = None


@dataclass
class QueryPage:
    items: list[Match] = field(default_factory=list)
    next_token: str | None = None


# -- checking ---------------------------------------------------------------------------
_NUMBER = {FieldType.INT, FieldType.FLOAT}
_BUILTIN_INFO = {name: FieldInfo(name, {FieldType.STR: 1}) for name in BUILTIN_FIELDS}


def _field_info(snap: IndexSnapshot, name: str) -> FieldInfo:
    info = snap.field(name)
    if info is not None:
        return info
    if name in _BUILTIN_INFO:
        return _BUILTIN_INFO[name]
    raise InvalidArgument(f"unknown field {name!r}: no record has it", reason="UNKNOWN_FIELD",
                          field=name)


def _literal_types(value: Value) -> set[FieldType]:
    if isinstance(value, bool):
        return {FieldType.BOOL}
    if isinstance(value, int | float):
        return set(_NUMBER)
    if isinstance(value, str):
        return {FieldType.STR}
    if isinstance(value, datetime):
        return {FieldType.DATETIME}
    raise InvalidArgument(f"{value!r} is not a metadata value", reason="INVALID_QUERY")


def _checked_literal(info: FieldInfo, value: Value, op: str) -> Value:
    """The literal as compared: a string for a datetime field becomes a datetime; a type
    no value of the field has is TYPE_MISMATCH."""
    if value is None:
        if op not in ("==", "!="):
            raise InvalidArgument(f"field {info.name!r}: null can only be compared with == "
                                  f"or !=", reason="INVALID_QUERY", field=info.name)
        return None
    if isinstance(value, float) and math.isnan(value):
        raise InvalidArgument(f"field {info.name!r}: NaN cannot be compared",
                              reason="INVALID_QUERY", field=info.name)
    held = set(info.types) - {FieldType.NULL}
    if not held:
        return value  # only nulls so far: nothing to mismatch, nothing will match
    if isinstance(value, str) and held == {FieldType.DATETIME}:
        return f.parse_datetime(value)
    if isinstance(value, datetime):
        value = f.parse_datetime(value.isoformat())
    if not (_literal_types(value) & held):
        shown = ", ".join(sorted(t.label for t in held))
        raise InvalidArgument(
            f"type mismatch: field {info.name!r} holds {shown}, not "
            f"{type(value).__name__} ({value!r})", reason="TYPE_MISMATCH", field=info.name)
    return value


def check_filter(snap: IndexSnapshot, expr: f.Expr | None) -> f.Expr | None:
    """``expr`` with its fields known and its literals of their fields' types."""
    if expr is None:
        return None
    if isinstance(expr, f.And):
        return f.And(tuple(check_filter(snap, p) for p in expr.parts))  # type: ignore[misc]
    if isinstance(expr, f.Or):
        return f.Or(tuple(check_filter(snap, p) for p in expr.parts))  # type: ignore[misc]
    if isinstance(expr, f.Not):
        part = check_filter(snap, expr.part)
        assert part is not None
        return f.Not(part)
    info = _field_info(snap, expr.field)
    if isinstance(expr, f.Prefix):
        if not isinstance(expr.prefix, str):
            raise InvalidArgument("prefix takes a string", reason="INVALID_QUERY")
        held = set(info.types) - {FieldType.NULL}
        if held and FieldType.STR not in held:
            raise InvalidArgument(f"type mismatch: prefix needs a string field; "
                                  f"{info.name!r} holds no strings", reason="TYPE_MISMATCH",
                                  field=info.name)
        return expr
    if isinstance(expr, f.In):
        if not expr.values:
            raise InvalidArgument(f"field {info.name!r}: 'in' needs at least one value",
                                  reason="INVALID_QUERY", field=info.name)
        return f.In(expr.field, tuple(_checked_literal(info, v, "==") for v in expr.values))
    return f.Compare(expr.field, expr.op, _checked_literal(info, expr.value, expr.op))


# -- index ranges -----------------------------------------------------------------------
Range = tuple[bytes, bytes | None]  # [low, high) over a field's value forms


@dataclass
class Ranges:
    """Where in the index the records a condition may match are: ``(field, [ranges])``
    pairs. ``exact``: the entries in them are exactly the matches (no check needed)."""

    parts: list[tuple[str, list[Range]]]
    exact: bool


def _tag_end(tag: bytes) -> bytes:
    return bytes([tag[0] + 1])


def _after(encoded: bytes) -> bytes:
    succ = enc.successor(encoded)
    assert succ is not None  # a tag byte is never 0xFF
    return succ


_INT_LOW, _INT_HIGH = -(1 << 63), (1 << 64) - 1
_T_INT_END = _tag_end(enc.T_INT)
_T_FLOAT_END = _tag_end(enc.T_FLOAT)


def _int_ranges(op: str, value: int | float) -> list[Range]:
    """The int entries that compare ``op`` with a number: exact bounds."""
    if isinstance(value, float) and math.isinf(value):
        everything = (value > 0 and op in ("<", "<=")) or (value < 0 and op in (">", ">="))
        return [(enc.T_INT, _T_INT_END)] if everything else []
    if op == "==":
        if value == math.floor(value) and _INT_LOW <= value <= _INT_HIGH:
            e = enc.T_INT + enc.encode_int(int(value))
            return [(e, _after(e))]
        return []
    if op in (">", ">="):
        low = math.floor(value) + 1 if op == ">" else math.ceil(value)
        if low > _INT_HIGH:
            return []
        return [(enc.T_INT + enc.encode_int(max(low, _INT_LOW)), _T_INT_END)]
    high = math.ceil(value) - 1 if op == "<" else math.floor(value)  # inclusive
    if high < _INT_LOW:
        return []
    return [(enc.T_INT, _after(enc.T_INT + enc.encode_int(min(high, _INT_HIGH))))]


def _float_ranges(op: str, value: int | float) -> tuple[list[Range], bool]:
    """The float entries that compare ``op`` with a number; exact unless the number has
    no float of its own (a huge int), when the bounds are widened to its neighbours."""
    as_float = float(value)
    exact = as_float == value
    e = enc.T_FLOAT + enc.encode_float(as_float)
    if exact:
        if op == "==":
            return [(e, _after(e))], True
        if op == ">":
            return [(_after(e), _T_FLOAT_END)], True
        if op == ">=":
            return [(e, _T_FLOAT_END)], True
        if op == "<":
            return [(enc.T_FLOAT, e)], True
        return [(enc.T_FLOAT, _after(e))], True
    below = enc.T_FLOAT + enc.encode_float(math.nextafter(as_float, -math.inf))
    above = enc.T_FLOAT + enc.encode_float(math.nextafter(as_float, math.inf))
    if op == "==":
        return [(below, _after(above))], False
    if op in (">", ">="):
        return [(below, _T_FLOAT_END)], False
    return [(enc.T_FLOAT, _after(above))], False


def atom_ranges(expr: f.Atom, info: FieldInfo | None) -> Ranges | None:
    """The index ranges of a condition on one field, or None when the index cannot
    narrow it (``!=``, null: absent fields have no entries). ``info``: the field's schema
    (its shortened values make string ranges inexact)."""
    name = expr.field
    shortened = info is not None and info.shortened > 0
    if isinstance(expr, f.Prefix):
        head = enc.T_STR + enc.encode_str(expr.prefix)[:-1]
        exact = len(head) <= enc.KEEP
        head = head[: enc.KEEP]
        return Ranges([(name, [(head, _after(head))])], exact)
    if isinstance(expr, f.In):
        parts: list[Range] = []
        exact = True
        for v in expr.values:
            sub = atom_ranges(f.Compare(name, "==", v), info)
            if sub is None:
                return None
            exact = exact and sub.exact
            for _name, rs in sub.parts:
                parts.extend(rs)
        return Ranges([(name, parts)], exact)
    op, value = expr.op, expr.value
    if value is None or op == "!=":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        floats, exact = _float_ranges(op, value)
        return Ranges([(name, _int_ranges(op, value) + floats)], exact)
    e = enc.encode(value)
    if shortened or len(e) > enc.LONGEST:  # wide enough for shortened forms; then checked
        head = e[: enc.KEEP]
        if op == "==":
            r: Range = (head, _after(head))
        elif op in (">", ">="):
            r = (head, _tag_end(e[:1]))
        else:
            r = (e[:1], _after(head))
        return Ranges([(name, [r])], False)
    if op == "==":
        r = (e, _after(e))
    elif op == ">":
        r = (_after(e), _tag_end(e[:1]))
    elif op == ">=":
        r = (e, _tag_end(e[:1]))
    elif op == "<":
        r = (e[:1], e)
    else:
        r = (e[:1], _after(e))
    return Ranges([(name, [r])], True)


def expr_ranges(snap: IndexSnapshot, expr: f.Expr) -> Ranges | None:
    """The index ranges of any condition: an ``or`` is the union of its parts' (exact if
    all are); a nested ``and`` takes its first narrowable part's (not exact)."""
    if isinstance(expr, f.Compare | f.In | f.Prefix):
        return atom_ranges(expr, snap.field(expr.field))
    if isinstance(expr, f.Or):
        parts: list[tuple[str, list[Range]]] = []
        exact = True
        for part in expr.parts:
            sub = expr_ranges(snap, part)
            if sub is None:
                return None
            parts.extend(sub.parts)
            exact = exact and sub.exact
        return Ranges(parts, exact)
    if isinstance(expr, f.And):
        for part in expr.parts:
            sub = expr_ranges(snap, part)
            if sub is not None:
                return Ranges(sub.parts, False)
    return None


def _intersect(a: Ranges, b: Ranges) -> Ranges:
    """The ranges of both (same field, both exact): pairwise overlaps."""
    name = a.parts[0][0]
    out: list[Range] = []
    for lo1, hi1 in a.parts[0][1]:
        for lo2, hi2 in b.parts[0][1]:
            lo = max(lo1, lo2)
            his = [h for h in (hi1, hi2) if h is not None]
            hi = min(his) if his else None
            if hi is None or lo < hi:
                out.append((lo, hi))
    return Ranges([(name, out)], a.exact and b.exact)


def _complement(snap: IndexSnapshot, ranges: Ranges) -> Ranges | None:
    """The entries of the field outside exact ranges on one field, when every record
    holds the field (then a record fails the condition exactly when its entry is in
    them); None otherwise."""
    if not ranges.exact or len(ranges.parts) != 1:
        return None
    name, rs = ranges.parts[0]
    info = snap.field(name)
    if info is None or info.total != snap.total():
        return None
    gaps: list[Range] = []
    edge: bytes | None = b""
    for low, high in sorted(rs):
        if high is not None and high <= low:
            continue  # empty
        if edge is None:
            break
        if low > edge:
            gaps.append((edge, low))
        edge = None if high is None else max(edge, high)
    if edge is not None:
        gaps.append((edge, None))
    return Ranges([(name, gaps)], True)


def _within(form: bytes | None, ranges: list[Range]) -> bool:
    if form is None:
        return False
    return any(low <= form and (high is None or form < high) for low, high in ranges)


def _unshortened(snap: IndexSnapshot, name: str) -> bool:
    """Whether the field's stored forms are whole encodings (they sort as the values)."""
    info = snap.field(name)
    return info is None or info.shortened == 0


def _disjoint(ranges: list[Range]) -> bool:
    """Whether no two ranges overlap (no index entry lies in two of them)."""
    ordered = sorted(ranges, key=lambda r: r[0])
    return all(high is not None and high <= low
               for (_, high), (low, _) in itertools.pairwise(ordered))


def _is_equality(expr: f.Expr) -> bool:
    return isinstance(expr, f.In) or (isinstance(expr, f.Compare) and expr.op == "==")


# -- sort keys and tokens ---------------------------------------------------------------
def order_part(o: OrderBy, value: Value) -> bytes:
    encoded = enc.encode(value)
    return enc.invert(encoded) if o.descending else encoded


def sort_key(order: tuple[OrderBy, ...], fields: dict[str, Value], machine_id: str,
             path: str) -> bytes:
    """Bytes that sort as the ordering does (prefix-free parts; descending ones inverted),
    ending with machine_id and path so that no two records tie."""
    parts = [order_part(o, fields.get(o.field)) for o in order]
    parts.append(enc.encode_str(machine_id))
    parts.append(enc.encode_str(path))
    return b"".join(parts)


def _fingerprint(query: MetadataQuery) -> str:
    text = repr((query.filter, query.order_by))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _make_token(query: MetadataQuery, key: bytes, first_form: bytes | None) -> str:
    body = {"q": _fingerprint(query), "k": key.hex()}
    if first_form is not None:
        body["f"] = first_form.hex()
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode()


def _read_token(query: MetadataQuery) -> tuple[bytes, bytes | None] | None:
    if not query.resume_token:
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(query.resume_token.encode()))
        key = bytes.fromhex(body["k"])
        first = bytes.fromhex(body["f"]) if "f" in body else None
        fingerprint = body["q"]
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument("malformed resume token", reason="INVALID_PAGE_TOKEN") from None
    if fingerprint != _fingerprint(query):
        raise InvalidArgument("the resume token belongs to another query (filter or order)",
                              reason="INVALID_PAGE_TOKEN")
    return key, first


# -- running ----------------------------------------------------------------------------
SCAN_PER_DECODE = 20  # index entries scanned for the price of one record decoded
PROBE_COST = 8  # index entries scanned for the price of one value looked up by doc id


@dataclass
class _Plan:
    """Candidates (``docs``: a set of doc ids, or None for every record) and what of the
    filter is left to check on each candidate's record (None: nothing)."""

    docs: set[bytes] | None
    residual: f.Expr | None


@dataclass(slots=True)
class _Hit:
    doc_id: bytes
    key: bytes  # the sort key; the doc id when the query has no ordering
    first_form: bytes | None
    record: FileRecord | None  # decoded when something needed it
    location: tuple[str, str] | None = None


def _group_hits(snap: IndexSnapshot, first: OrderBy, form: bytes, doc_ids: list[bytes],
                start: bytes | None, after: bytes | None) -> list[_Hit]:
    """The hits of one group of an order walk (files sharing the first order field's value
    ``form``), past the resume key ``after``: a lone file needs no key (its place is its
    value's, unless it is the group the page resumes in); larger groups are sorted by
    machine_id and path."""
    if len(doc_ids) == 1 and (after is None or form != start):
        return [_Hit(doc_ids[0], b"", form, None)]
    group = []
    for doc_id, (machine, path) in zip(doc_ids, snap.paths(doc_ids), strict=True):
        key = _walk_key(first, form, machine, path)
        if after is None or key > after:
            group.append(_Hit(doc_id, key, form, None, (machine, path)))
    group.sort(key=lambda h: h.key)
    return group


class MetadataQueryEngine:
    """Runs queries over one ``MetadataIndex``."""

    def __init__(self, index: MetadataIndex) -> None:
        self.index = index

    def run(self, query: MetadataQuery) -> QueryPage:
        with self.index.snapshot() as snap:
            return self._run(snap, query)

    def iter_all(self, query: MetadataQuery, page_size: int = 10_000) -> Iterator[Match]:
        """Every match, page by page (each page in a snapshot of its own)."""
        limit = query.limit
        token = query.resume_token
        sent = 0
        while True:
            size = page_size if limit is None else min(page_size, limit - sent)
            if size <= 0:
                return
            page = self.run(MetadataQuery(query.filter, query.order_by, size, token,
                                          query.fields))
            yield from page.items
            sent += len(page.items)
            if page.next_token is None:
                return
            token = page.next_token

    def count(self, expr: f.Expr | None) -> int:
        with self.index.snapshot() as snap:
            expr = check_filter(snap, expr)
            plan = self._plan(snap, expr)
            if plan.residual is None:
                return snap.total() if plan.docs is None else len(plan.docs)
            test = f.compile_filter(plan.residual)
            docs = plan.docs if plan.docs is not None else (d for d, _ in snap.all_locations())
            return sum(1 for d in docs if test(snap.record(d).all_fields()))

    # -- inside one snapshot ------------------------------------------------------------
    def _run(self, snap: IndexSnapshot, query: MetadataQuery) -> QueryPage:
        expr = self._checked(snap, query)
        if query.fields is not None and query.fields != ALL_FIELDS:
            for name in query.fields:
                _field_info(snap, name)
        hits, next_token = self._page(snap, query, expr, _read_token(query))
        if query.fields is None:
            return QueryPage([
                Match(h.record.path, h.record.machine_id, None, h.record.error)
                if h.record is not None else Match(path, machine)
                for h, (machine, path) in zip(hits, self._locations(snap, hits), strict=True)
            ], next_token)
        return QueryPage([self._output(snap, h, query.fields) for h in hits], next_token)

    def run_paths(self, query: MetadataQuery) -> tuple[list[str], str | None]:
        """The paths of a page of ``query`` (its ``fields`` aside), and its resume token:
        ``run`` without building a ``Match`` per file."""
        locations, next_token = self.run_locations(query)
        return [path for _machine, path in locations], next_token

    def run_locations(self, query: MetadataQuery) -> tuple[list[tuple[str, str]], str | None]:
        """(machine_id, path) of each match of a page of ``query`` (its ``fields`` aside),
        and its resume token."""
        with self.index.snapshot() as snap:
            expr = self._checked(snap, query)
            token = _read_token(query)
            if not query.order_by and expr is not None:
                # unordered, and the plan settles the filter: doc ids in order, no hits made
                plan = self._plan(snap, expr)
                if plan.residual is None and plan.docs is not None:
                    ids = sorted(plan.docs)
                    if token is not None:
                        ids = ids[bisect.bisect_right(ids, token[0]):]
                    limit = query.limit
                    more = limit is not None and len(ids) > limit
                    if limit is not None:
                        del ids[limit:]
                    next_token = _make_token(query, ids[-1], None) if more and ids else None
                    return snap.paths(ids), next_token
            hits, next_token = self._page(snap, query, expr, token)
            return self._locations(snap, hits), next_token

    def iter_paths(self, query: MetadataQuery, page_size: int = 10_000) -> Iterator[str]:
        """Every matching path, page by page (each page in a snapshot of its own)."""
        limit = query.limit
        token = query.resume_token
        sent = 0
        while True:
            size = page_size if limit is None else min(page_size, limit - sent)
            if size <= 0:
                return
            paths, token = self.run_paths(MetadataQuery(query.filter, query.order_by, size,
                                                        token))
            yield from paths
            sent += len(paths)
            if token is None:
                return

    def iter_locations(self, query: MetadataQuery, page_size: int = 10_000
                       ) -> Iterator[tuple[str, str]]:
        """(machine_id, path) of every match, page by page (each in a snapshot of its own)."""
        limit = query.limit
        token = query.resume_token
        sent = 0
        while True:
            size = page_size if limit is None else min(page_size, limit - sent)
            if size <= 0:
                return
            locations, token = self.run_locations(MetadataQuery(query.filter, query.order_by,
                                                                 size, token))
            yield from locations
            sent += len(locations)
            if token is None:
                return

    def _checked(self, snap: IndexSnapshot, query: MetadataQuery) -> f.Expr | None:
        if query.limit is not None and not 0 < query.limit <= MAX_LIMIT:
            raise InvalidArgument(f"limit must be between 1 and {MAX_LIMIT}",
                                  reason="INVALID_QUERY")
        expr = check_filter(snap, query.filter)
        for o in query.order_by:
            _field_info(snap, o.field)
        return expr

    @staticmethod
    def _locations(snap: IndexSnapshot, hits: list[_Hit]) -> list[tuple[str, str]]:
        """(machine_id, path) of each hit, those not yet known read in one loop."""
        missing = [h.doc_id for h in hits if h.record is None and h.location is None]
        found = iter(snap.paths(missing))
        return [h.location or ((h.record.machine_id, h.record.path) if h.record is not None
                               else next(found)) for h in hits]

    def _page(self, snap: IndexSnapshot, query: MetadataQuery, expr: f.Expr | None,
              token: tuple[bytes, bytes | None] | None) -> tuple[list[_Hit], str | None]:
        """The hits of one page (at most ``limit``) and the token of the next, if any."""
        limit = query.limit
        first = query.order_by[0] if query.order_by else None
        probed = None
        if (first is not None and len(query.order_by) == 1 and limit is not None
                and expr is not None and self._walkable(snap, first.field)):
            checks = _probe_checks(snap, expr)
            if checks is not None:
                probed = self._probe_walk(snap, first, checks, token, limit)
        if probed is not None:
            return self._finish(snap, query, probed)
        plan = self._plan(snap, expr)
        walk = False
        if first is not None and self._walkable(snap, first.field):
            total = snap.total()
            walk = _walk_pays(total, total if plan.docs is None else len(plan.docs), limit)
        hits = (self._walk(snap, query, plan, token) if walk
                else self._sorted(snap, query, plan, token))
        return self._finish(snap, query, hits)

    def _finish(self, snap: IndexSnapshot, query: MetadataQuery, hits: list[_Hit]
                ) -> tuple[list[_Hit], str | None]:
        """The page's hits (at most ``limit``) and the next page's token, if any."""
        limit = query.limit
        first = query.order_by[0] if query.order_by else None
        more = limit is not None and len(hits) > limit
        if limit is not None:
            hits = hits[:limit]
        next_token = None
        if more and hits:
            last = hits[-1]
            first_form = last.first_form
            if first is not None and first_form is None:
                record = last.record or snap.record(last.doc_id)
                first_form = enc.encode(record.all_fields().get(first.field))
            key = last.key
            if not key:  # a walk keys only the groups it sorts
                assert first is not None and first_form is not None
                machine, path = last.location or snap.location(last.doc_id)
                key = _walk_key(first, first_form, machine, path)
            next_token = _make_token(query, key, first_form)
        return hits, next_token

    def _walkable(self, snap: IndexSnapshot, name: str) -> bool:
        """Whether the field's index alone gives its order: every record holds the field
        and no value of it was shortened."""
        info = snap.field(name)
        return info is not None and info.shortened == 0 and info.total == snap.total()

    def _collect(self, snap: IndexSnapshot, ranges: Ranges, cap: int | None
                 ) -> tuple[list[bytes] | set[bytes], bool]:
        """(doc ids in the ranges, complete): stops once more than ``cap`` are found.
        Disjoint ranges of one field (``channel == 1``: its int and its float forms) give
        the lists their scans read, joined (a record holds one value of a field, so no id
        repeats: no set is built for ids an intersection drops); others give a set. A scan
        cut at its limit is incomplete even when the ids it found were already there
        (ranges of an ``or`` overlap), so ``out`` grew less than the scan read."""
        if len(ranges.parts) == 1 and _disjoint(ranges.parts[0][1]):
            name, rs = ranges.parts[0]
            ids: list[bytes] = []
            for low, high in rs:
                ids += snap.scan_ids(name, low, high, None if cap is None
                                     else cap + 1 - len(ids))
                if cap is not None and len(ids) > cap:
                    return ids, False
            return ids, True
        out: set[bytes] = set()
        for name, rs in ranges.parts:
            for low, high in rs:
                limit = None if cap is None else cap + 1 - len(out)
                found = snap.scan_ids(name, low, high, limit)
                out.update(found)
                if cap is not None and limit is not None and (len(found) >= limit
                                                              or len(out) > cap):
                    return out, False
        return out, True

    def _plan(self, snap: IndexSnapshot, expr: f.Expr | None) -> _Plan:
        """Drive from the most selective narrowable condition; intersect the other exact
        ones when scanning them costs less than checking the candidates' records; leave
        the rest to the check.

        Exact conditions on one field (``process >= 10 and process < 20``) are merged into
        one set of ranges first. Sizes are found by scanning, each scan stopped as soon as
        it passes the smallest so far; equalities go first, as they tend to be smaller."""
        if expr is None:
            return _Plan(None, None)
        conjuncts = list(expr.parts) if isinstance(expr, f.And) else [expr]
        residual: list[f.Expr] = []
        narrowable: list[tuple[Ranges, f.Expr]] = []
        by_field: dict[str, int] = {}
        for part in conjuncts:
            ranges = expr_ranges(snap, part)
            if ranges is None:
                residual.append(part)
                continue
            if ranges.exact and len(ranges.parts) == 1:
                name = ranges.parts[0][0]
                if name in by_field:
                    i = by_field[name]
                    merged = _intersect(narrowable[i][0], ranges)
                    narrowable[i] = (merged, f.And((narrowable[i][1], part)))
                    continue
                by_field[name] = len(narrowable)
            narrowable.append((ranges, part))
        if not narrowable:
            return _Plan(None, expr)
        narrowable.sort(key=lambda rp: 0 if _is_equality(rp[1]) else 1)
        found: list[tuple[list[bytes] | set[bytes], bool, Ranges, f.Expr]] = []
        excluded: set[bytes] | None = None  # the records that fail a wide range
        best: int | None = None
        for ranges, part in narrowable:
            # an equality may pay to scan whole (intersecting beats a look-up per
            # candidate); a range is only sized against the smallest so far
            cap = None if best is None or len(narrowable) == 1 else (
                best * PROBE_COST if _is_equality(part) else best)
            if cap is not None and not _is_equality(part):
                # a wide range (process > 100): the few records outside it, when every
                # record holds the field, are the ones it rules out
                outside = _complement(snap, ranges)
                if outside is not None:
                    out_ids, out_complete = self._collect(snap, outside, cap)
                    if out_complete and len(out_ids) < cap:
                        excluded = (set(out_ids) if excluded is None
                                    else excluded.union(out_ids))
                        continue
            ids, complete = self._collect(snap, ranges, cap)
            if complete:
                best = len(ids) if best is None else min(best, len(ids))
            found.append((ids, complete, ranges, part))
        if not found:  # every condition was a wide range
            assert excluded is not None
            return _Plan({d for d, _ in snap.all_locations()} - excluded, None)
        found.sort(key=lambda t: (not t[1], len(t[0])))
        first, complete, ranges0, part0 = found[0]
        if not complete:  # none finished below another: finish the first
            first, _ = self._collect(snap, ranges0, None)
        # the smallest is the set; the others are intersected with it as scanned (lists)
        docs = first if isinstance(first, set) else set(first)
        if excluded:
            docs -= excluded
        if not ranges0.exact:
            residual.append(part0)
        probes = []
        for ids, complete, ranges, part in found[1:]:
            if ranges.exact and complete:
                docs.intersection_update(ids)
            elif ranges.exact and len(ranges.parts) == 1:
                # scanning it all costs less than a look-up per candidate, up to a size
                if len(ids) <= PROBE_COST * len(docs):
                    ids, complete = self._collect(snap, ranges, PROBE_COST * len(docs))
                if complete:
                    docs.intersection_update(ids)
                else:
                    probes.append(ranges)
            elif ranges.exact:
                ids, complete = self._collect(snap, ranges, SCAN_PER_DECODE * len(docs))
                if complete:
                    docs.intersection_update(ids)
                else:
                    residual.append(part)
            else:
                residual.append(part)
        for ranges in probes:
            if not docs:
                break
            name, rs = ranges.parts[0]
            prefix = name.encode("utf-8") + b"\x00"
            docs = {d for d in docs if _within(snap.form(d, prefix), rs)}
        rest: f.Expr | None
        if not residual or not docs:
            rest = None
        elif len(residual) == 1:
            rest = residual[0]
        else:
            rest = f.And(tuple(residual))
        return _Plan(docs, rest)

    def _output(self, snap: IndexSnapshot, hit: _Hit, wanted: tuple[str, ...] | None
                ) -> Match:
        if wanted is None:
            if hit.record is not None:
                return Match(hit.record.path, hit.record.machine_id, None, hit.record.error)
            machine, path = hit.location or snap.location(hit.doc_id)
            return Match(path, machine)
        record = hit.record or snap.record(hit.doc_id)
        fields = record.all_fields()
        if wanted != ALL_FIELDS:
            fields = {name: fields.get(name) for name in wanted}
        return Match(record.path, record.machine_id, fields, record.error)

    def _sorted(self, snap: IndexSnapshot, query: MetadataQuery, plan: _Plan,
                token: tuple[bytes, bytes | None] | None) -> list[_Hit]:
        """Every candidate checked, keyed and sorted. Without an ordering the key is the
        doc id (the order files were first indexed in): nothing needs reading to sort."""
        after = token[0] if token else None
        test = f.compile_filter(plan.residual) if plan.residual is not None else None
        order = query.order_by
        limit = query.limit
        if plan.docs is None:
            ids: list[bytes] = [d for d, _ in snap.all_locations()]  # in doc id order
        else:
            ids = sorted(plan.docs)
        if not order:
            if after is not None:
                ids = ids[bisect.bisect_right(ids, after):]
            if test is None:
                if limit is not None:
                    del ids[limit + 1 :]
                return [_Hit(d, d, None, None) for d in ids]
        if test is None and all(_unshortened(snap, o.field) for o in order):
            return self._sorted_by_forms(snap, query, ids, after)
        hits: list[_Hit] = []
        for doc_id in ids:
            record = snap.record(doc_id)
            fields = record.all_fields()
            if test is not None and not test(fields):
                continue
            if not order:
                hits.append(_Hit(doc_id, doc_id, None, record))
                if limit is not None and len(hits) > limit:
                    break
                continue
            key = sort_key(order, fields, record.machine_id, record.path)
            if after is None or key > after:
                hits.append(_Hit(doc_id, key, None, record))
        hits.sort(key=lambda h: h.key)
        if limit is not None:
            del hits[limit + 1 :]
        return hits

    def _sorted_by_forms(self, snap: IndexSnapshot, query: MetadataQuery, ids: list[bytes],
                         after: bytes | None) -> list[_Hit]:
        """Sort keys from the values stored by doc id: no record decoded."""
        prefixes = [(o.field.encode("utf-8") + b"\x00", o.descending) for o in query.order_by]
        locations = snap.paths(ids)
        form, null = snap.form, enc.T_NULL
        hits = []
        for doc_id, location in zip(ids, locations, strict=True):
            parts = []
            for prefix, descending in prefixes:
                value = form(doc_id, prefix) or null
                parts.append(enc.invert(value) if descending else value)
            parts.append(enc.encode_str(location[0]))
            parts.append(enc.encode_str(location[1]))
            key = b"".join(parts)
            if after is None or key > after:
                hits.append(_Hit(doc_id, key, None, None, location))
        hits.sort(key=lambda h: h.key)
        if query.limit is not None:
            del hits[query.limit + 1 :]
        return hits

    def _walk(self, snap: IndexSnapshot, query: MetadataQuery, plan: _Plan,
              token: tuple[bytes, bytes | None] | None) -> list[_Hit]:
        """The first order field's index in order, a group of equal values at a time,
        until the limit is passed."""
        first = query.order_by[0]
        rest = query.order_by[1:]
        after = token[0] if token else None
        start = token[1] if token else None
        docs = plan.docs
        test = f.compile_filter(plan.residual) if plan.residual is not None else None
        limit = query.limit
        if test is None and not rest:
            return self._walk_forms(snap, first, docs, after, start, limit)
        out: list[_Hit] = []
        for form, doc_ids in snap.groups(first.field, first.descending, start):
            head = enc.invert(form) if first.descending else form
            group = []
            for doc_id in doc_ids:
                if docs is not None and doc_id not in docs:
                    continue
                location = None
                if test is None and not rest:
                    location = machine, path = snap.location(doc_id)
                    key = head + enc.encode_str(machine) + enc.encode_str(path)
                    record = None
                else:
                    record = snap.record(doc_id)
                    fields = record.all_fields()
                    if test is not None and not test(fields):
                        continue
                    key = head + sort_key(rest, fields, record.machine_id, record.path)
                if after is None or key > after:
                    group.append(_Hit(doc_id, key, form, record, location))
            group.sort(key=lambda h: h.key)
            out.extend(group)
            if limit is not None and len(out) > limit:
                break
        return out

    def _walk_forms(self, snap: IndexSnapshot, first: OrderBy, docs: set[bytes] | None,
                    after: bytes | None, start: bytes | None, limit: int | None
                    ) -> list[_Hit]:
        """``_walk`` when the index order is the whole order and nothing is left to check:
        a group of one file needs no key (its place is its value's), larger groups are
        sorted by machine_id and path; locations are read afterwards in one loop."""
        out: list[_Hit] = []
        for form, doc_ids in snap.groups(first.field, first.descending, start):
            if docs is not None:
                doc_ids = [d for d in doc_ids if d in docs]
                if not doc_ids:
                    continue
            out.extend(_group_hits(snap, first, form, doc_ids, start, after))
            if limit is not None and len(out) > limit:
                break
        return out

    def _probe_walk(self, snap: IndexSnapshot, first: OrderBy, checks: list[Check],
                    token: tuple[bytes, bytes | None] | None, limit: int) -> list[_Hit] | None:
        """A page of an ordered query with a small limit, without planning: the first order
        field's index in order, each file's conditions checked on its stored values, until
        the limit is passed; None (plan instead) when that takes more than
        ``PROBE_WALK`` entries per hit, as when few files match."""
        after, start = token if token else (None, None)
        budget = PROBE_WALK * (limit + 1)
        holds = _probe_test(snap, checks)
        out: list[_Hit] = []
        for form, doc_ids in snap.groups(first.field, first.descending, start):
            budget -= len(doc_ids)
            if budget < 0:
                return None
            doc_ids = [d for d in doc_ids if holds(d)]
            if not doc_ids:
                continue
            out.extend(_group_hits(snap, first, form, doc_ids, start, after))
            if len(out) > limit:
                break
        return out


PROBE_WALK = 16  # index entries walked per hit before a probing walk gives way to a plan


Check = tuple[bytes, list[Range], bool]  # field prefix, ranges, an equality (or "in")


def _probe_checks(snap: IndexSnapshot, expr: f.Expr) -> list[Check] | None:
    """(field prefix, ranges, equality) of each condition of a conjunction, when every one
    is exact on one field (its stored value lies in its ranges exactly when it holds);
    else None."""
    checks = []
    for part in expr.parts if isinstance(expr, f.And) else (expr,):
        ranges = expr_ranges(snap, part)
        if ranges is None or not ranges.exact or len(ranges.parts) != 1:
            return None
        name, rs = ranges.parts[0]
        checks.append((name.encode("utf-8") + b"\x00", rs, _is_equality(part)))
    return checks


def _probe_test(snap: IndexSnapshot, checks: list[Check]) -> Callable[[bytes], bool]:
    """Whether a file (doc id) meets every check, on its stored values. An equality's
    exact ranges each hold one form (encodings are prefix-free): a set test."""
    form_of = snap.form
    tests: list[tuple[bytes, frozenset[bytes] | None, list[Range]]] = []
    for prefix, rs, equality in checks:
        single = equality and all(high is not None and high == enc.successor(low)
                                  for low, high in rs)
        tests.append((prefix, frozenset(low for low, _ in rs) if single else None, rs))
    if len(tests) == 1 and tests[0][1] is not None:
        prefix, values, _ = tests[0]
        assert values is not None
        return lambda d: form_of(d, prefix) in values

    def holds(doc_id: bytes) -> bool:
        for prefix, values, rs in tests:
            form = form_of(doc_id, prefix)
            if not (form in values if values is not None else _within(form, rs)):
                return False
        return True

    return holds


WALK_ENTRY = 1  # cost of an index entry walked past, against ...
SORT_ENTRY = 4  # ... a candidate's sort key read and sorted


def _walk_pays(total: int, candidates: int, limit: int | None) -> bool:
    """Whether walking the first order field's index beats sorting the candidates: the
    walk passes ``limit`` matches after about limit * total / candidates entries."""
    if not candidates:
        return False
    walked = total if limit is None else min(total, (limit + 1) * total / candidates)
    return walked * WALK_ENTRY < candidates * SORT_ENTRY


def _walk_key(first: OrderBy, form: bytes, machine: str, path: str) -> bytes:
    head = enc.invert(form) if first.descending else form
    return head + enc.encode_str(machine) + enc.encode_str(path)
