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
  A stream over its kind's limit is refused at once with RESOURCE_EXHAUSTED, and so is one
  that would give one client more than ``streams_per_client`` streams of any kind (reason
  TOO_MANY_STREAMS): a client is its token's name; without authentication, a remote peer's
  host (its IP address), so one busy workstation cannot take every slot from the others, and
  a loopback peer's connection (every process of this host shares its address). Unix-socket
  peers without a token are not told apart (gRPC names none of them), so only the slots per
  kind bound them;
* an idle watchdog cancels a stream that has waited on its client (to read the last message,
  or to send the next one) for longer than ``idle_timeout`` seconds. Time the daemon spends
  working between messages does not count;
* a default deadline (``default_deadline``) for streams whose client set none: the watchdog
  ends such a stream with DEADLINE_EXCEEDED once it has lasted that long, as gRPC itself
  does with a deadline the client sets. It covers the streams above (and Maintain, Verify,
  Backup), not unary calls: those hold a worker only for the daemon's own work, never
  while waiting on a client;
* a daemon-wide budget of response bytes (``hoard_server.services.batching``): a stream
  reserves the bytes of a message before building it and releases them once grpc resumes
  the generator (the message was sent).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import threading
import time
from collections.abc import Iterator
from typing import TypeVar
from urllib.parse import unquote

import grpc

from hoard_server.errors import Overloaded
from hoard_server.grpc import call
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

    def __init__(
        self,
        limits: StreamLimits,
        context: grpc.ServicerContext,
        client: str = "",
        ends_at: float | None = None,
    ) -> None:
        self._limits = limits
        self.context = context
        self.client = client
        self.ends_at = ends_at  # monotonic time the default deadline passes; None: no such
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

    def send_reserving(self, messages: Iterator[M], each: int) -> Iterator[M]:
        """``send`` for messages that cannot tell their size before they are built (pages
        of query results): ``each`` bytes of the budget are reserved before the next one is
        built, so stalled streams cannot each hold a message beyond the budget."""
        budget = self._limits.budget

        def reserved() -> Iterator[tuple[M, int]]:
            while True:
                n = budget.acquire(each)
                try:
                    msg = next(messages)
                except StopIteration:
                    budget.release(n)
                    return
                except BaseException:
                    budget.release(n)
                    raise
                yield msg, n

        return self.send(reserved())


