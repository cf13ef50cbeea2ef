"""What long streams may take from the daemon: worker threads, time, response memory.

grpc's sync server runs every RPC on one of ``workers`` threads for its whole life, and a
streaming RPC waits on its client: a response stream blocks in grpc's send until the client
reads (the generator is resumed only once the previous message was handed on), a request
stream blocks in the request iterator until the client sends. So a client that stops
reading or sending pins a thread, and whatever memory the stream holds, for as long as it
likes. Three guards keep the daemon answering:

* stream slots: each kind of long stream ("read": Read, ReadMany, List and the dataset
  files' ListFiles, ExportFile, ZipFolder, and ReadData, and the metadata cache's Query,
  Signatures, ReadFile; "upload": Put, ImportFile, and the metadata cache's
  SynchronizeDirectory, AddFiles; "append": Append; "follow": Follow) may occupy only so
  many workers at once; the rest
  stay free for health checks and short calls.
  A stream over its kind's limit is refused at once with RESOURCE_EXHAUSTED;
* an idle watchdog cancels a stream that has waited on its client (to read the last message,
  or to send the next one) for longer than ``idle_timeout`` seconds. Time the daemon spends
  working between messages does not count;
* a daemon-wide budget of response bytes (``hoard_server.services.batching``): a stream
  reserves the bytes of a message before building it and releases them once grpc resumes
  the generator (the message was sent).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import TypeVar

import grpc

from hoard_server.errors import Overloaded
from hoard_server.services.batching import ResponseBudget

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M")


class Stream:
    """One long RPC under the watchdog; see ``StreamLimits.stream``.

    Several threads may serve one stream (an Append stream reads its client in one and
    commits and acknowledges in another). The watchdog's clock (``waiting_since``) runs while
    at least one of them waits on the client and none is ``working``; it restarts at each
    message received or sent (progress), so one thread's wait ending cannot hide another's."""

    def __init__(self, limits: StreamLimits, context: grpc.ServicerContext) -> None:
        self._limits = limits
        self.context = context
        self.waiting_since: float | None = None  # monotonic time the client began to stall us
        self.cancelled = False
        self._lock = threading.Lock()
        self._waits = 0  # threads waiting on the client
        self._work = 0  # threads doing the daemon's work for it

    def _update(self, waits: int, work: int, progress: bool) -> None:
        with self._lock:
            self._waits += waits
            self._work += work
            if self._work or not self._waits:
                self.waiting_since = None
            elif progress or self.waiting_since is None:
                self.waiting_since = time.monotonic()

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Mark a wait on the client; leaving it is progress (a message went or came)."""
        self._update(1, 0, False)
        try:
            yield
        finally:
            self._update(-1, 0, True)

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """Mark the daemon's work for the client (a commit it will acknowledge): the stream
        is not idle meanwhile, whatever its other threads wait for."""
        self._update(0, 1, False)
        try:
            yield
        finally:
            self._update(0, -1, True)

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
        self.budget = ResponseBudget(response_bytes, idle_timeout if idle_timeout > 0 else 60.0)
        self._streams: set[Stream] = set()
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        if idle_timeout > 0:
            self._watchdog = threading.Thread(
                target=self._watch, name="stream-watchdog", daemon=True
            )
            self._watchdog.start()

    @contextlib.contextmanager
    def stream(self, kind: str | None, context: grpc.ServicerContext) -> Iterator[Stream]:
        """Admit a long RPC of ``kind`` (None: no slot, watchdog only) for the block's
        duration; Overloaded at once when its kind has no slot free."""
        with self._lock:
            if kind is not None:
                if self._in_use[kind] >= self._slots[kind]:
                    raise Overloaded(
                        f"too many {kind} streams in progress (the limit is "
                        f"{self._slots[kind]}); retry shortly, or raise {self._settings[kind]}",
                        setting=self._settings[kind].split()[0],
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


__all__ = ["Stream", "StreamLimits"]
