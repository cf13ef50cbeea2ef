"""A connection to a hoard daemon: :func:`connect` builds one, :class:`Client` hands out the
repositories on it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import grpc

from hoard.admin import Repositories
from hoard.aiida import Repository
from hoard.credentials import Credentials
from hoard.datasets import Datasets
from hoard.errors import Endpoint
from hoard.metadata.client import MetadataCache
from hoard.reports import RepositoryInfo
from hoard.transport import DEFAULT_TARGET, Transport, channel_options, resolve_target

__all__ = ["DEFAULT_TARGET", "Client", "RepositoryInfo", "connect"]


def connect(
    target: str | None = None,
    *,
    token: str | None = None,
    token_file: str | None = None,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_server_name: str | None = None,
    insecure: bool = False,
    timeout: float | None = 30.0,
    retries: int = 5,
    options: Sequence[tuple[str, Any]] | None = None,
    stream_timeout: float | None = None,
) -> Client:
    """Open a connection to a daemon at ``target`` ("host:port" or "unix:/path/sock").

    Without a target, ``$HOARD_TARGET`` or 127.0.0.1:50051 is used. ``timeout`` is the
    deadline of every unary call; streaming transfers (put, read, list, maintain) have no
    deadline unless ``stream_timeout`` is given. Calls the protos declare idempotent are
    retried on UNAVAILABLE (and when a busy daemon asks for it) up to ``retries`` times with
    exponential backoff; once the daemon was reached, a call with a deadline made while it
    restarts waits for it. ``options`` are extra gRPC channel options; they override the
    SDK's own. Connecting is lazy: an absent daemon shows up at the first call, as
    :class:`~hoard.errors.UnavailableError` (:class:`~hoard.errors.TLSError` when the TLS
    handshake fails).

    Security, each argument else its variable: ``token`` (``HOARD_TOKEN``) or ``token_file``
    (``HOARD_TOKEN_FILE``, a file holding it: out of shell history and ``ps``) is sent as a
    bearer token with every call. ``tls_ca`` (``HOARD_TLS_CA``): TLS, the daemon's
    certificate checked against this CA; ``tls_cert`` and ``tls_key`` (``HOARD_TLS_CERT``,
    ``HOARD_TLS_KEY``): a client certificate too (mutual TLS); ``tls_server_name``
    (``HOARD_TLS_SERVER_NAME``): the name the daemon's certificate must have, when the
    target's host is not it. A token over plain TCP to another host is refused
    (:class:`~hoard.errors.ConnectionSettingsError`) unless ``insecure`` is true.
    """
    resolved = resolve_target(target)
    credentials = Credentials.resolve(
        token=token,
        token_file=token_file,
        tls_ca=tls_ca,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_server_name=tls_server_name,
    )
    credentials.check(resolved, insecure=insecure)
    merged = dict(channel_options(retries))
    merged.update(dict(options or ()))

    def open_channel() -> grpc.Channel:
        return credentials.channel(resolved, list(merged.items()))

    return Client(
        open_channel(),
        target=resolved,
        timeout=timeout,
        retries=retries,
        stream_timeout=stream_timeout,
        reopen=open_channel,
        metadata=credentials.metadata(),
        endpoint=credentials.endpoint(resolved),
    )


class Client:
    """A connection to one daemon; use as a context manager or call :meth:`close`.

    ``channel`` may be any ``grpc.Channel`` (one wrapped by ``grpc.intercept_channel``, say);
    :func:`connect` builds the usual one. ``close()`` releases the connection. A client made
    by :func:`connect` (or given a ``reopen`` factory) connects again on its next call, so a
    late call (an AiiDA storage finaliser erasing at exit) still works; one given only a
    channel raises :class:`~hoard.errors.HoardError` saying it was closed. ``metadata``
    goes with every call; ``endpoint`` says how the daemon is reached, for error messages.
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
        metadata: Sequence[tuple[str, str]] = (),
        endpoint: Endpoint | None = None,
    ) -> None:
        self.transport = Transport(
            channel,
            target=target,
            timeout=timeout,
            stream_timeout=stream_timeout,
            retries=retries,
            reopen=reopen,
            metadata=metadata,
            endpoint=endpoint,
        )
        self.repositories = Repositories(self.transport)

    @property
    def target(self) -> str:
        return self.transport.target

    @property
    def timeout(self) -> float | None:
        return self.transport.timeout

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
        """Close the channel; calls still in flight are cancelled."""
        self.transport.close()

    def repository(self, name: str = "default") -> Repository:
        """A handle on repository ``name`` (no call is made; it need not exist yet)."""
        return Repository(self, name)

    def datasets(
        self, repository: str = "default", *, shared_memory: bool | None = None
    ) -> Datasets:
        """The HDF5 files (datasets face) of ``repository`` (no call is made).
        ``shared_memory``: large reads through /dev/shm (None: when the daemon is on this
        host; they fall back to the stream by themselves)."""
        return Datasets(self.transport, repository, shared_memory=shared_memory)

    def metadata(
        self, repository: str = "default", *, machine_id: str | None = None
    ) -> MetadataCache:
        """The metadata cache of ``repository`` (no call is made). ``machine_id`` names this
        machine's records (None: ``$HOARD_MACHINE_ID``, else "" when the daemon runs here,
        else the host name)."""
        return MetadataCache(self.transport, repository, machine_id=machine_id)

    def create_repository(self, name: str) -> RepositoryInfo:
        """Create repository ``name``; creating one that exists returns it unchanged."""
        return self.repositories.create(name)

    def get_repository(self, name: str) -> RepositoryInfo:
        """Describe repository ``name``; RepositoryNotFoundError when it does not exist."""
        return self.repositories.get(name)

    def list_repositories(self) -> list[RepositoryInfo]:
        """Every repository the daemon hosts."""
        return self.repositories.list()

    def erase_repository(self, name: str) -> None:
        """Delete repository ``name`` and everything in it; RepositoryNotFoundError if absent."""
        self.repositories.erase(name)
