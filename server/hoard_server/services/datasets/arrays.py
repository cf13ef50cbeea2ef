"""Arrays on the wire: raw bytes + a numpy dtype string + a shape, or strings.

The one place a wire array becomes a numpy array (checked: an allowed dtype, a sane shape,
exactly prod(shape) * itemsize bytes) and a numpy array becomes a wire array (C order,
little-endian numbers; text as ``strings`` with dtype "str").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hoard_server.errors import InvalidArgument

STR = "str"
MAX_RANK = 32  # HDF5's limit
MAX_SPAN = 1 << 62  # numpy's limit on the bytes an array's dimensions may span
_KINDS = "biufcS"  # bool, ints, floats, complex, fixed-length bytes


class ArrayLike(Protocol):
    """What a wire array offers (``hoard.v1.Array`` does)."""

    @property
    def dtype(self) -> str: ...
    @property
    def shape(self) -> Sequence[int]: ...
    @property
    def data(self) -> bytes: ...
    @property
    def strings(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class WireArray:
    """An array as it travels (the fields of ``hoard.v1.Array``)."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes = b""
    strings: tuple[str, ...] = ()


def _invalid(message: str, reason: str) -> InvalidArgument:
    return InvalidArgument(message, reason=reason)


def dtype_of(text: str) -> np.dtype:
    """The numpy dtype a wire dtype string names; INVALID_DTYPE if not storable."""
    if text == STR:
        return np.dtype(object)
    try:
        dtype = np.dtype(text)
    except (TypeError, ValueError, SyntaxError):
        dtype = None
    if dtype is None or dtype.kind not in _KINDS or dtype.itemsize == 0 or dtype.shape:
        raise _invalid(
            f"dtype {text[:64]!r} is not one hoard stores: use a numpy dtype string of a "
            "number, bool or fixed-length bytes ('<f8', '<i4', '|b1', '<c16', '|S16'), or "
            "'str' with the text in `strings`",
            "INVALID_DTYPE",
        )
    return dtype


def checked_text(text: str, what: str) -> str:
    """``text`` when HDF5 can store it as a string: valid Unicode (it is kept as UTF-8) and
    no NUL character (h5py's variable-length strings end at one: it refuses them).
    InvalidArgument, reason INVALID_TEXT, otherwise; ``what`` names the text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _invalid(
            f"{what} {text[:40]!r} is not valid Unicode ({exc.reason}): HDF5 stores text as "
            "UTF-8",
            "INVALID_TEXT",
        ) from None
    if "\x00" in text:
        raise _invalid(
            f"{what} {text[:40]!r} holds a NUL character, which an HDF5 string cannot: "
            "store it as bytes",
            "INVALID_TEXT",
        )
    return text


def decode(array: ArrayLike) -> np.ndarray:
    """The numpy array a wire array holds (strings: an object array of str)."""
    dtype = dtype_of(array.dtype)
    shape = tuple(int(d) for d in array.shape)
    if len(shape) > MAX_RANK:
        raise _invalid(f"an array may have at most {MAX_RANK} dimensions", "SHAPE_MISMATCH")
    count = math.prod(shape)
    if math.prod(d for d in shape if d) * max(dtype.itemsize, 8) > MAX_SPAN:
        raise _invalid(
            f"shape {shape[:MAX_RANK]} is larger than any array can be, even an empty one",
            "SHAPE_MISMATCH",
        )
    if array.dtype == STR:
        if array.data or len(array.strings) != count:
            raise _invalid(
                f"a 'str' array of shape {shape} needs {count} items in `strings` (and no "
                f"`data`), not {len(array.strings)}",
                "SHAPE_MISMATCH",
            )
        for text in array.strings:
            checked_text(text, "text item")
        out = np.empty(count, dtype=object)
        out[:] = list(array.strings)
        return out.reshape(shape)
    if array.strings:
        raise _invalid("`strings` is only for dtype 'str'", "SHAPE_MISMATCH")
    needed = count * dtype.itemsize
    if len(array.data) != needed:
        raise _invalid(
            f"an array of shape {shape} and dtype {dtype.str} holds {needed} bytes, not "
            f"{len(array.data)}",
            "SHAPE_MISMATCH",
        )
    return np.frombuffer(array.data, dtype=dtype).reshape(shape)


def encode(value: np.ndarray) -> WireArray:
    """The wire form of a numpy array (object arrays of str or bytes travel as strings)."""
    arr = np.asarray(value)
    shape = tuple(int(d) for d in arr.shape)
    if arr.dtype.kind in "OU":
        items = [_text(x) for x in arr.reshape(-1).tolist()]
        return WireArray(STR, shape, b"", tuple(items))
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return WireArray(arr.dtype.str, shape, np.ascontiguousarray(arr).tobytes())


def nbytes(value: np.ndarray) -> int:
    """Bytes the array takes on the wire (text: its UTF-8 length)."""
    if value.dtype.kind in "OU":
        return sum(len(_text(x).encode()) for x in np.asarray(value).reshape(-1).tolist())
    return int(value.nbytes)


def _text(x: object) -> str:
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)
