"""The filter language of metadata queries: a small AST, its meaning, and its text form.

    channel == 1 and compression_frq in (4, 8) and not (process < 100)
    partnumber prefix "PN-" or `raw/data.shape` == "10x3"

Comparisons (``== != < <= > >=``), ``in (...)``, ``prefix``, ``and``, ``or``, ``not``.

What a comparison means, for each record:

- ``field == null`` holds when the record has no value for the field (absent or null);
  ``field != null`` when it has one.
- Otherwise a comparison holds only when the record's value is of a comparable type:
  numbers with numbers (int and float together, not bool), strings with strings, bools
  with bools, datetimes with datetimes. ``process != 3`` does not hold for a record
  without a process; ``not (process == 3)`` does.
- ``prefix`` holds for strings that start with the given text.

``evaluate`` is the reference meaning; the index answers the same through ``compile``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hoard.metadata.records import Value
from hoard_server.errors import InvalidArgument

OPS = ("==", "!=", "<", "<=", ">", ">=")


@dataclass(frozen=True)
class Compare:
    field: str
    op: str
    value: Value

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise InvalidArgument(f"unknown comparison {self.op!r}", reason="INVALID_QUERY")


@dataclass(frozen=True)
class In:
    field: str
    values: tuple[Value, ...]


@dataclass(frozen=True)
class Prefix:
    field: str
    prefix: str


@dataclass(frozen=True)
class And:
    parts: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    part: Expr


Expr = Compare | In | Prefix | And | Or | Not
Atom = Compare | In | Prefix


def fields_of(expr: Expr | None) -> set[str]:
    if expr is None:
        return set()
    if isinstance(expr, And | Or):
        return set().union(*(fields_of(p) for p in expr.parts))
    if isinstance(expr, Not):
        return fields_of(expr.part)
    return {expr.field}


# -- meaning -----------------------------------------------------------------------------
def _kind(value: Any) -> int:
    """Comparability class: 0 null, 1 bool, 2 number, 3 str, 4 datetime."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return 1
    if isinstance(value, int | float):
        return 2
    if isinstance(value, str):
        return 3
    if isinstance(value, datetime):
        return 4
    raise InvalidArgument(f"{value!r} is not a metadata value", reason="INVALID_QUERY")


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def compile_filter(expr: Expr | None) -> Callable[[dict[str, Value]], bool]:
    """A function of a record's fields that tells whether ``expr`` holds for it."""
    if expr is None:
        return lambda fields: True
    if isinstance(expr, And):
        parts = [compile_filter(p) for p in expr.parts]
        return lambda fields: all(p(fields) for p in parts)
    if isinstance(expr, Or):
        parts = [compile_filter(p) for p in expr.parts]
        return lambda fields: any(p(fields) for p in parts)
    if isinstance(expr, Not):
        part = compile_filter(expr.part)
        return lambda fields: not part(fields)
    name = expr.field
    if isinstance(expr, Prefix):
        prefix = expr.prefix
        return lambda fields: isinstance(v := fields.get(name), str) and v.startswith(prefix)
    if isinstance(expr, In):
        tests = [compile_filter(Compare(name, "==", v)) for v in expr.values]
        return lambda fields: any(t(fields) for t in tests)
    literal, op = expr.value, expr.op
    if literal is None:
        if op == "==":
            return lambda fields: fields.get(name) is None
        if op == "!=":
            return lambda fields: fields.get(name) is not None
        return lambda fields: False
    kind = _kind(literal)
    compare = _COMPARE[op]

    def holds(fields: dict[str, Value]) -> bool:
        v = fields.get(name)
        return v is not None and _kind(v) == kind and compare(v, literal)

    if kind == 2:  # the common case, without _kind's chain
        def holds_number(fields: dict[str, Value]) -> bool:
            v = fields.get(name)
            t = type(v)
            return (t is int or t is float) and compare(v, literal)

        return holds_number
    return holds


def evaluate(expr: Expr | None, fields: dict[str, Value]) -> bool:
    return compile_filter(expr)(fields)


