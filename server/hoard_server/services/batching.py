"""Response memory: a daemon-wide budget of bytes in replies, and batching under it.

A reply's bytes are reserved before it is built and released once the transport has sent it
(``Batch.reserved`` says how many), so that clients that ask and never read cannot make the
daemon hold replies without bound. Plain Python: the transport decides when a batch is sent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from hoard_server.errors import Overloaded

T = TypeVar("T")


class ResponseBudget:
    """Bytes of replies being built or in flight, daemon-wide.

    ``wait``: how long a reservation may wait for bytes to come free before Overloaded.
    Deadlock freedom: a holder only ever waits for more while holding nothing (``batches``
    hands out what it holds before it blocks), and holders release once their reply is sent
    or their call ends.
    """

    def __init__(self, total: int, wait: float = 60.0) -> None:
        self.total = total
        self.wait = wait
        self._available = total
        self._cond = threading.Condition()

    def try_acquire(self, n: int) -> int:
        """Reserve ``n`` bytes (at most the whole budget) if free now; the amount, or 0."""
        n = min(n, self.total)
        with self._cond:
            if self._available >= n:
                self._available -= n
                return n
            return 0

    def acquire(self, n: int, timeout: float | None = None) -> int:
        """Reserve ``n`` bytes (at most the whole budget), waiting up to ``timeout`` seconds
        (default ``wait``); Overloaded if they do not come free."""
        n = min(n, self.total)
        timeout = self.wait if timeout is None else timeout
        with self._cond:
            if not self._cond.wait_for(lambda: self._available >= n, timeout):
                raise Overloaded(
                    f"the daemon's response memory budget ({self.total} bytes) stayed in use "
                    f"for {timeout:.0f}s; try again, or raise response_memory_bytes "
                    "(HOARD_RESPONSE_MEMORY_BYTES, --response-memory-bytes)",
                    setting="response_memory_bytes",
                )
            self._available -= n
            return n

    def release(self, n: int) -> None:
        if n:
            with self._cond:
                self._available += n
                self._cond.notify_all()

    @property
    def in_use(self) -> int:
        return self.total - self._available


@dataclass(frozen=True, slots=True)
class Batch(Generic[T]):
    """Items for one reply message, and the budget bytes the sender releases once sent."""

    items: list[T]
    reserved: int


def batches(
    items: Iterator[T],
    size_of: Callable[[T], int],
    budget: ResponseBudget,
    message_bytes: int,
    max_items: int = 1 << 30,
    send_empty: bool = False,
) -> Iterator[Batch[T]]:
    """Gather ``items`` into batches of about ``message_bytes`` (and at most ``max_items``).

    Each item's bytes are reserved before it joins a batch. When the budget is short, the
    batch gathered so far goes out first, so that a caller never waits while holding a
    reservation. ``send_empty``: one (empty) batch even when there are no items. Bytes of a
    batch not yet handed out are released if the consumer stops early.
    """
    pending: list[T] = []
    pending_bytes = held = 0
    sent = False
    try:
        for item in items:
            n = size_of(item)
            got = budget.try_acquire(n)
            if n and not got:
                if pending:
                    out, held, pending, pending_bytes, sent = Batch(pending, held), 0, [], 0, True
                    yield out
                got = budget.acquire(n)
            held += got
            pending.append(item)
            pending_bytes += n
            if pending_bytes >= message_bytes or len(pending) >= max_items:
                out, held, pending, pending_bytes, sent = Batch(pending, held), 0, [], 0, True
                yield out
        if pending or (send_empty and not sent):
            out, held = Batch(pending, held), 0
            yield out
    finally:
        budget.release(held)
