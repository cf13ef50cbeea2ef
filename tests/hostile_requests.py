"""Hostile requests built from the hoard.v1 descriptors, and a raw caller for any RPC.

``METHODS`` lists every RPC of every hoard.v1 service from the generated descriptors, so a
new RPC is fuzzed (and path-checked) without anyone listing it. ``request_messages`` draws
request messages of any type field by field: strings empty, huge, unicode, NUL-laden or
full of ``..``; integers at their type's edges (int64 and uint64 min and max); NaN and
infinities; random bytes up to 64 KiB; nested messages; repeated fields from empty to many;
one member of each oneof (or none); unknown enum numbers. ``Hints`` lets a test mix in names that
exist (a repository, a file, a key), so that a request gets past the first check.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from hoard.v1 import (
    access_pb2,
    datasets_pb2,
    datasets_pb2_grpc,
    metadata_pb2,
    metadata_pb2_grpc,
    objects_pb2,
    objects_pb2_grpc,
    repositories_pb2,
    repositories_pb2_grpc,
)

FILE_DESCRIPTORS = (objects_pb2, repositories_pb2, datasets_pb2, metadata_pb2)

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)


@dataclass(frozen=True)
class Method:
    """One RPC: its path, descriptor and the role its option declares."""

    descriptor: MethodDescriptor

    @property
    def path(self) -> str:
        return f"/{self.descriptor.containing_service.full_name}/{self.descriptor.name}"

    @property
    def name(self) -> str:
        return f"{self.descriptor.containing_service.name}.{self.descriptor.name}"

    @property
    def request(self) -> Descriptor:
        return self.descriptor.input_type

    @property
    def client_streaming(self) -> bool:
        return self.descriptor.client_streaming

    @property
    def server_streaming(self) -> bool:
        return self.descriptor.server_streaming

    @property
    def role(self) -> int:
        return self.descriptor.GetOptions().Extensions[access_pb2.role]

    @property
    def read_only(self) -> bool:
        """Declared ROLE_READ: a call that must change nothing stored."""
        return self.role == access_pb2.ROLE_READ


def all_methods() -> list[Method]:
    """Every RPC of every hoard.v1 service, in declaration order."""
    return [
        Method(method)
        for module in FILE_DESCRIPTORS
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ]


METHODS = all_methods()


_GENERATED = (
    objects_pb2_grpc.ObjectsServicer,
    repositories_pb2_grpc.RepositoriesServicer,
    datasets_pb2_grpc.DatasetsServicer,
    datasets_pb2_grpc.DatasetFilesServicer,
    metadata_pb2_grpc.MetadataCacheServicer,
)


def served(method: Method) -> bool:
    """Whether one of the daemon's servicer classes implements the method (the generated
    base class answers UNIMPLEMENTED, with a traceback in the daemon's log)."""
    import hoard_server.daemon.services  # noqa: F401  (imports every servicer class)

    service = method.descriptor.containing_service.name
    base = next(b for b in _GENERATED if b.__name__ == f"{service}Servicer")
    return any(method.descriptor.name in vars(cls) for cls in base.__subclasses__())


def message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


# -- values ------------------------------------------------------------------------------

NASTY_STRINGS = [
    "",
    " ",
    ".",
    "..",
    "../",
    "../../../../etc/passwd",
    "/etc/passwd",
    "/",
    "a/../../b",
    "./a",
    "a//b",
    "a/",
    "..\\..\\x",
    "C:\\x",
    "%2e%2e/%2e%2e/x",
    "..%2f..%2fx",
    "\u2024\u2024/x",  # one-dot leaders that look like '..'
    "\uff0e\uff0e/x",  # fullwidth full stops
    "a\u2215..\u2215b",  # division slash
    "a\x00b",
    "\x00",
    "x" * 256,
    "x/" * 2100 + "x",
    "é" * 3000,
    "\u202etxt.exe",
    "😀" * 10,
    "\ufeff",
    "-",
    "*",
    "[",
    "(",
    "\\",
    "%s%s%n",
    "${HOME}",
    "a" * 70_000,
]


