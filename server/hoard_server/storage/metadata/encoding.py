"""Order-preserving byte encodings of metadata values, and the stored form of a record.

LMDB compares keys with memcmp and py-lmdb takes no custom comparator, so a value's bytes
must sort as the value does:

- a type tag byte first (``FieldType``), so nulls sort first and each type has its range;
- bool: one byte; int: big-endian after adding 2^63, in 9 bytes so that uint64 values
  (qass's project ids) above int64's range fit and sort after it;
- datetime: microseconds since the epoch, as an int;
- float: IEEE 754 big-endian with every bit flipped when negative and only the sign bit
  otherwise; -0.0 is 0.0 and NaN is refused;
- str: UTF-8 with 0x00 escaped (0x00 as 0x01 0x01, 0x01 as 0x01 0x02, which keeps their
  order) and a 0x00 terminator: the only 0x00 is the last byte, so no encoding is a prefix
  of another, and "a" < "a\\0" < "ab".

The encoding is prefix-free, so a composite key (several values one after another) sorts
as the tuple does, and inverting the bytes of one value reverses its order (descending
sort keys). An index key must stay under LMDB's 511 bytes: a long value is kept as its
first ``KEEP`` bytes and a hash (``index_value``); such keys still fall inside every range
that holds the value (a range scan then checks the record itself) but no longer sort among
values with the same first bytes.
"""

from __future__ import annotations

import hashlib
import io
import math
import pickle
import struct
from datetime import UTC, datetime
from typing import Any

from hoard.metadata.records import (
    FieldType,
    FileRecord,
    FileSignature,
    Value,
    datetime_to_micros,
    micros_to_datetime,
)

T_NULL = bytes([FieldType.NULL])
T_BOOL = bytes([FieldType.BOOL])
T_INT = bytes([FieldType.INT])
T_FLOAT = bytes([FieldType.FLOAT])
T_STR = bytes([FieldType.STR])
T_DATETIME = bytes([FieldType.DATETIME])

_Q = struct.Struct(">Q")
_D = struct.Struct(">d")
_SIGN = SIGN = 1 << 63
_ALL = UINT64_MAX = (1 << 64) - 1
KEEP = 384  # bytes of a long value kept in an index key, before its hash
HASH = 16  # a value takes at most 401 bytes of a key: name (<= 100), 0x00, value, doc id (8)


def encode_int(value: int) -> bytes:
    if -_SIGN <= value <= _ALL:
        return (value + _SIGN).to_bytes(9, "big")
    raise ValueError(f"integer {value} is outside int64/uint64")


def encode_float(value: float) -> bytes:
    if math.isnan(value):
        raise ValueError("NaN cannot be indexed (it has no order)")
    if value == 0.0:
        value = 0.0
    (bits,) = _Q.unpack(_D.pack(value))
    return _Q.pack(bits ^ _ALL if bits & _SIGN else bits | _SIGN)


def encode_str(value: str) -> bytes:
    raw = value.encode("utf-8")
    if b"\x01" in raw:
        raw = raw.replace(b"\x01", b"\x01\x02")
    if b"\x00" in raw:
        raw = raw.replace(b"\x00", b"\x01\x01")
    return raw + b"\x00"


def encode_datetime(value: datetime) -> bytes:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return _Q.pack(datetime_to_micros(value) + _SIGN)


def encode(value: Value) -> bytes:
    """The full order-preserving encoding of a value, tag first."""
    if value is None:
        return T_NULL
    kind = type(value)
    if kind is int:
        return T_INT + encode_int(value)  # type: ignore[arg-type]
    if kind is float:
        return T_FLOAT + encode_float(value)  # type: ignore[arg-type]
    if kind is str:
        return T_STR + encode_str(value)  # type: ignore[arg-type]
    if kind is bool:
        return T_BOOL + (b"\x01" if value else b"\x00")
    if isinstance(value, datetime):
        return T_DATETIME + encode_datetime(value)
    if isinstance(value, bool):
        return T_BOOL + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return T_INT + encode_int(int(value))
    if isinstance(value, float):
        return T_FLOAT + encode_float(float(value))
    if isinstance(value, str):
        return T_STR + encode_str(str(value))
    raise TypeError(f"cannot encode a {type(value).__name__} as a metadata value")


LONGEST = KEEP + HASH  # a form longer than this is a shortened one


def index_value(encoded: bytes) -> tuple[bytes, bool]:
    """(the form an index key holds, whether it was shortened): the encoding itself, or
    for a long one its first ``KEEP`` bytes, a 0x01 and a hash of the whole (one byte
    longer than ``LONGEST``, so a form's length tells whether it was shortened)."""
    if len(encoded) <= LONGEST:
        return encoded, False
    digest = hashlib.blake2b(encoded, digest_size=HASH).digest()
    return encoded[:KEEP] + b"\x01" + digest, True


