"""Large uploads: streamed to a staging file that becomes a single-object pack.

The staging file is written in pack format from the start (magic, a placeholder header,
frames, frame table); when the stream ends the header is filled in, the file is fsynced and
handed to the pack writer, which renames it into the packs directory. No byte is copied
twice, memory stays bounded (a few frames in flight), and small puts are never held up
behind a large one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections import deque
from concurrent.futures import Executor, Future

from hoard_server.storage import modes
from hoard_server.storage.codec import Codec, FrameTable
from hoard_server.storage.layout import UPLOAD_SUFFIX
from hoard_server.storage.pack import HEADER_SIZE, PACK_MAGIC, Encoding, RecordHeader, raise_if_full
from hoard_server.storage.writer import StagedRecord

_IN_FLIGHT = 16  # frames being compressed at once, per upload


class StagedUpload:
    """One upload streamed into ``staging_dir``: ``write`` chunks, then ``finish`` (or
    ``abort``). The content is hashed here as it arrives, once."""

    def __init__(self, staging_dir: str, codec: Codec, pool: Executor) -> None:
        self.path = os.path.join(staging_dir, uuid.uuid4().hex + UPLOAD_SUFFIX)
        self._codec = codec
        self._pool = pool
        self._hash = hashlib.sha256()
        self._pending = bytearray()
        self._in_flight: deque[Future] = deque()
        self._stored: list[int] = []
        self._raw: list[bool] = []
        self._crc: list[int] = []
        self._compressible: bool | None = None  # did the last finished frame compress?
        self.raw_size = 0
        self._body_size = 0
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, modes.file_mode())
        self._write(PACK_MAGIC + bytes(HEADER_SIZE))

    def _write(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as exc:
            self.abort()
            raise_if_full(exc, "staging an upload")

    def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)  # hashlib drops the GIL: compression runs beside it
        self.raw_size += len(chunk)
        fs = self._codec.frame_size
        view = memoryview(chunk)
        if self._pending:  # complete the partial frame first
            need = fs - len(self._pending)
            self._pending += view[:need]
            view = view[need:]
            if len(self._pending) < fs:
                return
            self._queue_frame(bytes(self._pending))
            self._pending = bytearray()
        while len(view) >= fs:  # whole frames straight from the message, no copy
            self._queue_frame(view[:fs])
            view = view[fs:]
        self._pending += view

    def _queue_frame(self, frame: bytes | memoryview) -> None:
        # sample-test a frame unless its predecessors compressed well (re-check every 16th)
        sample = self._compressible is not True or len(self._stored) % 16 == 0
        self._in_flight.append(self._pool.submit(self._codec.encode_frame, frame, sample))
        while len(self._in_flight) >= _IN_FLIGHT:
            self._drain_one()

    def _drain_one(self) -> None:
        is_raw, body, crc = self._in_flight.popleft().result()
        self._stored.append(len(body))
        self._raw.append(is_raw)
        self._crc.append(crc)
        self._compressible = not is_raw
        self._body_size += len(body)
        self._write(body)

    def finish(self) -> StagedRecord:
        """Complete the file durably; return it as a record for the pack writer."""
        if self._pending:
            self._queue_frame(bytes(self._pending))
            self._pending = bytearray()
        while self._in_flight:
            self._drain_one()
        table = FrameTable(
            self._codec.frame_size, tuple(self._stored), tuple(self._raw), tuple(self._crc), True
        ).encode()
        self._write(table)
        self._body_size += len(table)
        digest = self._hash.digest()
        header = RecordHeader(Encoding.FRAMES, digest, self.raw_size, self._body_size).encode()
        try:
            os.pwrite(self._fd, header, len(PACK_MAGIC))
            os.fdatasync(self._fd)
        except OSError as exc:
            self.abort()
            raise_if_full(exc, "staging an upload")
        os.close(self._fd)
        self._fd = -1
        return StagedRecord(digest, self.raw_size, Encoding.FRAMES, self._body_size, self.path)

    def abort(self) -> None:
        for f in self._in_flight:
            f.cancel()
        self._in_flight.clear()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
