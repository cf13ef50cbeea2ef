"""Metadata values as TVB keeps them in HDF5 attributes, so TVB reads what hoard writes.

TVB's conventions: a bool is the string ``'bool:True'`` / ``'bool:False'``, a datetime the
string ``'datetime:%Y-%m-%d %H:%M:%S.%f'``, TVB's own keys carry the prefix ``TVB_``. Reading
strips the prefix and decodes the conventions as TVB does.

TVB's defects are fixed: ``None`` is an attribute with a null dataspace (``h5py.Empty``)
and reads back as None (TVB writes '' and reads ''); ``bytes`` are stored opaque and read
back whole; numpy arrays are array attributes.
"""

from __future__ import annotations

from datetime import datetime

import h5py
import numpy as np

from hoard_server.errors import InvalidArgument
from hoard_server.services.datasets.arrays import checked_text

TVB_PREFIX = "TVB_"
BOOL_PREFIX = "bool:"
DATETIME_PREFIX = "datetime:"
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
DATA_VERSION_KEY = TVB_PREFIX + "Data_version"
DATA_VERSION = 5  # tvb.basic.config.settings: DATA_VERSION

Value = None | bool | int | float | str | bytes | datetime | np.ndarray

# The longest attribute name hoard stores, in UTF-8 bytes (the "TVB_" prefix included).
# HDF5 keeps a name's length in 16 bits: a file opened with libver "latest" (as hoard
# opens every file it writes) takes a name of 64 KiB or more without complaint and is
# then damaged: every later read of that node's attributes fails. A metadata key is a
# name, not a value; 4 KiB is far above any real one.
MAX_KEY_BYTES = 4096

_NONE = h5py.Empty(np.dtype("<f4"))
_NO_BYTES = h5py.Empty(np.dtype("V1"))


def stored_key(key: str, tvb_specific: bool) -> str:
    """The attribute name of a metadata key; INVALID_METADATA for an unusable one (empty,
    with a NUL, or longer than ``MAX_KEY_BYTES``)."""
    if not key or "\x00" in key or key in (".",):
        raise InvalidArgument(
            f"metadata key {key[:64].replace(chr(0), '?')!r} is not valid: use a non-empty "
            "name without NUL",
            reason="INVALID_METADATA",
            key=key[:256].replace("\x00", "\\0"),
        )
    name = TVB_PREFIX + key if tvb_specific else key
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise InvalidArgument(
            f"metadata key {key[:40]!r}... is {size} bytes long; keys may have at most "
            f"{MAX_KEY_BYTES} bytes (UTF-8, with the TVB_ prefix): keep long text in the "
            "value",
            reason="INVALID_METADATA",
            key=key[:256],
            size=str(size),
            limit=str(MAX_KEY_BYTES),
        )
    return name


def shown_key(name: str) -> str:
    """The key TVB reports for an attribute name (the ``TVB_`` prefix removed)."""
    return name[len(TVB_PREFIX) :] if name.startswith(TVB_PREFIX) else name


def parse_datetime(text: str) -> datetime:
    """A datetime in TVB's format; INVALID_METADATA otherwise."""
    try:
        return datetime.strptime(text, DATETIME_FORMAT)
    except ValueError:
        raise InvalidArgument(
            f"datetime {text[:64]!r} is not in the form 'YYYY-MM-DD HH:MM:SS.ffffff'",
            reason="INVALID_METADATA",
        ) from None


def format_datetime(value: datetime) -> str:
    return value.strftime(DATETIME_FORMAT)


def encode(value: Value) -> object:
    """What to store as the attribute for ``value``."""
    if value is None:
        return _NONE
    if isinstance(value, bool | np.bool_):
        return BOOL_PREFIX + str(bool(value))
    if isinstance(value, datetime):
        return DATETIME_PREFIX + format_datetime(value)
    if isinstance(value, int):
        return np.int64(value)
    if isinstance(value, float):
        return np.float64(value)
    if isinstance(value, str):
        return checked_text(value, "metadata value")
    if isinstance(value, bytes):
        return np.void(value) if value else _NO_BYTES
    if isinstance(value, np.ndarray):
        return value
    raise InvalidArgument(
        f"metadata values of type {type(value).__name__} cannot be stored",
        reason="INVALID_METADATA",
    )


def write(attrs: h5py.AttributeManager, name: str, stored: object) -> None:
    """Set one attribute to an ``encode``d value."""
    if isinstance(stored, np.ndarray) and stored.dtype.kind == "O":
        attrs.create(name, stored, dtype=h5py.string_dtype("utf-8"))
    else:
        attrs[name] = stored


def decode(stored: object) -> Value:
    """The value an attribute holds, TVB's conventions decoded."""
    if isinstance(stored, h5py.Empty):
        return b"" if stored.dtype.kind == "V" else None
    if isinstance(stored, np.bytes_ | bytes):
        if len(stored) == 0:
            return None  # as TVB reads an empty byte string
        stored = bytes(stored).decode("utf-8", "replace")
    if isinstance(stored, str):
        if stored.startswith(BOOL_PREFIX):
            return stored[len(BOOL_PREFIX) :].lower() in ("yes", "true", "t", "1")
        if stored.startswith(DATETIME_PREFIX):
            try:
                return datetime.strptime(stored[len(DATETIME_PREFIX) :], DATETIME_FORMAT)
            except ValueError:
                return stored
        return stored
    if isinstance(stored, np.void):
        return stored.tobytes()
    if isinstance(stored, np.bool_):
        return bool(stored)
    if isinstance(stored, np.integer):
        return int(stored)
    if isinstance(stored, np.floating):
        return float(stored)
    if isinstance(stored, np.ndarray):
        return stored
    if isinstance(stored, np.generic):
        return np.asarray(stored)
    return stored  # type: ignore[return-value]
