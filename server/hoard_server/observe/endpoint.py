"""``/metrics`` over plain HTTP, served by prometheus_client's WSGI server on a daemon thread."""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.registry import CollectorRegistry


class CannotServeMetrics(ValueError):
    """The metrics address is malformed or cannot be bound (in use, not of this host)."""


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as (host, port); CannotServeMetrics if malformed."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise CannotServeMetrics(
            f"metrics_listen {address!r} is not host:port (for instance 127.0.0.1:9464)"
        )
    return host, int(port)


class MetricsEndpoint:
    """Serves ``registry`` at ``http://<address>/metrics`` from construction until ``stop``.

    Binding happens in the constructor, so a daemon whose metrics address is taken refuses
    to start (CannotServeMetrics) instead of running without the metrics it was asked for.
    """

    def __init__(self, address: str, registry: CollectorRegistry) -> None:
        host, port = split_address(address)
        try:
            self._server: WSGIServer
            self._server, self._thread = start_http_server(port, host, registry)
        except OSError as exc:
            raise CannotServeMetrics(
                f"cannot serve metrics on {address}: {exc.strerror or exc}; choose another "
                "metrics_listen (--metrics-listen), or leave it empty to serve none"
            ) from None
        self._thread.name = "metrics-http"
        bound_host, bound_port = self._server.server_address[:2]
        bound_host = bound_host.decode() if isinstance(bound_host, bytes) else str(bound_host)
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.address = f"{shown}:{bound_port}"  # a port 0 becomes the port chosen
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
