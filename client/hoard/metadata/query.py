"""Metadata queries built in Python, read like qass's (SQLAlchemy's) ``select``:

    from hoard.metadata.query import M, select

    q = select(M).filter(M.channel == 1, M.process > 100).order_by(M.process.desc()).limit(10)
    q = select(M.path, M.process).filter((M.datamode == 2) | ~M.partnumber.startswith("PN-"))
    q = select(M).filter(M["odd name"].in_([1, 2, 3]), M.error == None)  # noqa: E711

``M`` is a namespace of field references (``M.channel``; ``M["odd name"]`` for any name).
A comparison gives a :class:`Condition`; ``&``, ``|``, ``~`` (or :func:`and_`, :func:`or_`,
:func:`not_`) combine them; several arguments to ``filter`` are and-ed. A :class:`Select`
is immutable: each method returns a new one. ``select(M)`` returns whole records,
``select(M.a, M.b)`` those fields, and the cache client (``get_matching_files``, ...) says
what it needs.

A query compiles to the wire's ``Filter`` (:meth:`Filter.to_proto`) and also has the text
form the CLI takes (``str(condition)``: ``channel == 1 and process > 100``).

What a comparison means is the daemon's (``null`` is absence: ``M.x == None`` holds where a
record has no x; ``M.x != 3`` holds only where x has a value other than 3; numbers compare
with numbers, strings with strings, ...). What is wrong before anything is sent raises here:
a value that is no metadata value is a :class:`~hoard.errors.TypeMismatchError` (a
``TypeError``), a malformed condition an :class:`~hoard.errors.InvalidQueryError` (a
``ValueError``), ``a == 1 and b == 2`` (Python's ``and``) a ``TypeError``. Unknown fields and
type mismatches against the stored records come back from the daemon as the same classes
(an unknown field is also an ``AttributeError``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hoard.errors import InvalidQueryError, TypeMismatchError
from hoard.metadata.records import Value
from hoard.metadata.wire import WireValueError, to_field_value
from hoard.v1 import metadata_pb2 as pb

__all__ = [
    "And",
    "Condition",
    "Field",
    "FieldNamespace",
    "Filter",
    "M",
    "Not",
    "Or",
    "Order",
    "Select",
    "and_",
    "not_",
    "or_",
    "select",
]

COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")


def _checked(field: str, value: object) -> Value:
    """``value`` if it can be compared on the wire; the SDK's query errors otherwise."""
    try:
        to_field_value(value, field)
    except TypeError as exc:
        raise TypeMismatchError(str(exc), reason="TYPE_MISMATCH", details={"field": field}
                                ) from None
    except WireValueError as exc:
        raise InvalidQueryError(str(exc), reason="INVALID_QUERY", details={"field": field}
                                ) from None
    return value  # type: ignore[return-value]


# -- filters ----------------------------------------------------------------------------------


class Filter:
    """A condition on records, or a combination of conditions."""

    __slots__ = ()

    def __and__(self, other: Filter) -> Filter:
        return and_(self, other)

    def __or__(self, other: Filter) -> Filter:
        return or_(self, other)

    def __invert__(self) -> Filter:
        return not_(self)

    def __bool__(self) -> bool:
        raise TypeError(
            "a query condition has no truth value: combine conditions with & | ~ "
            "(or and_, or_, not_, or several arguments to filter()), not with and/or/not"
        )

    def to_proto(self) -> pb.Filter:
        raise NotImplementedError

    def text(self) -> str:
        """The text form (``channel == 1 and process > 100``), which the daemon's parser
        reads back as this filter."""
        raise NotImplementedError

    def __str__(self) -> str:
        return self.text()


@dataclass(frozen=True, eq=True, repr=True)
class Condition(Filter):
    """``field <op> values``: op one of ``== != < <= > >=`` (one value), ``in`` (one or
    more), ``prefix`` (one string)."""

    field: str
    op: str
    values: tuple[Value, ...]

    __bool__ = Filter.__bool__  # the dataclass must not make it truthy

    def to_proto(self) -> pb.Filter:
        return pb.Filter(condition=pb.Condition(
            field=self.field, op=self.op,
            values=[to_field_value(v, self.field) for v in self.values]))

    def text(self) -> str:
        name = _text_name(self.field)
        if self.op == "in":
            return f"{name} in ({', '.join(_text_literal(v) for v in self.values)})"
        return f"{name} {self.op} {_text_literal(self.values[0])}"


