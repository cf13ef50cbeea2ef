"""What long streams may take from the daemon: worker threads, time, response memory.

grpc's sync server runs every RPC on one of ``workers`` threads for its whole life, and a
streaming RPC waits on its client: a response stream blocks in grpc's send until the client
reads (the generator is resumed only once the previous message was handed on), a request
stream blocks in the request iterator until the client sends. So a client that stops
reading or sending pins a thread, and whatever memory the stream holds, for as long as it
likes. Three guards keep the daemon answering:

* stream slots: each kind of long stream ("read": Read, ReadMany, List; "upload": Put) may
  occupy only so many workers at once; the rest stay free for health checks and short calls.
  A stream over its kind's limit is refused at once with RESOURCE_EXHAUSTED;
* an idle watchdog cancels a stream that has waited on its client (to read the last message,
  or to send the next one) for longer than ``idle_timeout`` seconds. Time the daemon spends
  working between messages does not count;
* a daemon-wide budget of response bytes: a stream reserves the bytes of a message before
  building it and releases them once grpc resumes the generator (the message was sent).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc

from hoard_server.errors import Overloaded

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M")


class ResponseBudget:
    """Bytes of response messages being built or in flight, daemon-wide.

    Deadlock freedom: a holder only ever waits for more while holding nothing (``reserve``
    flushes what it holds before it blocks), and holders release once their message is sent
    or their stream ends (a stalled one by the idle watchdog's cancel).
    """

    def __init__(self, total: int) -> None:
        self.total = total
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

    def acquire(self, n: int, timeout: float) -> int:
        """Reserve ``n`` bytes (at most the whole budget), waiting up to ``timeout`` seconds;
        Overloaded if they do not come free."""
        n = min(n, self.total)
        with self._cond:
            if not self._cond.wait_for(lambda: self._available >= n, timeout):
                raise Overloaded(
                    f"the daemon's response memory budget ({self.total} bytes) stayed in use "
                    f"for {timeout:.0f}s; try again, or raise response_memory_bytes "
                    "(HOARD_RESPONSE_MEMORY_BYTES, --response-memory-bytes)"
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


class Stream:
    """One long RPC under the watchdog; see ``StreamLimits.stream``."""

    def __init__(self, limits: StreamLimits, context: grpc.ServicerContext) -> None:
        self._limits = limits
        self.context = context
        self.waiting_since: float | None = None  # monotonic time we began waiting on the client
        self.cancelled = False

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Mark a wait on the client (the watchdog's clock runs only inside this)."""
        self.waiting_since = time.monotonic()
        try:
            yield
        finally:
            self.waiting_since = None

    def receive(self, requests: Iterator[T]) -> Iterator[T]:
        """The request stream, each wait for the client's next message watched."""
        while True:
            with self.waiting():
                msg = next(requests, None)
            if msg is None:
                return
            yield msg

    def send(self, messages: Iterator[tuple[M, int]]) -> Iterator[M]:
        """Yield each message of ``(message, reserved bytes)`` pairs to grpc and release its
        reservation when grpc resumes us, that is once the message was sent (or the stream
        ended)."""
        budget = self._limits.budget
        for msg, reserved in messages:
            try:
                with self.waiting():
                    yield msg
            finally:
                budget.release(reserved)


class StreamLimits:
    """Stream slots per kind, the idle watchdog and the response budget of one daemon."""

    def __init__(
        self,
        slots: dict[str, tuple[int, str]],
        idle_timeout: float,
        response_bytes: int,
    ) -> None:
        """``slots`` maps a kind to (limit, the setting that raises it)."""
        self._slots = {kind: limit for kind, (limit, _) in slots.items()}
        self._settings = {kind: setting for kind, (_, setting) in slots.items()}
        self._in_use = dict.fromkeys(slots, 0)
        self._lock = threading.Lock()
        self.idle_timeout = idle_timeout
        self.budget = ResponseBudget(response_bytes)
        self._streams: set[Stream] = set()
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        if idle_timeout > 0:
            self._watchdog = threading.Thread(
                target=self._watch, name="stream-watchdog", daemon=True
            )
            self._watchdog.start()

    @property
    def budget_wait(self) -> float:
        """How long a stream may wait for response budget before giving up."""
        return self.idle_timeout if self.idle_timeout > 0 else 60.0

    @contextlib.contextmanager
    def stream(self, kind: str | None, context: grpc.ServicerContext) -> Iterator[Stream]:
        """Admit a long RPC of ``kind`` (None: no slot, watchdog only) for the block's
        duration; Overloaded at once when its kind has no slot free."""
        with self._lock:
            if kind is not None:
                if self._in_use[kind] >= self._slots[kind]:
                    raise Overloaded(
                        f"too many {kind} streams in progress (the limit is "
                        f"{self._slots[kind]}); retry shortly, or raise {self._settings[kind]}"
                    )
                self._in_use[kind] += 1
            s = Stream(self, context)
            self._streams.add(s)
        try:
            yield s
        finally:
            with self._lock:
                self._streams.discard(s)
                if kind is not None:
                    self._in_use[kind] -= 1

    def hold_reply(self, context: grpc.ServicerContext, reserved: int) -> None:
        """A unary reply grpc keeps sending after the handler returned: its ``reserved``
        budget bytes are released when the RPC ends, and the watchdog cancels it if the
        client has not taken it within ``idle_timeout`` (so a client that asks and never
        reads cannot keep budget forever)."""
        s = Stream(self, context)
        s.waiting_since = time.monotonic()
        with self._lock:
            self._streams.add(s)

        def done() -> None:
            with self._lock:
                self._streams.discard(s)
            self.budget.release(reserved)

        if not context.add_callback(done):
            done()  # the RPC has already ended

    def _watch(self) -> None:
        period = min(1.0, self.idle_timeout / 4)
        while not self._stop.wait(period):
            now = time.monotonic()
            with self._lock:
                idle = [
                    s
                    for s in self._streams
                    if not s.cancelled
                    and s.waiting_since is not None
                    and now - s.waiting_since > self.idle_timeout
                ]
            for s in idle:
                s.cancelled = True
                log.info(
                    "cancelling a stream from %s: its client made no progress for %.0fs "
                    "(stream_idle_timeout)",
                    _peer(s.context),
                    self.idle_timeout,
                )
                # Cancelling the call (thread-safe in grpc core) wakes the worker blocked in
                # grpc's send or request iterator; the handler then unwinds and frees its slot.
                s.context.cancel()

    def close(self) -> None:
        self._stop.set()


def _peer(context: grpc.ServicerContext) -> str:
    try:
        return context.peer()
    except Exception:
        return "?"


def batch_messages(
    items: Iterator[T],
    size_of: Callable[[T], int],
    build: Callable[[list[T]], M],
    budget: ResponseBudget,
    wait: float,
    message_bytes: int,
    max_items: int = 1 << 30,
    send_empty: bool = False,
) -> Iterator[tuple[M, int]]:
    """Gather ``items`` into messages of about ``message_bytes``; yield (message, bytes
    reserved for it) for ``Stream.send`` to release.

    Each item's bytes are reserved before it joins a message. When the budget is short, the
    message gathered so far goes out first, so a stream never waits while holding a
    reservation. ``send_empty``: build one message even when there are no items.
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
                    out, held, pending, pending_bytes, sent = (build(pending), held), 0, [], 0, True
                    yield out
                got = budget.acquire(n, wait)
            held += got
            pending.append(item)
            pending_bytes += n
            if pending_bytes >= message_bytes or len(pending) >= max_items:
                out, held, pending, pending_bytes, sent = (build(pending), held), 0, [], 0, True
                yield out
        if pending or (send_empty and not sent):
            out, held = (build(pending), held), 0
            yield out
    finally:
        budget.release(held)


__all__ = ["Overloaded", "ResponseBudget", "Stream", "StreamLimits", "batch_messages"]