# -- text form ---------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<op>==|!=|<=|>=|<|>|=)
      | (?P<punct>[(),])
      | (?P<number>[+-]?(?:\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?
                         |\d+[eE][+-]?\d+|\d+|inf\b))
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<quoted>`[^`]+`)
      | (?P<word>[A-Za-z_][A-Za-z0-9_.:/]*)
    )""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "0": "\x00", "\\": "\\", '"': '"', "'": "'"}


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                self.fail(pos, f"unexpected {text[pos]!r}")
            assert m is not None
            kind = m.lastgroup
            assert kind is not None
            self.tokens.append((kind, m.group(kind), m.start(kind)))
            pos = m.end()
        self.i = 0

    def fail(self, pos: int, what: str) -> None:
        raise InvalidArgument(f"malformed query at position {pos}: {what}: {self.text!r}",
                              reason="INVALID_QUERY")

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def next(self, expected: str) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            self.fail(len(self.text), f"expected {expected}, found the end")
        assert tok is not None
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok is not None and tok[0] == "word" and tok[1].lower() == word:
            self.i += 1
            return True
        return False

    def parse(self) -> Expr:
        expr = self.or_()
        tok = self.peek()
        if tok is not None:
            self.fail(tok[2], f"unexpected {tok[1]!r}")
        return expr

    def or_(self) -> Expr:
        parts = [self.and_()]
        while self.keyword("or"):
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def and_(self) -> Expr:
        parts = [self.not_()]
        while self.keyword("and"):
            parts.append(self.not_())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def not_(self) -> Expr:
        if self.keyword("not"):
            return Not(self.not_())
        return self.atom()

    def atom(self) -> Expr:
        kind, text, pos = self.next("a condition")
        if kind == "punct" and text == "(":
            expr = self.or_()
            close = self.next("')'")
            if close[1] != ")":
                self.fail(close[2], f"expected ')', found {close[1]!r}")
            return expr
        if kind == "quoted":
            name = text[1:-1]
        elif kind == "word" and text.lower() not in ("and", "or", "not", "in", "prefix"):
            name = text
        else:
            self.fail(pos, f"expected a field name, found {text!r}")
        if self.keyword("in"):
            opening = self.next("'('")
            if opening[1] != "(":
                self.fail(opening[2], "expected '(' after 'in'")
            values = [self.literal()]
            while True:
                sep = self.next("',' or ')'")
                if sep[1] == ")":
                    break
                if sep[1] != ",":
                    self.fail(sep[2], f"expected ',' or ')', found {sep[1]!r}")
                values.append(self.literal())
            return In(name, tuple(values))
        if self.keyword("prefix") or self.keyword("startswith"):
            value = self.literal()
            if not isinstance(value, str):
                self.fail(pos, f"prefix of {name!r} must be a string")
            assert isinstance(value, str)
            return Prefix(name, value)
        kind, op, pos = self.next("a comparison (== != < <= > >=, in, prefix)")
        if kind != "op":
            self.fail(pos, f"expected a comparison after {name!r}, found {op!r}")
        return Compare(name, "==" if op == "=" else op, self.literal())

    def literal(self) -> Value:
        kind, text, pos = self.next("a value")
        if kind == "number":
            if re.fullmatch(r"[+-]?\d+", text):
                return int(text)
            return float(text)
        if kind == "string":
            return _unescape(text[1:-1])
        if kind == "word":
            low = text.lower()
            if low in ("true", "false"):
                return low == "true"
            if low in ("null", "none"):
                return None
            if low in ("datetime", "date"):
                opening = self.next("'('")
                inner = self.literal()
                closing = self.next("')'")
                if opening[1] != "(" or closing[1] != ")" or not isinstance(inner, str):
                    self.fail(pos, 'write a datetime as datetime("2024-01-31T12:00:00")')
                assert isinstance(inner, str)
                return parse_datetime(inner, pos)
        self.fail(pos, f"expected a value (number, 'text', true, false, null), found {text!r}")
        raise AssertionError


def parse_datetime(text: str, pos: int = 0) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(f"malformed query at position {pos}: {text!r} is not an ISO "
                              f"8601 datetime", reason="INVALID_QUERY") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse(text: str) -> Expr | None:
    """The filter written as text (the CLI's form); None for an empty text (everything)."""
    if not text.strip():
        return None
    return _Parser(text).parse()