@dataclass(frozen=True, eq=True, repr=True)
class And(Filter):
    parts: tuple[Filter, ...]

    __bool__ = Filter.__bool__

    def to_proto(self) -> pb.Filter:
        return pb.Filter(all=pb.FilterList(filters=[p.to_proto() for p in self.parts]))

    def text(self) -> str:
        return " and ".join(_grouped(p, Or) for p in self.parts)


@dataclass(frozen=True, eq=True, repr=True)
class Or(Filter):
    parts: tuple[Filter, ...]

    __bool__ = Filter.__bool__

    def to_proto(self) -> pb.Filter:
        return pb.Filter(any=pb.FilterList(filters=[p.to_proto() for p in self.parts]))

    def text(self) -> str:
        return " or ".join(p.text() for p in self.parts)


@dataclass(frozen=True, eq=True, repr=True)
class Not(Filter):
    part: Filter

    __bool__ = Filter.__bool__

    def to_proto(self) -> pb.Filter:
        out = pb.Filter()
        getattr(out, "not").CopyFrom(self.part.to_proto())  # "not" is a Python keyword
        return out

    def text(self) -> str:
        return f"not {_grouped(self.part, (And, Or))}"


def _grouped(part: Filter, kinds: type | tuple[type, ...]) -> str:
    return f"({part.text()})" if isinstance(part, kinds) else part.text()


def _flatten(kind: type[And] | type[Or], parts: Iterable[Filter]) -> tuple[Filter, ...]:
    out: list[Filter] = []
    for p in parts:
        if not isinstance(p, Filter):
            raise TypeMismatchError(
                f"expected a condition such as M.channel == 1, not {type(p).__name__} "
                f"({p!r})", reason="TYPE_MISMATCH")
        out.extend(p.parts if isinstance(p, kind) else (p,))
    return tuple(out)


def and_(*conditions: Filter) -> Filter:
    """Every condition holds."""
    parts = _flatten(And, conditions)
    if not parts:
        raise InvalidQueryError("and_() needs at least one condition", reason="INVALID_QUERY")
    return parts[0] if len(parts) == 1 else And(parts)


def or_(*conditions: Filter) -> Filter:
    """At least one condition holds."""
    parts = _flatten(Or, conditions)
    if not parts:
        raise InvalidQueryError("or_() needs at least one condition", reason="INVALID_QUERY")
    return parts[0] if len(parts) == 1 else Or(parts)


def not_(condition: Filter) -> Filter:
    """The condition does not hold (also where the field is absent)."""
    if not isinstance(condition, Filter):
        raise TypeMismatchError(f"not_ takes a condition such as M.channel == 1, not "
                                f"{condition!r}", reason="TYPE_MISMATCH")
    return condition.part if isinstance(condition, Not) else Not(condition)


# -- text form ------------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/]*\Z")
_KEYWORDS = {"and", "or", "not", "in", "prefix", "startswith", "true", "false", "null",
             "none", "datetime", "date", "inf"}


def _text_name(name: str) -> str:
    if _WORD.match(name) and name.lower() not in _KEYWORDS:
        return name
    if "`" in name:
        raise InvalidQueryError(f"field {name!r} has a backquote: it has no text form; "
                                "send the query built with M instead", reason="INVALID_QUERY")
    return f"`{name}`"


def _text_literal(value: Value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text if "inf" in text or any(c in text for c in ".e") else text + ".0"
    if isinstance(value, str):
        escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
                   .replace("\t", "\\t").replace("\x00", "\\0"))
        return f'"{escaped}"'
    assert isinstance(value, datetime)
    moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return f'datetime("{moment.isoformat()}")'


# -- fields -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Order:
    """One key of an ordering."""

    field: str
    descending: bool = False

    def to_proto(self) -> pb.OrderBy:
        return pb.OrderBy(field=self.field, descending=self.descending)

    def text(self) -> str:
        return ("-" if self.descending else "") + self.field


