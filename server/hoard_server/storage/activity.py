"""Operations in progress on one store, for shutdown, pack retirement and index swaps."""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Iterator

from hoard_server.errors import RepositoryNotFound


class Activity:
    """Operations in progress, so that shutdown and pack retirement can wait for them.

    Readers are counted per epoch. Retiring a pack (compaction) first switches the index,
    then opens a new epoch (``new_epoch``) and waits until every reader that began before it
    has finished (``readers_done``): only those can still hold a location in the old pack.
    A reader that resumes in a later epoch looks its object up again and finds its new
    place; within one epoch a location it found stays readable.

    Invariant: no hold is ever kept while waiting on a client (across a yield to the gRPC
    layer, or while waiting for an upload's next chunk); holds last only as long as the
    daemon's own work, so every wait on them ends.

    ``exclusive`` holds new operations back and waits for running ones to finish, for the
    brief moment the index file is swapped for a compacted copy.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._cond = threading.Condition()
        self._readers: dict[int, int] = {}
        self._others = 0
        self._epoch = 0
        self._closing = False
        self._paused = False
        self.started = 0  # operations begun so far: compaction backs off while this moves

    @contextlib.contextmanager
    def hold(self, reader: bool = True) -> Iterator[int]:
        """Count an operation in progress until the block ends; yields the reader epoch it
        began in. A location looked up under a hold of epoch ``e`` stays readable under
        any later hold of the same epoch: a pack is retired only after a new epoch opened."""
        with self._cond:
            while self._paused and not self._closing:
                self._cond.wait()
            if self._closing:
                raise RepositoryNotFound(self._name)  # closed or being erased
            epoch = self._epoch
            if reader:
                self._readers[epoch] = self._readers.get(epoch, 0) + 1
            else:
                self._others += 1
            self.started += 1
        try:
            yield epoch
        finally:
            with self._cond:
                if reader:
                    self._readers[epoch] -= 1
                    if not self._readers[epoch]:
                        del self._readers[epoch]
                else:
                    self._others -= 1
                self._cond.notify_all()

    @property
    def closing(self) -> bool:
        return self._closing

    def new_epoch(self) -> int:
        """Open a new reader epoch; return the one it closed (for ``readers_done``)."""
        with self._cond:
            epoch = self._epoch
            self._epoch += 1
            return epoch

    def readers_done(self, epoch: int, timeout: float | None = 0) -> bool:
        """Whether every reader of ``epoch`` or earlier has finished, waiting up to
        ``timeout`` seconds (None: for ever) for them."""
        with self._cond:
            return self._cond.wait_for(lambda: not any(e <= epoch for e in self._readers), timeout)

    def wait_for_readers(self, timeout: float | None = None) -> bool:
        """Open a new epoch and wait up to ``timeout`` for the readers of the ones before."""
        return self.readers_done(self.new_epoch(), timeout)

    @contextlib.contextmanager
    def exclusive(self, own_others: int, timeout: float) -> Iterator[bool]:
        """Hold new operations back until the block ends; yields whether everything else
        finished within ``timeout`` (if not, the caller should skip its work)."""
        with self._cond:
            self._paused = True
            drained = self._cond.wait_for(
                lambda: not self._readers and self._others <= own_others, timeout
            )
        try:
            yield drained
        finally:
            with self._cond:
                self._paused = False
                self._cond.notify_all()

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new operations and wait for running ones; False if some still ran after
        ``timeout`` seconds.

        An operation a client abandoned (a response generator suspended inside a hold) ends
        only when the generator is collected, which a reference cycle can put off until the
        cyclic collector runs: so collect while waiting."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            while self._readers or self._others:
                left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if left <= 0:
                    return False
                if not self._cond.wait(left):
                    gc.collect()  # finalizers re-enter hold() on this thread: the lock is an RLock
        return True
