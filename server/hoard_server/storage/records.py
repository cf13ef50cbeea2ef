"""Checking one stored record against its index entry, from its bytes alone.

Used where a record is handled as stored bytes rather than served (compaction copies
records without recompressing them): the header must agree with the entry and the body must
decode and hash to the key, using no cached state (no frame table cache, no index).
"""

from __future__ import annotations

import hashlib

from hoard_server.errors import DataLoss
from hoard_server.storage.codec import Codec, FrameTable
from hoard_server.storage.index import Location
from hoard_server.storage.pack import HEADER_SIZE, Encoding


def check_record(codec: Codec, digest: bytes, loc: Location, record: memoryview) -> None:
    """DataLoss unless ``record`` (header and body, read at ``loc``) is the object
    ``digest`` as indexed."""
    loc.check_header(digest, record[:HEADER_SIZE])
    body = record[HEADER_SIZE:]
    if loc.encoding == Encoding.FRAMES:
        _check_frames(codec, digest, loc, body)
    elif loc.encoding == Encoding.RAW:
        codec.decode_small(loc.encoding, body, loc.raw_size, digest)  # hashes it
    else:  # zstd's checksum catches damage; the hash catches a wrong (but whole) frame
        data = codec.decode_small(loc.encoding, body, loc.raw_size)
        if hashlib.sha256(data).digest() != digest:
            raise DataLoss("content does not hash to its key", reason="HASH_MISMATCH")


def _check_frames(codec: Codec, digest: bytes, loc: Location, body: memoryview) -> None:
    """Decode a FRAMES body one frame at a time (memory: one decoded frame) and hash it."""
    size = len(body)
    if size < 4:
        raise DataLoss("frame table is missing")
    n = FrameTable.trailer_length(bytes(body[-4:]))
    if n + 4 > size:
        raise DataLoss("frame table is damaged (length)")
    table = FrameTable.decode(bytes(body[size - 4 - n : size - 4]))
    offsets = table.offsets
    fs = table.frame_size
    if fs <= 0 or offsets[-1] != size - 4 - n or len(table.stored) != -(-loc.raw_size // fs):
        raise DataLoss("frame table does not match the record")
    h = hashlib.sha256()
    for i in range(len(table.stored)):
        frame = body[offsets[i] : offsets[i + 1]]
        raw_n = min(fs, loc.raw_size - i * fs)
        h.update(codec.decode_frame(frame, table.raw[i], raw_n, table.crc[i]))
    if h.digest() != digest:
        raise DataLoss("content does not hash to its key", reason="HASH_MISMATCH")
