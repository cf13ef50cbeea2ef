"""The seekable reader: one stored object as a read-only binary file.

Seeking only moves a position. A read after a seek is one ReadRange call of about what it
asks for, whose reply also says how large the object is: a seek and a small read cost one
round trip, and random access downloads nothing else. When reads continue where the last one
ended, the reader opens one streaming Read from there and serves the following reads from
it, as fast as ``iter_chunks``; a seek elsewhere cancels it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from hoard.errors import OutOfRangeError
from hoard.objects import Objects

__all__ = ["READER_BUFFER_BYTES", "ObjectStream", "open_object"]

# The C BufferedReader fills its buffer with one raw read of this size, so a small read after a
# seek costs one call of this many bytes.
READER_BUFFER_BYTES = io.DEFAULT_BUFFER_SIZE


class ObjectStream(io.RawIOBase):
    """A read-only, seekable raw stream over object ``key``; wrap it in an
    ``io.BufferedReader`` (:func:`open_object` does).

    ``size`` may be unknown (None): the first read learns it; only ``seek(n, SEEK_END)``
    before any read costs a call of its own. ``head`` is content already fetched from
    offset 0.
    """

    def __init__(
        self, objects: Objects, key: str, size: int | None = None, head: bytes = b""
    ) -> None:
        super().__init__()
        self._objects = objects
        self._key = key
        self._size = size
        self._pos = 0
        self._window: bytes | memoryview = head  # fetched bytes not yet read, at _window_start
        self._window_start = 0
        self._fetch_end = len(head) if head else -1  # a read starting here is sequential
        self._stream: Iterator[bytes] | None = None  # open streaming Read, while sequential
        self._stream_pos = 0  # the offset of the next byte _stream yields

    @property
    def name(self) -> str:
        return self._key

    @property
    def mode(self) -> str:
        return "rb"

    @property
    def size(self) -> int:
        """The object's size (a call, if no read has told it yet)."""
        if self._size is None:
            self._size = self._objects.read_range(self._key, 0, 0)[1]
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self.size + offset
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        self._pos = target
        return target

    def readinto(self, buffer: Any) -> int:
        self._check_open()
        view = memoryview(buffer).cast("B")
        want = len(view) if self._size is None else min(len(view), self._size - self._pos)
        if want <= 0:
            return 0
        window_end = self._window_start + len(self._window)
        if self._window_start <= self._pos < window_end:
            n = min(want, window_end - self._pos)
            start = self._pos - self._window_start
            view[:n] = self._window[start : start + n]
            self._pos += n
            return n
        if self._stream is not None and self._pos != self._stream_pos:
            self._close_stream()
        if self._stream is None and self._pos == self._fetch_end and self._size is not None:
            self._stream = self._objects.iter_chunks(self._key, self._pos)
            self._stream_pos = self._pos
        if self._stream is not None:
            chunk = next(self._stream, b"")
            if not chunk:
                self._close_stream()
                return 0
            self._stream_pos += len(chunk)
            n = min(want, len(chunk))
            view[:n] = memoryview(chunk)[:n]
            self._window = memoryview(chunk)[n:]
            self._window_start = self._pos + n
            self._fetch_end = self._stream_pos
            self._pos += n
            return n
        # a read after a seek: exactly what is asked for, in one call
        try:
            data, self._size = self._objects.read_range(self._key, self._pos, want)
        except OutOfRangeError:
            if self._size is not None:
                raise
            return 0  # past the end of an object whose size was not known yet: a file's EOF
        filled = len(data)
        view[:filled] = data
        self._window = b""
        self._fetch_end = self._pos + filled
        self._pos += filled
        return filled

    def readall(self) -> bytes:
        self._check_open()
        parts: list[bytes] = []
        at = self._pos
        window_end = self._window_start + len(self._window)
        if self._window_start <= at < window_end:
            parts.append(bytes(self._window[at - self._window_start :]))
            at = window_end
        if self._stream is not None and at == self._stream_pos:
            parts.extend(self._stream)
        elif self._size is None or at < self._size:
            try:
                parts.extend(self._objects.iter_chunks(self._key, at))
            except OutOfRangeError:
                if self._size is not None:
                    raise
        self._close_stream()
        data = b"".join(parts)
        self._pos += len(data)
        return data

    def _close_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()  # type: ignore[attr-defined]  # cancels the call
            self._stream = None

    def close(self) -> None:
        self._close_stream()
        self._window = b""
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")

    def __repr__(self) -> str:
        return f"<hoard.ObjectStream key={self._key!r} size={self._size}>"


def open_object(
    objects: Objects, key: str, *, size: int | None = None, prefetch: int = 0
) -> io.BufferedReader:
    """A seekable ``io.BufferedReader`` over object ``key``.

    With ``prefetch`` the first ``prefetch`` bytes are read now, in one ReadRange call that
    also tells the size: a missing object fails here rather than at the first read, at no
    extra cost. Without it (and without ``size``) opening makes no call at all.
    """
    head = b""
    if prefetch and size is None:
        head, size = objects.read_range(key, 0, prefetch)
    return io.BufferedReader(
        ObjectStream(objects, key, size, head), buffer_size=READER_BUFFER_BYTES
    )
