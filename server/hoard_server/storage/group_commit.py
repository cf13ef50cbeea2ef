"""Group commit: one writer thread turns many callers' submissions into few commits.

Callers on any thread ``submit`` a list of items and get a future. The writer thread takes
the first waiting submission, gathers every other one already queued (up to a byte budget),
and hands all their items to ``commit`` at once: one fsync and one transaction for the
lot, however many callers took part. The future of each submission resolves to that
submission's slice of the results only after ``commit`` returned, i.e. once everything is
durable; if ``commit`` raises, every submission of the group fails with that error.

Nothing here knows what an item is: the pack writer commits records, but any durable
batch (say, a metadata log) can use the same thread.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Submission(Generic[T]):
    items: Sequence[T]
    then: Callable[[], None] | None = None  # run on the writer thread after the commit
    future: Future = field(default_factory=Future)


class GroupCommit(Generic[T, R]):
    """A writer thread calling ``commit(items) -> results`` (one result per item) per group.

    ``size_of(item)`` counts against ``group_bytes``: a group stops gathering past it.
    ``quiet`` exception types fail the group without an error log (e.g. a full disk).
    """

    def __init__(
        self,
        commit: Callable[[list[T]], list[R]],
        name: str,
        size_of: Callable[[T], int] = lambda item: 0,
        group_bytes: int = 64 << 20,
        quiet: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._commit = commit
        self._size_of = size_of
        self._group_bytes = group_bytes
        self._quiet = quiet
        self._queue: queue.SimpleQueue[_Submission[T] | None] = queue.SimpleQueue()
        self._closed = False
        self.groups_committed = 0  # commits made so far (each: one fsync, one transaction)
        self.items_committed = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, items: Sequence[T], then: Callable[[], None] | None = None) -> Future:
        """Queue ``items``; the future resolves to their results once committed.

        ``then`` runs on the writer thread right after the group holding these items
        committed, and the group ends there: later submissions go to the next commit.
        """
        if self._closed:
            raise RuntimeError("the repository is closed")
        sub = _Submission(items, then)
        self._queue.put(sub)
        return sub.future

    def close(self) -> None:
        """Commit everything queued, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()

    def _gather(self) -> tuple[list[_Submission[T]], bool]:
        """The next group and whether the thread should stop after it."""
        first = self._queue.get()
        if first is None:
            return [], True
        group = [first]
        size = sum(map(self._size_of, first.items))
        while size < self._group_bytes and group[-1].then is None:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                return group, True
            group.append(nxt)
            size += sum(map(self._size_of, nxt.items))
        return group, False

    def _run(self) -> None:
        stop = False
        while not stop:
            group, stop = self._gather()
            if not group:
                return
            try:
                items = [item for s in group for item in s.items]
                results = self._commit(items) if items else []
                for s in group:
                    if s.then is not None:
                        s.then()
            except BaseException as exc:  # the group failed as a whole; callers retry
                if not isinstance(exc, self._quiet):
                    log.exception("group commit failed")
                for s in group:
                    s.future.set_exception(exc)
                continue
            self.groups_committed += 1
            self.items_committed += len(items)
            i = 0
            for s in group:
                n = len(s.items)
                s.future.set_result(results[i : i + n])
                i += n