@dataclass
class Hints:
    """Real names a request may use, by field name (``repository``, ``path``, ``key``...)
    or by a message's field (``hoard.v1.ReadFileRequest.path``),
    and the repository names each kind of method may use: a method that is not read-only
    never names one in ``protected`` (the data a test checks afterwards)."""

    by_field: Mapping[str, Sequence[str]] = field(default_factory=dict)
    protected: frozenset[str] = frozenset()
    writable: Sequence[str] = ()
    # valid messages by type (full name), drawn as they are some of the time: a valid
    # array or selection is too unlikely to come up field by field
    examples: Mapping[str, Sequence[Message]] = field(default_factory=dict)

    def examples_of(self, descriptor: Descriptor, read_only: bool) -> list[Message]:
        found = self.examples.get(descriptor.full_name, ())
        if read_only:
            return list(found)
        return [
            m for m in found if not any(p.encode() in m.SerializeToString() for p in self.protected)
        ]

    def __repr__(self) -> str:  # hypothesis shows it with every failing example
        return f"Hints({sorted(self.by_field)})"


def _text() -> st.SearchStrategy[str]:
    # surrogates cannot be encoded; invalid UTF-8 on the wire comes from the raw payloads
    return st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


def _string(f: FieldDescriptor, hints: Hints, read_only: bool) -> st.SearchStrategy[str]:
    options = [st.sampled_from(NASTY_STRINGS), _text()]
    # hints for this message's field ("hoard.v1.ReadFileRequest.path"), else for any field
    # of the name; a repeated field's are its singular's: "keys" -> "key"
    name = f.name
    known = list(
        hints.by_field.get(f.full_name)
        or hints.by_field.get(name)
        or hints.by_field.get(name.removesuffix("s"), ())
    )
    if name == "repository":
        known = [r for r in known if read_only or r not in hints.protected]
        known += list(hints.writable)
    if known:
        # real names most of the time, so that many requests reach past the first check
        return mostly(st.sampled_from(known), st.one_of(*options))
    return st.one_of(*options)


