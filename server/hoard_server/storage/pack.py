"""The pack file format, readable and testable without a repository.

A pack is an append-only file::

    b"HOARDPK1"                                  file magic (8 bytes)
    record*                                      one per object

    record = header body
    header = b"HR" encoding:u8 digest:32s raw_size:u64 body_size:u64   (51 bytes, little endian)

``encoding`` says how ``body`` holds the object (see ``Encoding``). The digest makes a pack
self-describing: an index can be checked against it, or rebuilt from it, without trusting
anything else. The index (not the pack) decides which records are live; bytes past the
committed end of a pack are crash leftovers and are cut off at start-up.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import threading
from collections.abc import Callable, Iterator
from enum import IntEnum
from typing import NamedTuple

from hoard_server.errors import DataLoss, StorageFull
from hoard_server.storage import modes

PACK_MAGIC = b"HOARDPK1"
RECORD_MAGIC = b"HR"
RECORD_HEADER = struct.Struct("<2sB32sQQ")
HEADER_SIZE = RECORD_HEADER.size


class Encoding(IntEnum):
    RAW = 0  # body is the content
    ZSTD = 1  # body is one zstd frame
    ZSTD_DICT = 2  # body is one zstd frame compressed with the repository's dictionary
    FRAMES = 3  # body is independently encoded ~1 MiB frames followed by a FrameTable

    @property
    def label(self) -> str:
        return {0: "raw", 1: "zstd", 2: "zstd-dict", 3: "zstd-frames"}[self.value]


_ENCODINGS = {int(e): e for e in Encoding}


class RecordHeader(NamedTuple):  # a tuple: cheap to make in the compactor's hot loop
    encoding: Encoding
    digest: bytes
    raw_size: int
    body_size: int

    def encode(self) -> bytes:
        return RECORD_HEADER.pack(
            RECORD_MAGIC, self.encoding, self.digest, self.raw_size, self.body_size
        )

    @classmethod
    def decode(cls, buf: bytes | memoryview) -> RecordHeader:
        if len(buf) < HEADER_SIZE:
            raise DataLoss("pack record header is truncated")
        magic, encoding, digest, raw_size, body_size = RECORD_HEADER.unpack_from(buf)
        member = _ENCODINGS.get(encoding)  # a dict lookup: Encoding(x) is slow in a hot loop
        if magic != RECORD_MAGIC or member is None:
            raise DataLoss("pack record header is damaged")
        return cls(member, digest, raw_size, body_size)


def fsync_dir(path: str) -> None:
    """Make a directory entry (a created or renamed file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def raise_if_full(exc: OSError, what: str) -> None:
    """Turn ENOSPC/EDQUOT into StorageFull; re-raise anything else."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise StorageFull(f"no space left on the storage device while {what}") from exc
    raise exc


def create_pack(path: str) -> None:
    """Create an empty pack durably (magic written and synced, directory entry synced)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, modes.file_mode())
    try:
        os.write(fd, PACK_MAGIC)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(os.path.dirname(path))


class PackAppender:
    """Appends records at a known end offset of one pack.

    Writes go to ``end`` with pwritev, so a failed batch is undone by truncating back to
    the last committed end; nothing past that end is ever indexed.
    """

    _IOV_MAX = 1024

    def __init__(self, path: str, end: int) -> None:
        self.path = path
        self.end = end
        self._fd = os.open(path, os.O_WRONLY)

    def append(self, buffers: list[bytes | memoryview]) -> int:
        """Write buffers at the end; return the offset they start at (not yet durable)."""
        start = offset = self.end
        try:
            for i in range(0, len(buffers), self._IOV_MAX):
                part = buffers[i : i + self._IOV_MAX]
                want = sum(len(b) for b in part)
                done = os.pwritev(self._fd, part, offset)
                while done < want:  # short write: finish it byte-exactly
                    flat = b"".join(part)[done:]
                    done += os.pwrite(self._fd, flat, offset + done)
                offset += want
        except OSError as exc:
            self.rollback(start)
            raise_if_full(exc, "writing a pack")
        self.end = offset
        return start

    def sync(self) -> None:
        os.fdatasync(self._fd)

    def rollback(self, end: int) -> None:
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, end)
        self.end = end

    def close(self) -> None:
        os.close(self._fd)


class PackReader:
    """Positional reads from the packs of one repository; safe from any thread."""

    def __init__(self, pack_path) -> None:  # pack_path: Callable[[int], str]
        self._pack_path = pack_path
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()

    def _fd(self, pack_id: int) -> int:
        fd = self._fds.get(pack_id)
        if fd is None:
            with self._lock:
                fd = self._fds.get(pack_id)
                if fd is None:
                    try:
                        fd = os.open(self._pack_path(pack_id), os.O_RDONLY)
                    except FileNotFoundError as exc:
                        raise DataLoss(f"pack {pack_id} is missing from the repository") from exc
                    self._fds[pack_id] = fd
        return fd

    def read(self, pack_id: int, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset``; DataLoss if the pack has fewer, or if the
        request is impossible (a location computed from damaged sizes)."""
        if offset < 0 or length < 0:
            raise DataLoss(f"pack {pack_id}: impossible read of {length} bytes at {offset}")
        if length == 0:
            return b""
        data = os.pread(self._fd(pack_id), length, offset)
        if len(data) != length:
            raise DataLoss(
                f"pack {pack_id} is truncated: wanted {length} bytes at offset {offset}, "
                f"found {len(data)}"
            )
        return data

    def forget(self, pack_id: int) -> None:
        with self._lock:
            fd = self._fds.pop(pack_id, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)


def scan_records(
    read: Callable[[int, int], bytes], end: int, window: int = 8 << 20, start: int = 0
) -> Iterator[tuple[int, RecordHeader, memoryview | None]]:
    """Walk a pack's records from ``start`` (a record boundary; 0: the first record) to
    ``end`` (its committed size).

    ``read(offset, length)`` reads the pack. Records are parsed from large sequential reads,
    so a pack of a million small records costs a few hundred reads, not two million.
    Yields (record offset, header, body if it lay inside the read window else None);
    DataLoss when a header does not parse.
    """
    offset = start or len(PACK_MAGIC)
    buf, buf_start = memoryview(b""), offset
    while offset < end:
        rel = offset - buf_start
        if rel + HEADER_SIZE > len(buf):
            buf_start, buf = offset, memoryview(read(offset, min(window, end - offset)))
            rel = 0
            if len(buf) < HEADER_SIZE:
                raise DataLoss(f"pack ends inside a record header at offset {offset}")
        header = RecordHeader.decode(buf[rel : rel + HEADER_SIZE])
        body_start = rel + HEADER_SIZE
        body_end = body_start + header.body_size
        yield offset, header, buf[body_start:body_end] if body_end <= len(buf) else None
        offset += HEADER_SIZE + header.body_size
    if offset != end:
        raise DataLoss(f"last record runs past the committed end ({offset} > {end})")
