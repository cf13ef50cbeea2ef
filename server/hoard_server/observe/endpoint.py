"""``/metrics`` over HTTP, or HTTPS (mutual TLS too).

prometheus_client renders the page (``make_wsgi_app``); the server around it is ours,
because a scraper is a client like any other and may be hostile. prometheus_client's own
server starts a thread per connection without bound and, with TLS, does the handshake in
its accept loop, so one connection that never speaks stalls every scrape. Here:

- at most ``SLOTS`` connections are served at once, each on a thread of its own; one more
  is closed at once (a scraper tries again at its next interval);
- every connection has ``TIMEOUT`` seconds per read and write, the TLS handshake included,
  which happens on the connection's thread, never in the accept loop.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import make_wsgi_app
from prometheus_client.registry import CollectorRegistry

log = logging.getLogger(__name__)

SLOTS = 8  # connections served at once
TIMEOUT = 10.0  # seconds a connection may take per read or write (Prometheus: 10 s per scrape)


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


@dataclass(frozen=True)
class MetricsTLS:
    """The certificate and key to serve with; ``client_ca``: scrapers must present a
    certificate it signed."""

    cert: str
    key: str
    client_ca: str = ""

    def context(self) -> ssl.SSLContext:
        """The server's TLS context (TLS 1.2 at least); OSError/SSLError if a file is
        unusable."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        if self.client_ca:
            context.load_verify_locations(self.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every few seconds is not news


class _Server(WSGIServer):
    """A WSGI server with bounded connection threads, timeouts, and TLS off the accept loop."""

    def __init__(
        self, address: tuple[Any, ...], family: int, tls: ssl.SSLContext | None
    ) -> None:
        self.address_family = family
        self._tls = tls
        self._slots = threading.BoundedSemaphore(SLOTS)
        super().__init__(address, _Quiet)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # busy: closed now rather than queued
            return
        threading.Thread(
            target=self._serve, args=(request, client_address), name="metrics-http", daemon=True
        ).start()

    def _serve(self, request: socket.socket, client_address: Any) -> None:
        conn = request
        try:
            request.settimeout(TIMEOUT)
            if self._tls is not None:
                conn = self._tls.wrap_socket(request, server_side=True)  # the handshake
            self.finish_request(conn, client_address)
        except (OSError, ValueError) as exc:  # a timeout, a failed handshake, a reset
            log.debug("metrics connection from %s ended: %s", client_address, exc)
        finally:
            self.shutdown_request(conn)
            self._slots.release()


class MetricsEndpoint:
    """Serves ``registry`` at ``http(s)://<address>/metrics`` from construction until
    ``stop``; HTTPS with ``tls``.

    Binding happens in the constructor, so a daemon whose metrics address is taken refuses
    to start (CannotServeMetrics) instead of running without the metrics it was asked for.
    """

    def __init__(
        self, address: str, registry: CollectorRegistry, tls: MetricsTLS | None = None
    ) -> None:
        host, port = split_address(address)
        self.tls = tls
        try:
            context = tls.context() if tls is not None else None
            family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            self._server = _Server(sockaddr, family, context)
        except OSError as exc:  # socket.gaierror included
            raise CannotServeMetrics(
                f"cannot serve metrics on {address}: {exc.strerror or exc}; choose another "
                "metrics_listen (--metrics-listen), or leave it empty to serve none"
            ) from None
        self._server.set_app(make_wsgi_app(registry))
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-accept", daemon=True
        )
        self._thread.start()
        bound_host, bound_port = self._server.server_address[:2]
        bound_host = bound_host.decode() if isinstance(bound_host, bytes) else str(bound_host)
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.address = f"{shown}:{bound_port}"  # a port 0 becomes the port chosen
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.address}/metrics"

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