def successor(prefix: bytes) -> bytes | None:
    """The smallest byte string above every string that starts with ``prefix`` (None when
    there is none: all 0xFF)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def invert(encoded: bytes) -> bytes:
    """The bytes that sort in the reverse order (for a descending sort key)."""
    return bytes(255 - b for b in encoded)


# -- the stored record -----------------------------------------------------------------
# Two values per record: its location (signature, error flag, machine_id, path), small, for
# the walks that need only paths or signatures; and its body: the fields as a pickle of
# plain values only (dict, str, int, float, bool, None; datetimes as microseconds), four
# times cheaper to write than JSON. It is read back by an unpickler that refuses every
# class (``_PlainUnpickler``), so a damaged or forged body cannot run code.
_HEAD = struct.Struct("<QqqQBH")  # size, mtime_ns, ctime_ns, inode, flags, len(machine_id)
FLAG_ERROR = 1
LOCATION_HEAD = _HEAD.size  # machine_id's length is the little-endian u16 just before
_PICKLE = 5


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"a record body names {module}.{name}: refused")


def _loads(body: bytes) -> Any:
    try:
        return _PlainUnpickler(io.BytesIO(body)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ValueError(f"a record body cannot be read: {exc}") from exc


_PLAIN = frozenset({type(None), bool, int, float, str})


def _plain(value: Value) -> Value:
    """A value of a subclass (an IntEnum, a str subclass) as its plain type, so that the
    body pickles without naming a class."""
    if isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, value.hour, value.minute,
                        value.second, value.microsecond, value.tzinfo)
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


def pack_record(record: FileRecord) -> tuple[bytes, bytes]:
    """(location, body) of a record."""
    fields = record.fields
    if not _PLAIN.issuperset(map(type, fields.values())):
        fields = {name: _plain(value) for name, value in fields.items()}
    dated = [name for name, value in fields.items() if type(value) is datetime]
    body: dict[str, object]
    if dated:
        plain = dict(fields)
        dates = {}
        for name in dated:
            value = plain.pop(name)
            assert isinstance(value, datetime)
            dates[name] = datetime_to_micros(
                value if value.tzinfo else value.replace(tzinfo=UTC))
        body = {"f": plain, "d": dates}
    else:
        body = {"f": fields}
    if record.error is not None:
        body["e"] = record.error
    machine = record.machine_id.encode("utf-8")
    sig = record.signature
    head = _HEAD.pack(sig.size, sig.mtime_ns, sig.ctime_ns, sig.inode,
                      FLAG_ERROR if record.error is not None else 0, len(machine))
    return (head + machine + record.path.encode("utf-8"), pickle.dumps(body, _PICKLE))


_SIGNATURE = struct.Struct("<QqqQ")  # the head's first bytes: size, mtime_ns, ctime_ns, inode
SIGNATURE_BYTES = _SIGNATURE.size


def signature_bytes(size: int, mtime_ns: int, ctime_ns: int, inode: int) -> bytes:
    """A signature as a stored location begins with it: two files' signatures are equal
    when these bytes are (a re-sync compares them without decoding anything)."""
    return _SIGNATURE.pack(size, mtime_ns, ctime_ns, inode)


def unpack_location(data: bytes) -> tuple[str, str]:
    """(machine_id, path) of a stored location."""
    lm = _HEAD.unpack_from(data)[5]
    start = _HEAD.size
    return data[start : start + lm].decode("utf-8"), data[start + lm :].decode("utf-8")


def unpack_signature(data: bytes) -> tuple[FileSignature, bool]:
    """(signature, failed to parse) of a stored location."""
    size, mtime, ctime, inode, flags, _ = _HEAD.unpack_from(data)
    return FileSignature(size, mtime, ctime, inode), bool(flags & FLAG_ERROR)


def unpack_record(location: bytes, body: bytes) -> FileRecord:
    size, mtime, ctime, inode, _flags, lm = _HEAD.unpack_from(location)
    start = _HEAD.size
    machine = location[start : start + lm].decode("utf-8")
    path = location[start + lm :].decode("utf-8")
    parsed = _loads(body)
    fields: dict[str, Value] = parsed["f"]
    for name, micros in parsed.get("d", {}).items():
        fields[name] = micros_to_datetime(micros)
    return FileRecord(path, FileSignature(size, mtime, ctime, inode), fields, machine,
                      parsed.get("e"))
