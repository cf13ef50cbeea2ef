"""The HDF5 superblock's "file is open for writing" flags, cleared without the HDF5 tools.

A file opened for writing with ``libver="latest"`` (superblock version 3, which SWMR needs)
has flags set in its superblock until it is closed. A copy taken while it is open, or the
file itself after the daemon was killed, keeps them, and HDF5 then refuses to open it ("file
is already open for write (may use <h5clear file> to clear file consistency flags)"). The
daemon owns its data directory, so when it finds such a file no other writer can exist:
clearing the flags (what ``h5clear -s`` does) is the whole repair. SWMR's write ordering keeps
the rest of the file valid.

Superblock versions 2 and 3 (HDF5 file format specification, "Superblock"):

    signature (8) | version (1) | size of offsets (1) | size of lengths (1) | flags (1)
    | base address, extension address, end-of-file address, root object header (4 x offsets)
    | checksum (4): Jenkins' lookup3 hash of everything before it, little-endian

The superblock sits at offset 0, or 512, 1024, 2048... when the file has a user block.
Older versions (0, 1) carry no flags HDF5 checks; they are left alone.
"""

from __future__ import annotations

import os
import struct

SIGNATURE = b"\x89HDF\r\n\x1a\n"
_FLAGS_AT = 11  # offset of the consistency flags within a v2/v3 superblock
_MASK = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


# (x, y, k): x = x - y, then x ^= rot(y, k), then y += z  -- lookup3's mix, step by step
_MIX = ((0, 2, 4, 1), (1, 0, 6, 2), (2, 1, 8, 0), (0, 2, 16, 1), (1, 0, 19, 2), (2, 1, 4, 0))
# (x, y, k): x ^= y, then x -= rot(y, k)  -- lookup3's final
_FINAL = ((2, 1, 14), (0, 2, 11), (1, 0, 25), (2, 1, 16), (0, 2, 4), (1, 0, 14), (2, 1, 24))


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle`` over bytes, as HDF5 checksums its metadata."""
    length = len(data)
    v = [(0xDEADBEEF + length + initval) & _MASK] * 3  # a, b, c
    pos = 0
    while length > 12:
        for i, word in enumerate(struct.unpack_from("<3I", data, pos)):
            v[i] = (v[i] + word) & _MASK
        for x, y, k, z in _MIX:
            v[x] = ((v[x] - v[y]) & _MASK) ^ _rot(v[y], k)
            v[y] = (v[y] + v[z]) & _MASK
        pos += 12
        length -= 12
    if length == 0:
        return v[2]
    tail = data[pos:] + bytes(12 - length)  # the missing bytes add nothing
    for i, word in enumerate(struct.unpack("<3I", tail)):
        v[i] = (v[i] + word) & _MASK
    for x, y, k in _FINAL:
        v[x] = ((v[x] ^ v[y]) - _rot(v[y], k)) & _MASK
    return v[2]


def _superblock_at(head: bytes | bytearray) -> int | None:
    """Where the superblock starts in ``head`` (the first bytes of a file), if found."""
    at = 0
    while at + len(SIGNATURE) <= len(head):
        if head[at : at + len(SIGNATURE)] == SIGNATURE:
            return at
        at = 512 if at == 0 else at * 2
    return None


def _checked_span(head: bytes | bytearray, at: int) -> int | None:
    """Length of the checksummed part of a v2/v3 superblock at ``at``; None for other
    versions or when ``head`` is too short to hold it."""
    if len(head) < at + 12 or head[at + 8] not in (2, 3):
        return None
    span = 12 + 4 * head[at + 9]
    return span if len(head) >= at + span + 4 else None


def status_flags(head: bytes | bytearray) -> int:
    """The consistency flags of the superblock in ``head`` (0 when there are none)."""
    at = _superblock_at(head)
    if at is None or _checked_span(head, at) is None:
        return 0
    return head[at + _FLAGS_AT]


def clear_status_flags(head: bytearray) -> bool:
    """Clear the "open for writing / SWMR writing" flags in ``head`` (which must hold the
    file's start, superblock included) and fix the checksum. True when something changed.

    A superblock whose stored checksum does not match is left alone: it is damaged, not
    merely left open, and rewriting its checksum would hide that."""
    at = _superblock_at(head)
    if at is None:
        return False
    span = _checked_span(head, at)
    if span is None or head[at + _FLAGS_AT] == 0:
        return False
    (stored,) = struct.unpack_from("<I", head, at + span)
    if lookup3(bytes(head[at : at + span])) != stored:
        return False
    head[at + _FLAGS_AT] = 0
    struct.pack_into("<I", head, at + span, lookup3(bytes(head[at : at + span])))
    return True


# enough for a superblock behind a user block of up to 64 KiB
HEAD_BYTES = 65536 + 64


def repair(path: str) -> bool:
    """Clear the flags in the file at ``path`` in place (fsynced); True when it changed.

    Only for a file no process has open for writing (the daemon's own, after a crash)."""
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    try:
        head = bytearray(os.pread(fd, HEAD_BYTES, 0))
        if not clear_status_flags(head):
            return False
        at = _superblock_at(head)
        assert at is not None
        span = _checked_span(head, at)
        assert span is not None
        os.pwrite(fd, bytes(head[at : at + span + 4]), at)
        os.fsync(fd)
        return True
    finally:
        os.close(fd)