def mostly(usual: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` three times in four, ``other`` otherwise."""
    return st.integers(0, 3).flatmap(lambda n: usual if n else other)


def _integers(lo: int, hi: int) -> st.SearchStrategy[int]:
    edges = sorted({lo, hi, 0, 1, -1, lo + 1, hi - 1, 2**31 - 1, 2**32, 2**53, -(2**31)})
    return st.one_of(
        st.sampled_from([e for e in edges if lo <= e <= hi]),
        st.integers(max(lo, -2), min(hi, 10)),  # counts, shapes, dimensions, indices
        st.integers(max(lo, -1000), min(hi, 1000)),
        st.integers(lo, hi),
    )


_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_INT32: _integers(*INT32),
    FieldDescriptor.TYPE_SINT32: _integers(*INT32),
    FieldDescriptor.TYPE_SFIXED32: _integers(*INT32),
    FieldDescriptor.TYPE_INT64: _integers(*INT64),
    FieldDescriptor.TYPE_SINT64: _integers(*INT64),
    FieldDescriptor.TYPE_SFIXED64: _integers(*INT64),
    FieldDescriptor.TYPE_UINT32: _integers(*UINT32),
    FieldDescriptor.TYPE_FIXED32: _integers(*UINT32),
    FieldDescriptor.TYPE_UINT64: _integers(*UINT64),
    FieldDescriptor.TYPE_FIXED64: _integers(*UINT64),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_DOUBLE: st.one_of(
        st.sampled_from([float("nan"), float("inf"), -float("inf"), -0.0, 1e308, 5e-324]),
        st.floats(allow_nan=True, allow_infinity=True),
    ),
    FieldDescriptor.TYPE_BYTES: st.one_of(
        st.binary(max_size=64),
        st.binary(min_size=1, max_size=8).map(lambda b: b * 8192),  # 8-64 KiB
    ),
}
_SCALARS[FieldDescriptor.TYPE_FLOAT] = st.one_of(
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 3.4e38]),
    st.floats(width=32, allow_nan=True, allow_infinity=True),
)

MAX_DEPTH = 4  # Filter holds Filters: deep enough to nest, bounded


def request_messages(
    descriptor: Descriptor,
    hints: Hints | None = None,
    read_only: bool = False,
    depth: int = 0,
) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor``'s type: one of the hints' examples of the type, or one
    whose fields are drawn one by one (each set or left unset, one member per oneof); see
    the module's docstring."""
    hints = hints or Hints()
    drawn = _fields(descriptor, hints, read_only, depth)
    examples = hints.examples_of(descriptor, read_only)
    return mostly(st.sampled_from(examples), drawn) if examples else drawn


@st.composite
def _fields(
    draw: st.DrawFn, descriptor: Descriptor, hints: Hints, read_only: bool, depth: int
) -> Message:
    message = message_class(descriptor)()
    for oneof in descriptor.oneofs:
        chosen = draw(st.none() | st.sampled_from(list(oneof.fields)))
        if chosen is not None:
            _set(draw, message, chosen, hints, read_only, depth)
    for f in descriptor.fields:
        if f.containing_oneof is not None:
            continue
        # most fields are set: a request with a field missing stops at the first check
        if draw(st.integers(0, 3)) > 0:
            _set(draw, message, f, hints, read_only, depth)
    return message


def _value(draw: st.DrawFn, f: FieldDescriptor, hints: Hints, read_only: bool, depth: int) -> Any:
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        if depth >= MAX_DEPTH:
            return message_class(f.message_type)()
        return draw(request_messages(f.message_type, hints, read_only, depth + 1))
    if f.type == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in f.enum_type.values]
        return draw(st.sampled_from(known) | _integers(*INT32))  # unknown numbers too
    if f.type == FieldDescriptor.TYPE_STRING:
        return draw(_string(f, hints, read_only))
    return draw(_SCALARS[f.type])


def _set(
    draw: st.DrawFn,
    message: Message,
    f: FieldDescriptor,
    hints: Hints,
    read_only: bool,
    depth: int,
) -> None:
    target = getattr(message, f.name)
    if f.message_type is not None and f.message_type.GetOptions().map_entry:
        key_field, value_field = (
            f.message_type.fields_by_name["key"],
            f.message_type.fields_by_name["value"],
        )
        for _ in range(draw(st.integers(0, 3))):
            key = _value(draw, key_field, hints, read_only, depth)
            value = _value(draw, value_field, hints, read_only, depth)
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                target[key].CopyFrom(value)
            else:
                target[key] = value
        return
    if f.is_repeated:
        # a few distinct entries, or one entry many times (a large list costs little to draw)
        if draw(st.integers(0, 9)) == 0:
            entry = _value(draw, f, hints, read_only, depth)
            size = entry.ByteSize() if isinstance(entry, Message) else len(str(entry))
            small = size <= 256
            entries = [entry] * draw(st.integers(100, 3000) if small else st.integers(2, 20))
        else:
            entries = [
                _value(draw, f, hints, read_only, depth) for _ in range(draw(st.integers(0, 4)))
            ]
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            for entry in entries:
                target.add().CopyFrom(entry)
        else:
            target.extend(entries)
        return
    value = _value(draw, f, hints, read_only, depth)
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        target.SetInParent()  # present even when empty (a oneof member, a NodeRef)
        target.MergeFrom(value)
    else:
        setattr(message, f.name, value)


def garbage() -> st.SearchStrategy[bytes]:
    """Bytes that are (almost always) not a valid message: truncated varints, bad wire
    types, lengths past the end, invalid UTF-8 in string fields."""
    return st.one_of(
        st.binary(min_size=1, max_size=200),
        st.sampled_from(
            [
                b"\xff",
                b"\x08",
                b"\x0a\xff\xff\xff\xff\x0f",
                b"\x0a\x03a\xffb",
                b"\x0a\x04\x0a\x02\xc3(",
                b"\x12\x05abc",
                b"\x0f",
                b"\x80" * 11,
                b"\x0b\x0c",
            ]
        ),
    )


# -- calling -----------------------------------------------------------------------------

OK = grpc.StatusCode.OK


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    details: str
    replies: int = 0
    reason: str = ""  # the ErrorInfo's, when the caller reads it


def call_raw(
    channel: grpc.Channel,
    method: Method,
    payloads: Sequence[bytes],
    timeout: float = 30.0,
    endless_after: float | None = None,
) -> Outcome:
    """Send ``payloads`` (serialized messages or any bytes) and read the whole answer.

    ``endless_after``: for a stream that lasts until the client cancels (Follow), cancel
    it after this many seconds; it then ends CANCELLED, which is its normal end."""
    replies = 0
    try:
        if method.server_streaming:
            if method.client_streaming:
                call = channel.stream_stream(method.path)(iter(payloads), timeout=timeout)
            else:
                call = channel.unary_stream(method.path)(payloads[0], timeout=timeout)
            timer = None
            if endless_after is not None:
                timer = threading.Timer(endless_after, call.cancel)
                timer.start()
            try:
                for _ in call:
                    replies += 1
            finally:
                if timer is not None:
                    timer.cancel()
        elif method.client_streaming:
            channel.stream_unary(method.path)(iter(payloads), timeout=timeout)
            replies = 1
        else:
            channel.unary_unary(method.path)(payloads[0], timeout=timeout)
            replies = 1
    except grpc.RpcError as exc:
        return Outcome(exc.code(), exc.details() or "", replies)
    return Outcome(OK, "", replies)


def serialized(messages: Iterable[Message]) -> list[bytes]:
    return [m.SerializeToString() for m in messages]
