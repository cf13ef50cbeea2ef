"""The wire: the channel, the retry policy, and the one place that calls a method and turns
its failure into a :class:`~hoard.errors.HoardError`.

Which methods may be replayed is read from the protos (``option idempotency_level``), never
listed here. Each call is retried by exactly one layer: gRPC's own retry policy (the channel's
service config) for unary and server-streaming methods, whose requests gRPC can buffer; this
module for client-streaming uploads, which it replays from a rewound source of any size.

A daemon that restarts is waited for: once a transport has reached its daemon, calls with a
deadline are made ``wait_for_ready``, so one made (or retried) while the daemon is away
waits for it to come back, within its deadline. A daemon never reached fails the first call
at once, with gRPC's reason (refused, a TLS handshake that failed), instead of a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pb2

from hoard.errors import Endpoint, HoardError, from_rpc_error, retry_pushback
from hoard.v1 import (
    datasets_pb2,
    datasets_pb2_grpc,
    metadata_pb2,
    metadata_pb2_grpc,
    objects_pb2,
    objects_pb2_grpc,
    repositories_pb2,
    repositories_pb2_grpc,
)

__all__ = [
    "DEFAULT_TARGET",
    "METHODS",
    "Method",
    "RetryPolicy",
    "Transport",
    "channel_options",
    "is_local_target",
    "resolve_target",
    "service_config",
]

DEFAULT_TARGET = "127.0.0.1:50051"
MAX_MESSAGE_BYTES = 64 << 20
# Requests up to this size stay buffered so that gRPC can replay them; a PutBatch (about
# 4 MiB) must fit or it would never be retried.
RETRY_BUFFER_BYTES = 8 << 20
# An idle connection is pinged every 30 s, so that a workstation idle for hours keeps it
# (through NAT and firewalls that forget quiet connections) and notices within 40 s a
# daemon that went away. The daemon accepts pings every 10 s (hoard_server.daemon.main).
KEEPALIVE_TIME_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 10_000
# After a daemon restart, try to reconnect at least every 5 s (gRPC's default: up to 120 s).
MAX_RECONNECT_BACKOFF_MS = 5_000

# A daemon stopping cancels the calls it received but had not started (gRPC's server does,
# with no detail): gRPC replays those of replayable methods, which reach the daemon again
# once it is back. Not uploads: the daemon's idle watchdog cancels an upload whose client
# stalled, and replaying it would stall again.
SHUTDOWN_CODES = ("CANCELLED",)
_UNKNOWN = descriptor_pb2.MethodOptions.IdempotencyLevel.IDEMPOTENCY_UNKNOWN
_STUBS = {
    "Objects": objects_pb2_grpc.ObjectsStub,
    "Repositories": repositories_pb2_grpc.RepositoriesStub,
    "Datasets": datasets_pb2_grpc.DatasetsStub,
    "DatasetFiles": datasets_pb2_grpc.DatasetFilesStub,
    "MetadataCache": metadata_pb2_grpc.MetadataCacheStub,
}


@dataclass(frozen=True)
class Method:
    """One RPC of the hoard.v1 API, as its descriptor declares it."""

    service: str  # full name, "hoard.v1.Objects"
    name: str  # "Has"
    idempotency_level: int
    client_streaming: bool
    server_streaming: bool

    @property
    def replayable(self) -> bool:
        """Whether the proto declares it free of side effects or idempotent."""
        return self.idempotency_level != _UNKNOWN

    @property
    def stub_name(self) -> str:
        return self.service.rsplit(".", 1)[-1]


def _methods() -> dict[str, Method]:
    found: dict[str, Method] = {}
    for module in (objects_pb2, repositories_pb2, datasets_pb2, metadata_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                found[f"{service.name}.{m.name}"] = Method(
                    service.full_name,
                    m.name,
                    m.GetOptions().idempotency_level,
                    m.client_streaming,
                    m.server_streaming,
                )
    return found


METHODS: dict[str, Method] = _methods()
"""Every method of the API by ``"Service.Method"`` ("Objects.Has"), from the descriptors."""


@dataclass(frozen=True)
class RetryPolicy:
    """How a replayable call is retried: ``max_attempts`` in all (1: never), exponential
    backoff with jitter, on these status codes. RESOURCE_EXHAUSTED is retried only when the
    daemon sends a non-negative ``grpc-retry-pushback-ms`` (busy, not full)."""

    max_attempts: int = 6
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0
    codes: tuple[str, ...] = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")

    @classmethod
    def from_retries(cls, retries: int) -> RetryPolicy:
        return cls(max_attempts=max(1, retries + 1))

    def backoff(self, attempt: int) -> float:
        """The pause before retry number ``attempt`` (0-based), with +-20 % jitter."""
        pause = min(self.initial_backoff * self.multiplier**attempt, self.max_backoff)
        return pause * random.uniform(0.8, 1.2)


def service_config(policy: RetryPolicy) -> dict[str, Any]:
    """gRPC's service config: retry the replayable methods gRPC can buffer (all but
    client-streaming ones, which :meth:`Transport.upload` replays) on the policy's codes and
    :data:`SHUTDOWN_CODES`. gRPC caps attempts at 5."""
    names = [
        {"service": m.service, "method": m.name}
        for m in METHODS.values()
        if m.replayable and not m.client_streaming
    ]
    if policy.max_attempts <= 1 or not names:
        return {"methodConfig": []}
    retry = {
        "maxAttempts": min(policy.max_attempts, 5),
        "initialBackoff": f"{policy.initial_backoff}s",
        "maxBackoff": f"{policy.max_backoff}s",
        "backoffMultiplier": policy.multiplier,
        "retryableStatusCodes": [*policy.codes, *SHUTDOWN_CODES],
    }
    return {"methodConfig": [{"name": names, "retryPolicy": retry}]}


def channel_options(retries: int) -> list[tuple[str, Any]]:
    """The channel options every SDK connection uses."""
    policy = RetryPolicy.from_retries(retries)
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.enable_retries", 1 if policy.max_attempts > 1 else 0),
        ("grpc.per_rpc_retry_buffer_size", RETRY_BUFFER_BYTES),
        ("grpc.service_config", json.dumps(service_config(policy))),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),  # default 2: an idle client stops pinging
        ("grpc.client_idle_timeout_ms", 2**31 - 1),  # keep the connection, not only the channel
        ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
    ]


def resolve_target(target: str | None) -> str:
    """``target``, else ``$HOARD_TARGET``, else 127.0.0.1:50051; a bare path means a unix socket."""
    target = target or os.environ.get("HOARD_TARGET") or DEFAULT_TARGET
    if target.startswith(("/", "./")):
        return f"unix:{target}"
    return target


def is_local_target(target: str) -> bool:
    """Whether a gRPC target reaches a daemon on this machine: a unix socket or a loopback
    address ("127.0.0.1:50051", "localhost:1", "[::1]:2", "ipv4:127.0.0.1:3", ...)."""
    import ipaddress

    if target.startswith(("unix:", "unix-abstract:", "/")):
        return True
    rest = target
    for scheme in ("dns:", "ipv4:", "ipv6:"):
        if rest.startswith(scheme):
            rest = rest[len(scheme) :]
            break
    if rest.startswith("//"):  # dns://authority/host:port
        rest = rest[2:].partition("/")[2]
    rest = rest.split(",")[0]  # ipv4:a:1,b:2 -- judge the first address
    if rest.startswith("["):
        host = rest[1:].partition("]")[0]
    elif rest.count(":") > 1:  # a bare IPv6 address without a port
        host = rest
    else:
        host = rest.partition(":")[0]
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_DEFAULT: Any = object()  # "the transport's usual deadline for this kind of call"


@contextlib.contextmanager
def _translated(endpoint: Endpoint) -> Iterator[None]:
    try:
        yield
    except grpc.RpcError as error:
        raise from_rpc_error(error, endpoint) from None


class PendingCall:
    """A unary call in flight; :meth:`result` waits for the reply (errors translated)."""

    def __init__(self, future: Any, endpoint: Endpoint) -> None:
        self._future = future
        self._endpoint = endpoint

    def result(self) -> Any:
        with _translated(self._endpoint):
            return self._future.result()

    def cancel(self) -> None:
        self._future.cancel()


class BidiCall:
    """A bidirectional stream in flight: iterate it for the replies (errors translated);
    :meth:`cancel` ends it from this side."""

    def __init__(self, call: Any, endpoint: Endpoint) -> None:
        self._call = call
        self._endpoint = endpoint

    def __iter__(self) -> Iterator[Any]:
        with _translated(self._endpoint):
            yield from self._call

    def cancel(self) -> None:
        self._call.cancel()


class Transport:
    """A channel to one daemon and the calls made on it.

    ``timeout`` is the deadline of unary calls, ``stream_timeout`` that of streaming ones
    (None: none). ``metadata`` goes with every call (the bearer token); ``endpoint`` says
    how the daemon is reached, for error messages. ``close()`` releases the channel; with a
    ``reopen`` factory the next call connects again, without one it raises
    :class:`HoardError` saying the client was closed.
    """

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        target: str = "",
        timeout: float | None = 30.0,
        stream_timeout: float | None = None,
        retries: int = 5,
        reopen: Callable[[], grpc.Channel] | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        endpoint: Endpoint | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self.policy = RetryPolicy.from_retries(retries)
        self.endpoint = endpoint or Endpoint(target)
        self._metadata = tuple(metadata)
        self._reopen = reopen
        self._lock = threading.Lock()
        self._reached = False  # the daemon answered once: wait for it when it is away
        self._use(channel)

    def _use(self, channel: grpc.Channel) -> None:
        self._channel: grpc.Channel | None = channel
        self._stubs = {name: stub(channel) for name, stub in _STUBS.items()}

    def _answered(self) -> None:
        self._reached = True

    def _answered_if_ok(self, future: Any) -> None:
        if not future.cancelled() and future.exception() is None:
            self._answered()

    def _callable(self, name: str) -> tuple[Method, Any]:
        method = METHODS[name]
        if self._channel is None:
            with self._lock:
                if self._channel is None:
                    if self._reopen is None:
                        raise HoardError(
                            f"this hoard client for {self.target or 'its channel'} was closed; "
                            "connect again with hoard.connect()"
                        )
                    self._use(self._reopen())
        return method, getattr(self._stubs[method.stub_name], method.name)

    def _options(self, method: Method, timeout: Any) -> dict[str, Any]:
        """What every call passes besides its request: deadline, metadata, waiting."""
        if timeout is _DEFAULT:
            streaming = method.client_streaming or method.server_streaming
            timeout = self.stream_timeout if streaming else self.timeout
        return {
            "timeout": timeout,
            "metadata": self._metadata,
            # a call without a deadline would wait for a daemon gone for good, forever
            "wait_for_ready": self._reached and timeout is not None,
        }

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        with self._lock:
            channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    # -- calls ------------------------------------------------------------------------------

    def unary(self, name: str, request: Any, *, timeout: Any = _DEFAULT) -> Any:
        """Call a unary method; its reply."""
        method, call = self._callable(name)
        with _translated(self.endpoint):
            reply = call(request, **self._options(method, timeout))
        self._answered()
        return reply

    def unary_future(self, name: str, request: Any) -> PendingCall:
        """Start a unary call without waiting for it."""
        method, call = self._callable(name)
        future = call.future(request, **self._options(method, _DEFAULT))
        future.add_done_callback(self._answered_if_ok)
        return PendingCall(future, self.endpoint)

    def server_stream(
        self, name: str, request: Any, *, timeout: Any = _DEFAULT
    ) -> Generator[Any, None, None]:
        """The replies of a server-streaming call; closing the iterator early cancels it."""
        method, call = self._callable(name)
        stream = call(request, **self._options(method, timeout))
        try:
            with _translated(self.endpoint):
                for reply in stream:
                    self._answered()
                    yield reply
        finally:
            stream.cancel()

    def bidi(self, name: str, requests: Iterable[Any]) -> BidiCall:
        """Start a bidirectional-streaming call fed by ``requests`` (consumed in gRPC's own
        thread); iterate the returned call for the replies. Never retried: the caller knows
        how to resume."""
        method, call = self._callable(name)
        return BidiCall(call(requests, **self._options(method, _DEFAULT)), self.endpoint)

    def upload(
        self,
        name: str,
        requests: Callable[[], Iterable[Any]],
        *,
        rewind: Callable[[], object] | None = None,
    ) -> Any:
        """Call a client-streaming method with the messages ``requests()`` yields; its reply.

        When the method is replayable and ``rewind`` puts the source back where it started,
        a failure the policy retries starts the upload over (gRPC itself could replay only
        the first few MiB). An exception raised while producing the messages is re-raised
        as itself, not as the cancelled call it causes.
        """
        method, call = self._callable(name)
        attempts = self.policy.max_attempts if method.replayable and rewind is not None else 1
        for attempt in range(attempts):
            failures: list[BaseException] = []
            try:
                reply = call(_watched(requests(), failures), **self._options(method, _DEFAULT))
                self._answered()
                return reply
            except grpc.RpcError as error:
                if failures:
                    raise failures[0] from None
                pause = self._retry_pause(error, attempt)
                if pause is None or attempt + 1 >= attempts:
                    raise from_rpc_error(error, self.endpoint) from None
            time.sleep(pause)
            assert rewind is not None
            rewind()
        raise AssertionError("unreachable")  # pragma: no cover

    def _retry_pause(self, error: grpc.RpcError, attempt: int) -> float | None:
        """How long to wait before retrying ``error`` by the policy; None: do not retry."""
        code = error.code() if callable(getattr(error, "code", None)) else None
        if code is None or code.name not in self.policy.codes:
            return None
        pushback = retry_pushback(error)
        if pushback is not None:
            return pushback if pushback >= 0 else None
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
            return None  # a limit of gRPC itself (a message too large): replaying cannot help
        return self.policy.backoff(attempt)


def _watched(requests: Iterable[Any], failures: list[BaseException]) -> Iterator[Any]:
    # gRPC consumes this in its own thread and swallows what it raises; keep the exception
    # so that the caller sees the real cause instead of a cancelled call.
    try:
        yield from requests
    except Exception as exc:
        failures.append(exc)
        raise
