"""Reading replies: pure functions (no I/O), shared by every way of receiving them."""

from __future__ import annotations

from collections.abc import Iterator

from hoard.reports import ObjectStat, from_message
from hoard.v1 import objects_pb2 as pb

__all__ = ["inlined_objects", "object_stat", "range_size"]


def object_stat(stat: pb.ObjectStat) -> ObjectStat | None:
    """The stat of one object, None when it does not exist."""
    return from_message(ObjectStat, stat) if stat.exists else None


def inlined_objects(message: pb.ReadManyResponse) -> Iterator[tuple[str, int, bytes | None]]:
    """``(key, size, content or None when not inlined)`` per object of a columnar ReadMany
    reply, whose inlined contents are concatenated in key order."""
    data = message.data
    start = 0
    for key, size, inlined in zip(message.keys, message.sizes, message.inlined, strict=True):
        if inlined:
            yield key, size, data[start : start + size]
            start += size
        else:
            yield key, size, None


def range_size(object_size: int, offset: int, length: int | None) -> int:
    """How many bytes a read of ``length`` (None: to the end) from ``offset`` returns."""
    end = object_size if length is None else min(offset + length, object_size)
    return max(0, end - offset)
