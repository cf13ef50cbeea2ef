"""Shared-memory segments: how a large read reaches a client on the daemon's host.

The daemon writes a selection (or a block of it) into a fresh file of ``/dev/shm`` (a random
128-bit name carrying the daemon's pid, mode 0600, created O_EXCL|O_NOFOLLOW: nobody else's
file is ever opened, and only the daemon's user can open it) and names it in the reply; the
client maps it and unlinks it at once (that is the claim). A segment is held while its stream
runs; once released (the stream ended, or was cancelled) one nobody claims within
``CLAIM_SECONDS`` is unlinked by the daemon. The bytes of segments not yet claimed are
bounded: a read beyond the bound is streamed instead. Segments of a daemon that died are
unlinked when the next one starts.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

SHM_DIR = "/dev/shm"
PREFIX = "hoard-ds-"
CLAIM_SECONDS = 5.0  # a segment still there this long after its reply is unlinked


@dataclass(frozen=True)
class Segment:
    """A selection in ``SHM_DIR/name``: ``size`` bytes of ``dtype`` items of ``shape``."""

    name: str
    size: int
    dtype: str
    shape: tuple[int, ...]


def _write_pieces(fd: int, pieces: Iterator[np.ndarray]) -> int:
    """Write ``pieces`` one after the other from offset 0, each in a helper thread while the
    next is produced; the bytes written."""
    offset = 0
    with ThreadPoolExecutor(1, thread_name_prefix="shm-write") as pool:
        previous: Future[None] | None = None
        for piece in pieces:
            view = memoryview(piece.data).cast("B")
            if previous is not None:
                previous.result()
            previous = pool.submit(_pwrite_all, fd, view, offset)
            offset += len(view)
        if previous is not None:
            previous.result()
    return offset


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _pid_of(name: str) -> int | None:
    try:
        return int(name[len(PREFIX) :].split("-", 1)[0])
    except ValueError:
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SharedSegments:
    """The segments one daemon has written and their clients have not claimed yet (held by
    a running stream, or released and waiting CLAIM_SECONDS); thread-safe."""

    def __init__(self, max_bytes: int, directory: str = SHM_DIR) -> None:
        self.max_bytes = max_bytes
        self.directory = directory
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[int, float]] = {}  # name -> (size, unclaimed since)
        self._stop = threading.Event()
        self.available = os.path.isdir(directory) and os.access(directory, os.W_OK)
        if self.available:
            self.remove_orphans()
            threading.Thread(target=self._reap_loop, name="shm-reaper", daemon=True).start()

    def remove_orphans(self) -> None:
        """Unlink the segments of daemons that are gone (killed before their reaper ran)."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        for name in names:
            pid = _pid_of(name) if name.startswith(PREFIX) else None
            if pid is not None and (pid == os.getpid() or not _alive(pid)):
                self._unlink(name)

    def write(
        self, shape: tuple[int, ...], dtype: np.dtype, pieces: Callable[[], Iterator[np.ndarray]]
    ) -> Segment | None:
        """A new segment holding, in order, the C-contiguous arrays ``pieces()`` yields (an
        array of ``shape`` and ``dtype`` in all); None when it would take the unclaimed bytes
        over the bound (stream it instead). Pieces are written by ``pwrite`` (the kernel fills
        the segment's pages: no page faults here) in a second thread while the next piece is
        read, so ``pieces`` may reuse a piece's buffer two pieces later, not sooner."""
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if not self.available or size <= 0:
            return None
        with self._lock:
            self._prune()
            if sum(s for s, _ in self._pending.values()) + size > self.max_bytes:
                return None
            name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(16)}"
            path = os.path.join(self.directory, name)
            # created under the lock: _prune must never see it registered but absent
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except OSError:
                return None  # /dev/shm refuses (full, read-only): the stream it is
            self._pending[name] = (size, float("inf"))  # held: never reaped until released
        try:
            try:
                written = _write_pieces(fd, pieces())
            finally:
                os.close(fd)
            if written != size:
                raise RuntimeError(f"a shared-memory read wrote {written} bytes of {size}")
        except BaseException:
            self.discard(name)
            raise
        return Segment(name, size, dtype.str, tuple(shape))  # held until released

    def claimed(self, name: str) -> bool:
        """Whether the client has unlinked the segment (or it is gone otherwise)."""
        return not os.path.lexists(os.path.join(self.directory, name))

    def release(self, names: Iterable[str]) -> None:
        """The stream of these segments ended: the ones still there are unlinked if nobody
        claims them within CLAIM_SECONDS."""
        now = time.monotonic()
        with self._lock:
            for name in names:
                if name in self._pending:
                    self._pending[name] = (self._pending[name][0], now)

    def discard(self, name: str) -> None:
        """Unlink a segment whose reply will not be sent."""
        with self._lock:
            self._pending.pop(name, None)
        self._unlink(name)

    def stop(self) -> None:
        """Unlink every unclaimed segment (daemon shutdown)."""
        self._stop.set()
        with self._lock:
            names = list(self._pending)
            self._pending.clear()
        for name in names:
            self._unlink(name)

    def _prune(self) -> None:
        """Forget the segments their clients have unlinked; unlink the overdue ones (lock held)."""
        now = time.monotonic()
        for name, (_, since) in list(self._pending.items()):
            path = os.path.join(self.directory, name)
            if not os.path.lexists(path):
                del self._pending[name]
            elif now - since > CLAIM_SECONDS:
                del self._pending[name]
                self._unlink(name)

    def _reap_loop(self) -> None:
        while not self._stop.wait(CLAIM_SECONDS / 4):
            with self._lock:
                self._prune()

    def _unlink(self, name: str) -> None:
        with contextlib.suppress(OSError):  # gone already, or not ours to remove
            os.unlink(os.path.join(self.directory, name))