class Field:
    """A reference to a field by name: comparisons build conditions, ``asc()``/``desc()``
    order keys. ``==``/``!=`` build conditions too, so a Field is no Python value: it is not
    hashable (name fields by ``.name`` in sets and dicts)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name or "\x00" in name:
            raise InvalidQueryError(f"a field name is non-empty text without NUL, not {name!r}",
                                    reason="INVALID_QUERY")
        self.name = name

    def __repr__(self) -> str:
        return f"M.{self.name}" if _WORD.match(self.name) else f"M[{self.name!r}]"

    __hash__ = None  # type: ignore[assignment]

    def _compare(self, op: str, value: object) -> Condition:
        if isinstance(value, Field):
            raise InvalidQueryError(f"{self!r} {op} {value!r}: a field compares with a value, "
                                    "not with another field", reason="INVALID_QUERY")
        checked = _checked(self.name, value)
        if checked is None and op not in ("==", "!="):
            raise InvalidQueryError(f"{self!r} {op} None: null compares only with == and != "
                                    "(absent), not with < or >", reason="INVALID_QUERY")
        return Condition(self.name, op, (checked,))

    def __eq__(self, value: object) -> Condition:  # type: ignore[override]
        return self._compare("==", value)

    def __ne__(self, value: object) -> Condition:  # type: ignore[override]
        return self._compare("!=", value)

    def __lt__(self, value: object) -> Condition:
        return self._compare("<", value)

    def __le__(self, value: object) -> Condition:
        return self._compare("<=", value)

    def __gt__(self, value: object) -> Condition:
        return self._compare(">", value)

    def __ge__(self, value: object) -> Condition:
        return self._compare(">=", value)

    def in_(self, values: Iterable[object]) -> Condition:
        """The field equals one of ``values`` (at least one)."""
        if isinstance(values, str | bytes):
            raise TypeMismatchError(f"{self!r}.in_ takes a list of values, not one string",
                                    reason="TYPE_MISMATCH")
        checked = tuple(_checked(self.name, v) for v in values)
        if not checked:
            raise InvalidQueryError(f"{self!r}.in_([]) matches nothing: give at least one "
                                    "value", reason="INVALID_QUERY")
        return Condition(self.name, "in", checked)

    def not_in(self, values: Iterable[object]) -> Filter:
        return not_(self.in_(values))

    def startswith(self, prefix: str) -> Condition:
        """A string field that starts with ``prefix``."""
        if not isinstance(prefix, str):
            raise TypeMismatchError(f"{self!r}.startswith takes a string, not "
                                    f"{type(prefix).__name__}", reason="TYPE_MISMATCH")
        return Condition(self.name, "prefix", (prefix,))

    prefix = startswith

    def is_(self, value: None) -> Condition:
        """``is_(None)``: the record has no value for the field (SQLAlchemy's IS NULL)."""
        return self._compare("==", value)

    def is_not(self, value: None) -> Condition:
        return self._compare("!=", value)

    isnot = is_not

    def between(self, low: object, high: object) -> Filter:
        """``low <= field <= high``."""
        return and_(self >= low, self <= high)

    def asc(self) -> Order:
        return Order(self.name)

    def desc(self) -> Order:
        return Order(self.name, descending=True)


class FieldNamespace:
    """``M.channel`` or ``M["odd name"]``: a :class:`Field`. Passed to :func:`select` it
    means whole records."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Field:
        if name.startswith("__"):  # copy, pickle and friends probe dunders
            raise AttributeError(name)
        return Field(name)

    def __getitem__(self, name: str) -> Field:
        return Field(name)

    def __repr__(self) -> str:
        return "M"


M = FieldNamespace()


# -- select -----------------------------------------------------------------------------------

OrderKey = Field | Order | str


def _order(key: OrderKey) -> Order:
    if isinstance(key, Order):
        return key
    if isinstance(key, Field):
        return key.asc()
    if isinstance(key, str) and key:
        return Order(key[1:], True) if key.startswith("-") and len(key) > 1 else Order(key)
    raise TypeMismatchError(f"order_by takes M.field, M.field.desc() or a name "
                            f"('-name': descending), not {key!r}", reason="TYPE_MISMATCH")


class Select:
    """A query: which fields, which records, in what order, how many.

    ``fields`` None means whole records; ``criteria`` the conditions built with ``M``;
    ``text`` a filter in the text form (``'channel == 1'``): a query holds one or the other.
    """

    __slots__ = ("_limit", "criteria", "fields", "order", "text")

    def __init__(self, fields: tuple[str, ...] | None = None, criteria: Filter | None = None,
                 text: str | None = None, order: tuple[Order, ...] = (),
                 limit: int | None = None) -> None:
        self.fields = fields
        self.criteria = criteria
        self.text = text
        self.order = order
        self._limit = limit

    def _with(self, **changes: Any) -> Select:
        copy = Select(self.fields, self.criteria, self.text, self.order, self._limit)
        for name, value in changes.items():
            setattr(copy, "_limit" if name == "limit" else name, value)
        return copy

    def filter(self, *criteria: Filter | str, **equal: object) -> Select:
        """Only records for which every criterion holds (and-ed with earlier filters).
        A string is the text form; keywords are equalities (``filter(channel=1)``)."""
        texts = [c for c in criteria if isinstance(c, str)]
        built = [c for c in criteria if not isinstance(c, str)]
        built += [Field(k) == v for k, v in equal.items()]
        all_texts = [t for t in [self.text, *texts] if t and t.strip()]
        text = (all_texts[0] if len(all_texts) == 1
                else " and ".join(f"({t})" for t in all_texts) or None)
        combined = self.criteria
        if built:
            combined = and_(*([combined] if combined is not None else []), *built)
        if text and combined is not None:
            raise InvalidQueryError(
                "a query holds either a text filter or conditions built with M, not both: "
                "write it all as text or all with M", reason="INVALID_QUERY")
        return self._with(criteria=combined, text=text)

    where = filter  # SQLAlchemy's other name for it

    def filter_by(self, **equal: object) -> Select:
        """Equalities by keyword, as SQLAlchemy's ``filter_by(channel=1)``."""
        return self.filter(**equal)

    def order_by(self, *keys: OrderKey) -> Select:
        """Order by these keys (after any given before); ties are broken by machine and
        path, so the order is always the same."""
        return self._with(order=self.order + tuple(_order(k) for k in keys))

    def limit(self, n: int | None) -> Select:
        """At most ``n`` records (None: all)."""
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise InvalidQueryError(f"limit must be a non-negative integer, not {n!r}",
                                    reason="INVALID_QUERY")
        return self._with(limit=n)

    @property
    def limit_value(self) -> int | None:
        return self._limit

    # -- on the wire ---------------------------------------------------------------------------

    def output(self) -> str:
        return "records" if self.fields is None else "fields"

    def filter_fields(self, message: Any) -> None:
        """Set a request's ``filter`` or ``text`` from this query."""
        if self.criteria is not None:
            message.filter.CopyFrom(self.criteria.to_proto())
        elif self.text:
            message.text = self.text

    def to_request(self, repository: str, *, output: str | None = None,
                   limit: int | None = None, page_token: str = "") -> pb.QueryRequest:
        """The ``QueryRequest``; ``output`` "paths", "records" or "fields" (default: what
        the select asked for), ``limit`` overrides the query's (a page's size)."""
        request = pb.QueryRequest(
            repository=repository, order_by=[o.to_proto() for o in self.order],
            limit=(limit if limit is not None else self._limit) or 0, page_token=page_token,
            output=output or self.output(), fields=list(self.fields or ()))
        self.filter_fields(request)
        return request

    def count_request(self, repository: str) -> pb.CountRequest:
        request = pb.CountRequest(repository=repository)
        self.filter_fields(request)
        return request

    def condition_text(self) -> str:
        """The filter in the text form ("" for every record)."""
        return self.criteria.text() if self.criteria is not None else self.text or ""

    def __repr__(self) -> str:
        parts = [f"select({', '.join(self.fields) if self.fields is not None else 'M'})"]
        if self.criteria is not None or self.text:
            parts.append(f".filter({self.condition_text()!r})")
        if self.order:
            parts.append(f".order_by({', '.join(repr(o.text()) for o in self.order)})")
        if self._limit is not None:
            parts.append(f".limit({self._limit})")
        return "".join(parts)


def select(*columns: Field | FieldNamespace | str | type) -> Select:
    """A query over the cache's records: ``select(M)`` (or ``select()``, or a template
    class such as qass's ``BufferMetadata``) for whole records, ``select(M.a, M.b)`` or
    ``select("a", "b")`` for those fields (the path comes with every result)."""
    names: list[str] = []
    whole = not columns
    for column in columns:
        if isinstance(column, FieldNamespace) or (isinstance(column, type)
                                                  and hasattr(column, "__hoard_fields__")):
            whole = True
        elif isinstance(column, Field):
            names.append(column.name)
        elif isinstance(column, str):
            names.append(Field(column).name)
        else:
            raise TypeMismatchError(f"select takes M, M.field or field names, not {column!r}",
                                    reason="TYPE_MISMATCH")
    return Select(fields=None if whole else tuple(dict.fromkeys(names)))


def example_filter(example: Mapping[str, object]) -> Filter | None:
    """qass's query by example: every set (non-None) field equals its value; None when the
    example sets nothing (every record)."""
    conditions = [Field(k) == v for k, v in example.items() if v is not None]
    return and_(*conditions) if conditions else None
