"""Python values <-> the metadata cache's messages: field values, signatures, records.

Pure functions, no I/O (an asyncio SDK could share them). What crosses the wire:

- ``None`` <-> ``null``; ``bool``, ``int``, ``float``, ``str`` as themselves;
- ``datetime`` <-> microseconds since the epoch in UTC: a naive datetime is taken as UTC
  (as the records do), an aware one converted; what comes back is aware, in UTC.

An ``int`` travels as int64, or as uint64 above int64's range (a header's unsigned ids);
beyond uint64 :func:`to_field_value` refuses it (:class:`WireValueError`), and the
client-side sync drops such a field (from a custom extractor) with a note in the record's
``error`` (``to_record(..., lenient=True)``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime

from hoard.metadata.records import (
    FileRecord,
    FileSignature,
    Value,
    check_value,
    datetime_to_micros,
    micros_to_datetime,
)
from hoard.v1 import metadata_pb2 as pb

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "UINT64_MAX",
    "WireValueError",
    "from_field_value",
    "from_record",
    "from_signature",
    "to_field_value",
    "to_record",
    "to_signature",
]

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1


class WireValueError(ValueError):
    """A Python value the wire cannot carry (the message names the field when known)."""


def to_field_value(value: object, name: str = "") -> pb.FieldValue:
    """One metadata value as a ``FieldValue``; TypeError for a type that is not one,
    :class:`WireValueError` for an int beyond int64 or a NaN."""
    where = f"field {name!r}: " if name else ""
    if value is None:
        return pb.FieldValue(null=True)
    if isinstance(value, bool):  # before int: a bool is an int in Python
        return pb.FieldValue(bool_value=value)
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return pb.FieldValue(int_value=value)
        if INT64_MAX < value <= UINT64_MAX:
            return pb.FieldValue(uint_value=value)
        raise WireValueError(f"{where}integer {value} is outside int64 and uint64")
    if isinstance(value, float):
        if math.isnan(value):
            raise WireValueError(f"{where}NaN has no order and cannot be indexed or compared")
        return pb.FieldValue(float_value=value)
    if isinstance(value, str):
        return pb.FieldValue(string_value=value)
    if isinstance(value, datetime):
        checked = check_value(name or "value", value)
        assert isinstance(checked, datetime)
        return pb.FieldValue(datetime_micros=datetime_to_micros(checked))
    raise TypeError(f"{where}a metadata value is None, bool, int, float, str or datetime, "
                    f"not {type(value).__name__} ({value!r})")


def from_field_value(message: pb.FieldValue) -> Value:
    """The Python value of a ``FieldValue`` (an unset one is null)."""
    kind = message.WhichOneof("kind")
    if kind is None or kind == "null":
        return None
    if kind == "datetime_micros":
        return micros_to_datetime(message.datetime_micros)
    value: Value = getattr(message, kind)
    return value


def to_signature(signature: FileSignature) -> pb.FileSignature:
    return pb.FileSignature(size=signature.size, mtime_ns=signature.mtime_ns,
                            ctime_ns=signature.ctime_ns, inode=signature.inode)


def from_signature(message: pb.FileSignature) -> FileSignature:
    return FileSignature(message.size, message.mtime_ns, message.ctime_ns, message.inode)


def _fill(target: pb.FieldValue, value: object, name: str) -> None:
    """Set ``target`` to ``value`` in place (the common types first: no message built and
    copied per field)."""
    kind = type(value)
    if kind is int and INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
        target.int_value = value  # type: ignore[assignment]
    elif kind is str:
        target.string_value = value  # type: ignore[assignment]
    elif kind is float and value == value:  # not NaN
        target.float_value = value  # type: ignore[assignment]
    else:
        target.CopyFrom(to_field_value(value, name))


def to_record(record: FileRecord, *, lenient: bool = False) -> pb.Record:
    """A record as pushed. A field the wire cannot carry raises (TypeError,
    :class:`WireValueError`); with ``lenient`` it is left out and named in the record's
    ``error`` instead (so the file counts as failed and is retried when it changes)."""
    message = pb.Record(machine_id=record.machine_id, path=record.path,
                        signature=to_signature(record.signature))
    fields = message.fields
    problems: list[str] = []
    for name, value in record.fields.items():
        try:
            _fill(fields[name], value, name)
        except (WireValueError, TypeError) as exc:
            if not lenient:
                raise
            del fields[name]
            problems.append(str(exc))
    error = "; ".join(([record.error] if record.error is not None else []) + problems)
    if record.error is not None or problems:
        message.error = error
        message.has_error = True
    return message


def from_record(message: pb.Record) -> FileRecord:
    """A record as the daemon sent it (only the fields the query asked for)."""
    return FileRecord(
        path=message.path,
        signature=from_signature(message.signature),
        fields=from_fields(message.fields),
        machine_id=message.machine_id,
        error=message.error if message.has_error else None,
    )


def from_fields(fields: Mapping[str, pb.FieldValue]) -> dict[str, Value]:
    return {name: from_field_value(value) for name, value in fields.items()}
