"""numpy on the wire: arrays, selections and metadata values <-> their ``hoard.v1`` messages.

Pure functions, no I/O. An array travels as raw C-order bytes (numbers little-endian) with
its numpy dtype string and shape; an array of text as ``strings`` with dtype ``"str"``. A
selection is what ``array[key]`` accepts in numpy and h5py: integers, slices, one
``Ellipsis`` and increasing integer lists along an axis. :func:`selection_shape` says what
shape such a key gives without touching any data (the SDK uses it to choose a streamed read).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from hoard.v1 import datasets_pb2 as pb

__all__ = [
    "DATETIME_FORMAT",
    "STR_DTYPE",
    "Key",
    "from_array",
    "from_value",
    "normalise_key",
    "selection_from_key",
    "selection_shape",
    "to_array",
    "to_value",
]

STR_DTYPE = "str"
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # TVB's, naive

Key = Any
"""What ``array[key]`` accepts: an int, a slice, ``...``, a list of ints, or a tuple of those."""


# -- arrays ----------------------------------------------------------------------------------


def to_array(data: Any) -> pb.Array:
    """The message for ``data`` (anything ``numpy.asarray`` takes); text becomes ``strings``."""
    array = np.asarray(data)
    if array.dtype.kind == "U" or (array.dtype.kind == "O" and _all_text(array)):
        return pb.Array(dtype=STR_DTYPE, shape=array.shape, strings=[str(s) for s in array.ravel()])
    if array.dtype.kind in "OV" or array.dtype.hasobject:
        raise TypeError(f"cannot send an array of dtype {array.dtype} (numbers, bytes or text)")
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    # tobytes() is C order whatever the layout (ascontiguousarray would make a 0-d array 1-d)
    return pb.Array(dtype=array.dtype.str, shape=array.shape, data=array.tobytes(order="C"))


def from_array(message: pb.Array, *, copy: bool = True) -> np.ndarray:
    """The numpy array a message holds: writable, or with ``copy=False`` a read-only view
    of the message's bytes (for a caller that copies it anyway)."""
    shape = tuple(int(n) for n in message.shape)
    if message.dtype == STR_DTYPE:
        items = list(message.strings)
        if not items:
            return np.empty(shape, dtype="<U1")
        return np.reshape(np.asarray(items, dtype=str), shape)
    dtype = np.dtype(message.dtype)
    expected = math.prod(shape) * dtype.itemsize
    if len(message.data) != expected:
        raise ValueError(
            f"array of shape {shape} and dtype {dtype} needs {expected} bytes, "
            f"the message holds {len(message.data)}"
        )
    view = np.frombuffer(message.data, dtype=dtype)
    return (view.copy() if copy else view).reshape(shape)


def _all_text(array: np.ndarray) -> bool:
    return array.size > 0 and all(isinstance(item, str) for item in array.ravel())


# -- selections ------------------------------------------------------------------------------


def normalise_key(key: Key) -> tuple[Any, ...]:
    """``key`` as a tuple of int, slice, Ellipsis and tuple-of-int items (lists of indices);
    TypeError for what h5py would not take either (None, booleans, floats, nested lists)."""
    items = key if isinstance(key, tuple) else (key,)
    out: list[Any] = []
    for item in items:
        if item is Ellipsis:
            if Ellipsis in out:
                raise IndexError("an index can only have a single ellipsis ('...')")
            out.append(Ellipsis)
        elif isinstance(item, slice):
            out.append(slice(_opt_int(item.start), _opt_int(item.stop), _opt_int(item.step)))
            if item.step is not None and int(item.step) == 0:
                raise ValueError("slice step cannot be zero")
        elif isinstance(item, (bool, np.bool_)):
            raise TypeError("boolean indices are not supported")
        elif isinstance(item, (int, np.integer)):
            out.append(int(item))
        elif isinstance(item, (list, range, np.ndarray)):
            values = np.asarray(item)
            if values.ndim != 1 or (values.size and values.dtype.kind not in "iu"):
                raise TypeError(f"an index list must be a flat list of integers, not {item!r}")
            out.append(tuple(int(v) for v in values))
        else:
            raise TypeError(f"unsupported index {item!r}: use ints, slices, ... or int lists")
    return tuple(out)