class StreamLimits:
    """Stream slots per kind, the idle watchdog and the response budget of one daemon."""

    def __init__(
        self,
        slots: dict[str, tuple[int, str]],
        idle_timeout: float,
        response_bytes: int,
        per_client: tuple[int, str] = (0, "streams_per_client"),
        default_deadline: float = 0.0,
    ) -> None:
        """``slots`` maps a kind to (limit, the setting that raises it); ``per_client`` is
        the streams one client may hold (0: no limit) and the setting that raises it;
        ``default_deadline`` the seconds a stream without a deadline may last (0: forever)."""
        self._slots = {kind: limit for kind, (limit, _) in slots.items()}
        self._settings = {kind: setting for kind, (_, setting) in slots.items()}
        self._in_use = dict.fromkeys(slots, 0)
        self._per_client, self._per_client_setting = per_client
        self._by_client: dict[str, int] = {}
        self._lock = threading.Lock()
        self.idle_timeout = idle_timeout
        self.default_deadline = default_deadline
        self.budget = ResponseBudget(response_bytes, idle_timeout if idle_timeout > 0 else 60.0)
        self._streams: set[Stream] = set()
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        if idle_timeout > 0 or default_deadline > 0:
            self._watchdog = threading.Thread(
                target=self._watch, name="stream-watchdog", daemon=True
            )
            self._watchdog.start()

    @contextlib.contextmanager
    def stream(self, kind: str | None, context: grpc.ServicerContext) -> Iterator[Stream]:
        """Admit a long RPC of ``kind`` (None: no slot of a kind, watchdog and the client's
        count only) for the block's duration; Overloaded at once when its kind has no slot
        free, or its client holds ``streams_per_client`` streams already."""
        client = client_of(context)
        ends_at = None
        if self.default_deadline > 0 and not _has_deadline(context):
            ends_at = time.monotonic() + self.default_deadline
        with self._lock:
            held = self._by_client.get(client, 0)
            if self._per_client and held >= self._per_client and client != UNIX_PEERS:
                raise Overloaded(
                    f"{client} already has {held} streams in progress (the limit per client "
                    f"is {self._per_client}); finish some first, retry shortly, or raise "
                    f"{self._per_client_setting}",
                    reason="TOO_MANY_STREAMS",
                    setting=self._per_client_setting.split()[0],
                    client=client,
                    limit=self._per_client,
                )
            if kind is not None:
                if self._in_use[kind] >= self._slots[kind]:
                    raise Overloaded(
                        f"too many {kind} streams in progress (the limit is "
                        f"{self._slots[kind]}); retry shortly, or raise {self._settings[kind]}",
                        setting=self._settings[kind].split()[0],
                    )
                self._in_use[kind] += 1
            self._by_client[client] = held + 1
            s = Stream(self, context, client, ends_at)
            self._streams.add(s)
        try:
            yield s
        finally:
            with self._lock:
                self._streams.discard(s)
                if kind is not None:
                    self._in_use[kind] -= 1
                left = self._by_client[client] - 1
                if left:
                    self._by_client[client] = left
                else:
                    del self._by_client[client]

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
        period = min(1.0, *(t / 4 for t in (self.idle_timeout, self.default_deadline) if t > 0))
        while not self._stop.wait(period):
            now = time.monotonic()
            with self._lock:
                live = [s for s in self._streams if not s.cancelled]
            for s in live:
                if s.ends_at is not None and now >= s.ends_at:
                    s.cancelled = True
                    _end_at_deadline(s.context, self.default_deadline)
            idle = [
                s
                for s in live
                if not s.cancelled
                and self.idle_timeout > 0
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


_NO_DEADLINE = 10 * 365 * 86400.0  # gRPC reports a call without deadline as ending in ages


def _has_deadline(context: grpc.ServicerContext) -> bool:
    try:
        return context.time_remaining() < _NO_DEADLINE
    except Exception:
        return True  # no clock to go by: leave the call alone


def _end_at_deadline(context: grpc.ServicerContext, seconds: float) -> None:
    """End a call with DEADLINE_EXCEEDED from outside its handler (which may be blocked
    sending to, or waiting for, its client), as gRPC core ends a call whose client-set
    deadline passed. The status is set through grpc's cython call object, the one way to
    cancel with a status; a grpc without it gets a plain cancel (CANCELLED)."""
    message = (
        f"the call lasted the daemon's default deadline of {seconds:g} s (default_deadline); "
        "set a deadline of your own for longer calls"
    )
    log.info("ending a stream from %s: %s", _peer(context), message)
    try:
        from grpc._cython import cygrpc

        context._rpc_event.call.cancel(cygrpc.StatusCode.deadline_exceeded, message)
    except Exception:
        context.cancel()


UNIX_PEERS = "unix-socket peers"  # not told apart: no per-client limit


def client_of(context: grpc.ServicerContext) -> str:
    """Who a call counts against: ``token <name>`` once authenticated, else ``host <ip>``
    for a remote peer, ``connection <ip>:<port>`` for a loopback one (the host's processes
    share its address), and ``UNIX_PEERS`` for a unix socket's."""
    current = call.current()
    if current is not None and current.token:
        return f"token {current.token}"
    peer = current.peer if current is not None else _peer(context)
    kind, _, address = unquote(peer).partition(":")  # grpc may write "ipv6:%5B::1%5D:5000"
    if kind.startswith("unix"):
        return UNIX_PEERS
    host = address.rsplit(":", 1)[0] if kind in ("ipv4", "ipv6") else address
    host = host.strip("[]") or peer
    if _is_loopback(host):
        return f"connection {address}"
    return f"host {host}"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _peer(context: grpc.ServicerContext) -> str:
    try:
        return context.peer()
    except Exception:
        return "?"


__all__ = ["Stream", "StreamLimits", "client_of"]
