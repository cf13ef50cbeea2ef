"""A connection to a hoard daemon: the channel, its retry policy and the repositories on it."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc

from hoard.errors import HoardError, translate_rpc_errors
from hoard.repository import Repository
from hoard.v1 import objects_pb2_grpc, repositories_pb2, repositories_pb2_grpc

__all__ = ["DEFAULT_TARGET", "Client", "RepositoryInfo", "connect"]

DEFAULT_TARGET = "127.0.0.1:50051"
MAX_MESSAGE_BYTES = 64 << 20
# Requests up to this size stay buffered so that gRPC can replay them on UNAVAILABLE; a
# PutBatch (about 4 MiB) must fit or it would never be retried.
_RETRY_BUFFER_BYTES = 8 << 20

# Every method that may be replayed safely. Objects.Delete and EraseRepository are left out:
# replaying them could turn a success into a NOT_FOUND.
_IDEMPOTENT_METHODS: dict[str, tuple[str, ...]] = {
    "hoard.v1.Objects": (
        "Put",
        "PutBatch",
        "Read",
        "ReadRange",
        "ReadMany",
        "Has",
        "Stat",
        "List",
        "Info",
        "Maintain",
        "Verify",  # read-only
        "Backup",  # resumes where an interrupted run stopped
    ),
    "hoard.v1.Repositories": ("CreateRepository", "GetRepository", "ListRepositories"),
}


@dataclass(frozen=True)
class RepositoryInfo:
    """One repository hosted by the daemon; ``created_at`` is seconds since the epoch (UTC)."""

    name: str
    uuid: str
    key_format: str
    created_at: float


def service_config(retries: int) -> dict[str, Any]:
    """gRPC service config: retry idempotent methods on UNAVAILABLE with exponential backoff.

    ``retries`` is the number of attempts after the first; gRPC caps attempts at 5 in all.
    """
    if retries <= 0:
        return {"methodConfig": []}
    names = [
        {"service": service, "method": method}
        for service, methods in _IDEMPOTENT_METHODS.items()
        for method in methods
    ]
    policy = {
        "maxAttempts": min(retries + 1, 5),
        "initialBackoff": "0.1s",
        "maxBackoff": "5s",
        "backoffMultiplier": 2,
        # RESOURCE_EXHAUSTED is retried only when the daemon asks for it with a pushback
        # (a busy daemon); a full disk answers with a pushback that forbids retrying.
        "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
    }
    return {"methodConfig": [{"name": names, "retryPolicy": policy}]}


def channel_options(retries: int) -> list[tuple[str, Any]]:
    """The channel options every SDK connection uses."""
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.enable_retries", 1 if retries > 0 else 0),
        ("grpc.per_rpc_retry_buffer_size", _RETRY_BUFFER_BYTES),
        ("grpc.service_config", json.dumps(service_config(retries))),
    ]


def resolve_target(target: str | None) -> str:
    """``target``, else ``$HOARD_TARGET``, else 127.0.0.1:50051; a bare path means a unix socket."""
    target = target or os.environ.get("HOARD_TARGET") or DEFAULT_TARGET
    if target.startswith(("/", "./")):
        return f"unix:{target}"
    return target


def connect(
    target: str | None = None,
    *,
    timeout: float | None = 30.0,
    retries: int = 5,
    options: Sequence[tuple[str, Any]] | None = None,
    stream_timeout: float | None = None,
) -> Client:
    """Open a connection to a daemon at ``target`` ("host:port" or "unix:/path/sock").

    Without a target, ``$HOARD_TARGET`` or 127.0.0.1:50051 is used. ``timeout`` is the
    deadline of every unary call; streaming transfers (put, read, list, maintain) have no
    deadline unless ``stream_timeout`` is given. Idempotent calls are retried on UNAVAILABLE
    up to ``retries`` times with exponential backoff. ``options`` are extra gRPC channel
    options; they override the SDK's own. Connecting is lazy: nothing is sent until the
    first call, so an absent daemon shows up then as :class:`~hoard.errors.UnavailableError`.
    """
    resolved = resolve_target(target)
    merged = dict(channel_options(retries))
    merged.update(dict(options or ()))
    channel_options_list = list(merged.items())

    def open_channel() -> grpc.Channel:
        return grpc.insecure_channel(resolved, options=channel_options_list)

    return Client(
        open_channel(),
        target=resolved,
        timeout=timeout,
        retries=retries,
        stream_timeout=stream_timeout,
        reopen=open_channel,
    )


class Client:
    """A connection to one daemon; use as a context manager or call :meth:`close`.

    ``channel`` may be any ``grpc.Channel`` (for example one wrapped by
    ``grpc.intercept_channel``); :func:`connect` builds the usual one.

    ``close()`` releases the connection. A client made by :func:`connect` (or given a
    ``reopen`` factory) connects again on its next call, so a late call (an AiiDA storage
    finaliser erasing at exit, say) still works; one given only a channel raises
    :class:`~hoard.errors.HoardError` saying it was closed.
    """

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        target: str = "",
        timeout: float | None = 30.0,
        retries: int = 5,
        stream_timeout: float | None = None,
        reopen: Callable[[], grpc.Channel] | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self.retries = retries
        self._reopen = reopen
        self._lock = threading.Lock()
        self._use(channel)

    def _use(self, channel: grpc.Channel) -> None:
        self._channel: grpc.Channel | None = channel
        self._objects_stub = objects_pb2_grpc.ObjectsStub(channel)
        self._repositories_stub = repositories_pb2_grpc.RepositoriesStub(channel)

    def _ensure_open(self) -> None:
        if self._channel is not None:
            return
        with self._lock:
            if self._channel is not None:
                return
            if self._reopen is None:
                raise HoardError(
                    f"this hoard client for {self.target or 'its channel'} was closed; "
                    "connect again with hoard.connect()"
                )
            self._use(self._reopen())

    @property
    def objects_stub(self) -> objects_pb2_grpc.ObjectsStub:
        self._ensure_open()
        return self._objects_stub

    @property
    def repositories_stub(self) -> repositories_pb2_grpc.RepositoriesStub:
        self._ensure_open()
        return self._repositories_stub

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<hoard.Client target={self.target!r}>"

    def close(self) -> None:
        """Close the channel; calls still in flight are cancelled (see the class notes for
        calls made afterwards)."""
        with self._lock:
            channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    def repository(self, name: str = "default") -> Repository:
        """A handle on repository ``name`` (no call is made; it need not exist yet)."""
        return Repository(self, name)

    def create_repository(self, name: str) -> RepositoryInfo:
        """Create repository ``name``; creating one that exists returns it unchanged."""
        request = repositories_pb2.CreateRepositoryRequest(repository=name)
        with translate_rpc_errors():
            reply = self.repositories_stub.CreateRepository(request, timeout=self.timeout)
        return _info(reply)

    def get_repository(self, name: str) -> RepositoryInfo:
        """Describe repository ``name``; RepositoryNotFoundError when it does not exist."""
        request = repositories_pb2.GetRepositoryRequest(repository=name)
        with translate_rpc_errors():
            reply = self.repositories_stub.GetRepository(request, timeout=self.timeout)
        return _info(reply)

    def list_repositories(self) -> list[RepositoryInfo]:
        """Every repository the daemon hosts."""
        request = repositories_pb2.ListRepositoriesRequest()
        with translate_rpc_errors():
            reply = self.repositories_stub.ListRepositories(request, timeout=self.timeout)
        return [_info(r) for r in reply.repositories]

    def erase_repository(self, name: str) -> None:
        """Delete repository ``name`` and everything in it; RepositoryNotFoundError if absent."""
        request = repositories_pb2.EraseRepositoryRequest(repository=name)
        with translate_rpc_errors():
            self.repositories_stub.EraseRepository(request, timeout=self.timeout)


def _info(reply: repositories_pb2.RepositoryInfo) -> RepositoryInfo:
    return RepositoryInfo(
        name=reply.name, uuid=reply.uuid, key_format=reply.key_format, created_at=reply.created_at
    )