def _opt_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"slice bounds must be integers or None, not {value!r}")
    return int(value)


def selection_from_key(key: Key) -> pb.Selection:
    """The ``Selection`` message for ``key``; ``None`` or ``()`` selects everything."""
    if key is None or (isinstance(key, tuple) and not key):
        return pb.Selection()
    items = []
    for item in normalise_key(key):
        if item is Ellipsis:
            items.append(pb.SelectionItem(ellipsis=True))
        elif isinstance(item, slice):
            items.append(
                pb.SelectionItem(slice=pb.Slice(start=item.start, stop=item.stop, step=item.step))
            )
        elif isinstance(item, tuple):
            items.append(pb.SelectionItem(indices=pb.IndexList(values=item)))
        else:
            items.append(pb.SelectionItem(index=item))
    return pb.Selection(items=items)


def selection_shape(shape: Sequence[int], key: Key) -> tuple[int, ...]:
    """The shape ``numpy.empty(shape)[key]`` would have (an index drops its axis), without
    building any array. IndexError when ``key`` has too many items or an index is out of
    range."""
    shape = tuple(int(n) for n in shape)
    items = () if key is None else normalise_key(key)
    explicit = sum(1 for item in items if item is not Ellipsis)
    if explicit > len(shape):
        raise IndexError(f"too many indices: {explicit} for {len(shape)} dimensions")
    if Ellipsis in items:
        at = items.index(Ellipsis)
        fill = (slice(None),) * (len(shape) - explicit)
        items = items[:at] + fill + items[at + 1 :]
    items = items + (slice(None),) * (len(shape) - len(items))
    out: list[int] = []
    for n, item in zip(shape, items, strict=True):
        if isinstance(item, slice):
            out.append(len(range(*item.indices(n))))
        elif isinstance(item, tuple):
            for v in item:
                if not -n <= v < n:
                    raise IndexError(f"index {v} is out of range for an axis of length {n}")
            out.append(len(item))
        elif not -n <= item < n:
            raise IndexError(f"index {item} is out of range for an axis of length {n}")
    return tuple(out)


# -- metadata values -------------------------------------------------------------------------


def to_value(value: Any) -> pb.Value:
    """The ``Value`` message for a metadata value: None, bool, int, float, str, bytes,
    datetime (naive, TVB's format) or an array."""
    if value is None:
        return pb.Value(none=True)
    if isinstance(value, (bool, np.bool_)):
        return pb.Value(bool_value=bool(value))
    if isinstance(value, (int, np.integer)):
        return pb.Value(int_value=int(value))
    if isinstance(value, (float, np.floating)):
        return pb.Value(float_value=float(value))
    if isinstance(value, str):
        return pb.Value(string_value=value)
    if isinstance(value, (bytes, np.bytes_)):
        return pb.Value(bytes_value=bytes(value))
    if isinstance(value, datetime.datetime):
        return pb.Value(datetime_value=_datetime_text(value))
    if isinstance(value, (np.ndarray, list, tuple)):
        return pb.Value(array_value=to_array(value))
    raise TypeError(f"cannot store a metadata value of type {type(value).__name__}")


def _datetime_text(value: datetime.datetime) -> str:
    # DATETIME_FORMAT spelt out: strftime does not pad years before 1000 on every platform
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"
    )


def from_value(message: pb.Value) -> Any:
    """The Python value of a ``Value`` message (a datetime for ``datetime_value``)."""
    kind = message.WhichOneof("kind")
    if kind is None or kind == "none":
        return None
    if kind == "datetime_value":
        return datetime.datetime.strptime(message.datetime_value, DATETIME_FORMAT)
    if kind == "array_value":
        return from_array(message.array_value)
    return getattr(message, kind)
