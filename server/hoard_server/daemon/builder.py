"""Build a gRPC server from listen addresses, credentials, interceptors, options and services.

Nothing here knows hoard's services: they arrive as (name, servicer, add-function) rows, so
TLS (``credentials``) and authentication (an interceptor) can be added without touching them.

Probes: grpc's sync server runs every call on one thread pool, so with every worker busy
(say, with slow uploads) a health check would queue behind them and the orchestrator would
restart a daemon that is merely loaded. Methods named as probes run on a small pool of their
own instead, through the same hook grpc's health service uses for ``Watch``: a method
behaviour carrying an ``experimental_thread_pool`` is submitted to that pool.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc

from hoard_server.grpc.interceptors.handlers import KINDS

C = TypeVar("C")


class CannotListen(ValueError):
    """A listen address that cannot be bound (in use, or not an address of this host)."""


@dataclass(frozen=True)
class Service(Generic[C]):
    """One row of a service table: a gRPC service and how a daemon makes and adds it."""

    name: str  # full service name, e.g. "hoard.v1.Objects"
    factory: Callable[[C], Any]  # makes the servicer from the daemon's context
    add: Callable[[Any, grpc.Server], None]  # the generated add_*Servicer_to_server
    probes: tuple[str, ...] = ()  # methods answered on the probe pool, e.g. ("Check",)


class ProbeRouting(grpc.ServerInterceptor):
    """Sends the calls of ``methods`` (``/package.Service/Method``) to ``pool``.

    Must be the outermost interceptor: grpc picks the pool from the behaviour it finally
    gets, so interceptors after this one may wrap the behaviour freely.
    """

    def __init__(self, methods: Iterable[str], pool: ThreadPoolExecutor) -> None:
        self._methods = frozenset(methods)
        self._pool = pool

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method not in self._methods:
            return handler
        changes = {
            kind: self._on_pool(getattr(handler, kind))
            for kind in KINDS
            if getattr(handler, kind) is not None
        }
        return handler._replace(**changes)

    def _on_pool(self, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            return behaviour(*args, **kwargs)

        run.experimental_thread_pool = self._pool  # type: ignore[attr-defined]
        return run


class RpcServer:
    """A built server: start it, see where it listens, stop it gracefully."""

    def __init__(
        self,
        server: grpc.Server,
        addresses: list[str],
        names: tuple[str, ...],
        pools: Sequence[ThreadPoolExecutor],
    ) -> None:
        self.grpc = server
        self.addresses = addresses
        self.names = names  # the services it serves
        self._pools = pools

    def start(self) -> None:
        self.grpc.start()

    def stop(self, grace: float) -> None:
        """Refuse new calls, give in-flight ones ``grace`` seconds, then release the pools."""
        self.grpc.stop(grace).wait()
        for pool in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)


class ServerBuilder:
    """Collects services, then binds and builds a :class:`RpcServer`.

    ``credentials`` None listens without TLS; otherwise every TCP address is bound with them
    (unix sockets stay plain: their file mode guards them, as :meth:`secure` tells).
    ``interceptors`` run in the order given, after the probe routing. Unix sockets are made
    mode 0600, or 0660 and owned by ``socket_group`` (a group id) when given.
    """

    def __init__(
        self,
        workers: int,
        *,
        credentials: grpc.ServerCredentials | None = None,
        interceptors: Sequence[grpc.ServerInterceptor] = (),
        options: Sequence[tuple[str, Any]] = (),
        probe_workers: int = 2,
        socket_group: int | None = None,
    ) -> None:
        self.workers = workers
        self.socket_group = socket_group
        self.credentials = credentials
        self.interceptors = list(interceptors)
        self.options = list(options)
        self.probe_workers = probe_workers
        self._services: list[tuple[str, Any, Callable[[Any, grpc.Server], None]]] = []
        self._probes: list[str] = []

    def add(
        self,
        name: str,
        servicer: Any,
        add_to_server: Callable[[Any, grpc.Server], None],
        probes: Iterable[str] = (),
    ) -> ServerBuilder:
        self._services.append((name, servicer, add_to_server))
        self._probes += [f"/{name}/{method}" for method in probes]
        return self

    def add_table(self, table: Iterable[Service[C]], context: C) -> ServerBuilder:
        """Every row of a service table, its servicer made from ``context``."""
        for row in table:
            self.add(row.name, row.factory(context), row.add, row.probes)
        return self

    def build(self, listen: Sequence[str]) -> RpcServer:
        workers = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="rpc")
        pools = [workers]
        interceptors = list(self.interceptors)
        if self._probes:
            probe_pool = ThreadPoolExecutor(self.probe_workers, thread_name_prefix="probe")
            pools.append(probe_pool)
            interceptors.insert(0, ProbeRouting(self._probes, probe_pool))
        server = grpc.server(workers, interceptors=interceptors, options=self.options)
        for _name, servicer, add_to_server in self._services:
            add_to_server(servicer, server)
        addresses = [self._bind(server, address) for address in listen]
        names = tuple(name for name, _, _ in self._services)
        return RpcServer(server, addresses, names, pools)

    def secure(self, address: str) -> bool:
        """Whether ``address`` is served with TLS: every TCP address when there are credentials."""
        return self.credentials is not None and not address.startswith("unix")

    def _bind(self, server: grpc.Server, address: str) -> str:
        """Bind one address; the address it got (a TCP port 0 becomes the port chosen)."""
        cannot = CannotListen(
            f"cannot listen on {address} (in use, or not an address of this host)"
        )
        socket_path = unix_socket_path(address)
        # grpc binds and listens here, before the server starts: a socket made with the
        # usual umask could take connections (queued until start) before its mode is set.
        umask = os.umask(0o177) if socket_path else None
        try:
            if self.credentials is None or not self.secure(address):
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, self.credentials)
        except RuntimeError:  # newer grpc raises where older returned 0
            raise cannot from None
        finally:
            if umask is not None:
                os.umask(umask)
        if socket_path:
            if self.socket_group is not None:
                os.chown(socket_path, -1, self.socket_group)
                os.chmod(socket_path, 0o660)
            else:
                os.chmod(socket_path, 0o600)
        if address.startswith("unix"):
            return address
        if port == 0:
            raise cannot
        return f"{address.rsplit(':', 1)[0]}:{port}"


def unix_socket_path(address: str) -> str | None:
    """The file of a ``unix:`` address (``unix:path``, ``unix:/abs`` or ``unix:///abs``);
    None for TCP and abstract sockets, which have no file."""
    if not address.startswith("unix:"):
        return None
    path = address[len("unix:") :]
    return path[2:] if path.startswith("//") else path
