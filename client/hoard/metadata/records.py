"""A file's metadata record: typed field values, shared by the SDK and the daemon.

A value is one of ``None`` (null: absent or unknown), ``bool``, ``int``, ``float``, ``str``
or a timezone-aware ``datetime`` (naive ones are taken as UTC). Every value has a type
tag; the tags' order (null < bool < int < float < str < datetime) is the order of a field
whose records hold values of several types.

A record also carries the file's signature (size, mtime_ns, ctime_ns, inode): the change
detector re-extracts a file when its signature differs from the stored one, whatever its
path says. A file that could not be parsed still has a record: its ``error`` says why and
it is retried only when its signature changes.
"""

from __future__ import annotations

import enum
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

Value = None | bool | int | float | str | datetime

INT64_MIN = -(1 << 63)
MAX_FIELD_NAME = 100
UINT64_MAX = (1 << 64) - 1


class FieldType(enum.IntEnum):
    """A value's type; the numbers are the index's type tags, in sort order."""

    NULL = 0x10
    BOOL = 0x20
    INT = 0x30
    FLOAT = 0x40
    STR = 0x50
    DATETIME = 0x60

    @property
    def label(self) -> str:
        return self.name.lower()


def type_of(value: Value) -> FieldType:
    """The type of a field value; TypeError for anything that is not one."""
    if value is None:
        return FieldType.NULL
    if isinstance(value, bool):  # before int: bool is an int in Python
        return FieldType.BOOL
    if isinstance(value, int):
        return FieldType.INT
    if isinstance(value, float):
        return FieldType.FLOAT
    if isinstance(value, str):
        return FieldType.STR
    if isinstance(value, datetime):
        return FieldType.DATETIME
    raise TypeError(f"a metadata value must be None, bool, int, float, str or datetime, "
                    f"not {type(value).__name__}")


def check_value(name: str, value: Value) -> Value:
    """``value`` as stored: ints within the index's range (int64 or uint64), floats not NaN,
    datetimes in UTC. ValueError/TypeError naming the field otherwise."""
    kind = type_of(value)
    if kind is FieldType.INT:
        assert isinstance(value, int)
        if not INT64_MIN <= value <= UINT64_MAX:
            raise ValueError(f"field {name!r}: integer {value} is outside int64/uint64")
    elif kind is FieldType.FLOAT:
        assert isinstance(value, float)
        if math.isnan(value):
            raise ValueError(f"field {name!r}: NaN cannot be indexed (it has no order)")
        if value == 0.0:
            return 0.0  # -0.0 and 0.0 are one value
    elif kind is FieldType.DATETIME:
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    elif kind is FieldType.STR:
        assert isinstance(value, str)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"field {name!r}: the string is not valid Unicode") from exc
    return value


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def datetime_to_micros(value: datetime) -> int:
    """Microseconds since the epoch (exact: no float on the way)."""
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def micros_to_datetime(micros: int) -> datetime:
    from datetime import timedelta

    return EPOCH + timedelta(microseconds=micros)


@dataclass(frozen=True)
class FileSignature:
    """What the change test compares: a file whose signature differs is re-extracted.
    Size and mtime alone miss a rewrite within one timestamp tick or a file replaced by
    another (a rename over it); ctime and the inode catch those."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileSignature:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@dataclass
class FileRecord:
    """The metadata of one file on one machine.

    ``machine_id`` is ``""`` for files the daemon itself reads (qass's ``None``).
    ``fields`` holds every extracted value, including the stat fields.
    """

    path: str
    signature: FileSignature
    fields: dict[str, Value] = field(default_factory=dict)
    machine_id: str = ""
    error: str | None = None

    def checked(self) -> FileRecord:
        """This record with every name and value checked (``check_field_name``,
        ``check_value``): for records from elsewhere (the SDK's pushes); extractors' own
        records are right by construction and the index's encoder rejects what it cannot
        order."""
        fields = {check_field_name(k): check_value(k, v) for k, v in self.fields.items()}
        return FileRecord(self.path, self.signature, fields, self.machine_id, self.error)

    def builtin_fields(self) -> dict[str, Value]:
        """The fields every record has, from where the file is (qass's ``directory_path``
        and ``filename`` too); ``error`` only when the file failed to parse."""
        directory, _, name = self.path.rpartition("/")
        out: dict[str, Value] = {
            "path": self.path,
            "directory_path": directory or "/",
            "filename": name,
            "machine_id": self.machine_id,
        }
        if self.error is not None:
            out["error"] = self.error
        return out

    def all_fields(self) -> dict[str, Value]:
        """What the index holds and queries see: the extracted fields and the built-in ones
        (a built-in wins over an extracted field of the same name)."""
        return {**self.fields, **self.builtin_fields()}


def check_field_name(name: str) -> str:
    """Field names are non-empty text without NUL (the index ends a name with one), at most
    ``MAX_FIELD_NAME`` bytes of UTF-8 (an index key holds the name)."""
    if not name or "\x00" in name or len(name.encode("utf-8")) > MAX_FIELD_NAME:
        raise ValueError(
            f"bad field name {name!r}: it must be 1-{MAX_FIELD_NAME} bytes without NUL")
    return name


BUILTIN_FIELDS = ("path", "directory_path", "filename", "machine_id", "error")
