"""``hoard serve``: read the configuration, start the daemon, stop it gracefully on a signal."""

from __future__ import annotations

import argparse
import faulthandler
import gc
import grp
import logging
import os
import signal
import sys
import threading
from typing import Any

from hoard_server import __version__
from hoard_server.auth.tokens import TokensFileError
from hoard_server.daemon import schema
from hoard_server.daemon.builder import CannotListen, RpcServer, ServerBuilder
from hoard_server.daemon.config import Config, ConfigError, exposed, load_config, where
from hoard_server.daemon.logs import setup_logging
from hoard_server.daemon.schedule import MaintenanceSchedule
from hoard_server.daemon.services import SERVICES, ServiceContext, interceptors
from hoard_server.daemon.tls import ServerTLS
from hoard_server.observe.endpoint import CannotServeMetrics, MetricsEndpoint, MetricsTLS
from hoard_server.observe.metrics import REGISTRY
from hoard_server.observe.storage import StorageCollector
from hoard_server.storage import modes
from hoard_server.storage.registry import RepositoryRegistry

log = logging.getLogger("hoard")

MAX_STREAMS_PER_CONNECTION = 256
# The SDK pings an idle connection every 30 s (hoard.transport.KEEPALIVE_TIME_MS) so that a
# workstation idle for hours keeps it, and notices a daemon gone; pings up to three times as
# often are welcome. gRPC's default (one per 5 minutes without data) would answer the SDK's
# third ping with GOAWAY "too_many_pings".
MIN_CLIENT_PING_INTERVAL_MS = 10_000


def grpc_options(cfg: Config) -> list[tuple[str, Any]]:
    """Channel arguments of the server."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", cfg.limits.max_message_bytes),
        ("grpc.max_send_message_length", cfg.limits.max_message_bytes),
        ("grpc.so_reuseport", 0),
        # One connection may not open streams without end (each costs the core memory);
        # further ones wait on the client's side. Worker threads are guarded by the stream
        # slots of the stream limits, not by this.
        ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
        # clients' keepalive pings, with or without calls in flight
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_MS),
        ("grpc.http2.max_ping_strikes", 2),  # pings too often twice more: GOAWAY
    ]
    if cfg.limits.keepalive_interval > 0:
        # Ping every connection now and then and drop one that does not answer: a client that
        # froze or vanished (its socket unread) otherwise keeps what its calls hold (replies
        # in grpc's buffers, stream slots) until TCP gives up, which for a peer that stopped
        # reading is never.
        options += [
            ("grpc.keepalive_time_ms", int(cfg.limits.keepalive_interval * 1000)),
            ("grpc.keepalive_timeout_ms", int(cfg.limits.keepalive_timeout * 1000)),
        ]
    return options


class Daemon:
    """A running hoard: the registry, the services made over it and the server serving them."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        group = socket_gid(cfg.server.socket_group)  # an unknown one stops the start early
        sec = cfg.security  # TLS files first: a bad one stops the start before data is opened
        self.tls = ServerTLS(sec.tls_cert, sec.tls_key, sec.tls_client_ca) if sec.tls_cert else None
        modes.configure(cfg.storage.group_access)
        modes.makedirs(cfg.server.data_dir, exist_ok=True)
        self.registry = RepositoryRegistry(cfg.server.data_dir, cfg.storage_settings())
        if cfg.storage.default_repository:
            self.registry.create(cfg.storage.default_repository)
        self.context = ServiceContext.create(cfg, self.registry)
        builder = ServerBuilder(
            cfg.server.workers,
            credentials=self.tls.credentials() if self.tls else None,
            interceptors=interceptors(self.context.tokens),
            options=grpc_options(cfg),
            socket_group=group,
        )
        self.server: RpcServer = builder.add_table(SERVICES, self.context).build(cfg.server.listen)
        self.secure = [  # the addresses served with TLS, as bound
            bound
            for bound, given in zip(self.addresses, cfg.server.listen, strict=True)
            if builder.secure(given)
        ]
        self.schedule = MaintenanceSchedule(self.registry, cfg.maintenance.maintenance_interval)
        # bound now, so that a metrics address in use stops the start (like a listen address)
        self.metrics: MetricsEndpoint | None = None
        if cfg.server.metrics_listen:
            tls = None
            if sec.metrics_tls:
                tls = MetricsTLS(sec.tls_cert, sec.tls_key, sec.tls_client_ca)
            self.metrics = MetricsEndpoint(cfg.server.metrics_listen, REGISTRY, tls)
        self._storage_metrics = StorageCollector(self.registry)
        REGISTRY.register(self._storage_metrics)

    @property
    def addresses(self) -> list[str]:
        return self.server.addresses

    def start(self) -> None:
        for address in exposed(self.cfg):
            log.warning(
                "listening on %s without both a tokens file and TLS (allow_remote): anyone who "
                "can reach it can read and change every repository",
                address,
            )
        self.server.start()
        self.schedule.start()
        self.context.serving()
        log.info(
            "hoard %s listening on %s, data in %s",
            __version__,
            ", ".join(self.addresses),
            os.path.abspath(self.cfg.server.data_dir),
        )
        if self.tls is not None:
            how = "TLS"
            if self.tls.mutual:
                how = f"mutual TLS (client certificates signed by {self.tls.client_ca})"
            secure = ", ".join(self.secure) or "no TCP address"
            log.info("%s on %s, certificate %s", how, secure, self.tls.cert)
            if plain := ", ".join(a for a in self.addresses if a not in self.secure):
                log.info("no TLS on %s (unix sockets: their file mode guards them)", plain)
        if self.metrics is not None:
            log.info("metrics served at %s", self.metrics.url)

    def reload_tokens(self) -> None:
        """SIGHUP: re-read the tokens file; a broken one leaves the tokens read before."""
        tokens = self.context.tokens
        if tokens is None:
            log.warning("SIGHUP: no tokens file is configured, so there is nothing to re-read")
            return
        try:
            count = tokens.reload()
        except TokensFileError as exc:
            log.error("SIGHUP: %s; still using the tokens read before", exc)
            return
        log.info("SIGHUP: re-read tokens file %s: %d tokens", tokens.path, count)

    def stop(self) -> None:
        """Refuse new RPCs, let in-flight ones finish within the grace period, commit, close."""
        grace = self.cfg.server.grace_period
        log.info("shutting down: in-flight requests get %.0fs to finish", grace)
        self.schedule.stop()
        self.context.shutting_down()
        self.server.stop(grace)
        if self.metrics is not None:
            self.metrics.stop()
        REGISTRY.unregister(self._storage_metrics)
        self.context.close()
        self.registry.close(timeout=max(1.0, grace))
        from hoard_server.services.metadata.sync import ExtractPool

        ExtractPool.shutdown()  # the metadata syncs' workers, if a sync started them
        log.info("stopped; everything acknowledged is committed")


def socket_gid(group: str) -> int | None:
    """The id of ``socket_group`` (a name or a number); None when unset."""
    if not group:
        return None
    try:
        return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(
            f"socket_group {group!r} is not a group of this host ({where('socket_group')}): "
            "name an existing group (`getent group`), or leave it empty for mode 0600 sockets"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hoard serve",
        description="Run the hoard storage daemon. Each setting comes from, in rising "
        "precedence: its default, the TOML config file, its HOARD_* variable, its flag.",
    )
    p.add_argument("--config", metavar="FILE", help="TOML config file (also HOARD_CONFIG)")
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the configuration the daemon would run with, as TOML, and exit",
    )
    p.add_argument("--version", action="version", version=f"hoard {__version__}")
    schema.add_flags(p, Config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    notices: list[str] = []
    try:
        cfg = load_config(args.config, schema.overrides(args, Config), notices=notices)
    except ConfigError as exc:
        print(f"hoard serve: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(schema.render_toml(cfg), end="")
        return 0
    setup_logging(cfg.server.log_level, cfg.server.log_format)
    for notice in notices:
        log.warning("%s", notice)
    # Hand the GIL over every millisecond, not every 5: a small read waiting behind a batch
    # of compression or compaction work gets its turn sooner (tail latency over throughput).
    sys.setswitchinterval(0.001)
    reload = threading.Event()
    # `systemctl reload hoard` / `kill -HUP <pid>`: re-read the tokens file (in the loop
    # below, not in the handler, which may interrupt the main thread anywhere). Set before the
    # start, so that a reload sent while starting does not kill the daemon.
    signal.signal(signal.SIGHUP, lambda _signum, _frame: reload.set())
    try:
        daemon = Daemon(cfg)
    except (ConfigError, CannotListen, CannotServeMetrics) as exc:
        log.error("%s", exc)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # `kill -USR1 <pid>` prints every thread's stack to stderr: what a stuck daemon is doing
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    daemon.start()
    # Everything built so far lives as long as the process: keep it out of the cyclic
    # collector's full passes, whose pauses would otherwise stall every request now and then.
    gc.freeze()
    # Python runs signal handlers only in the main thread, and only when it runs bytecode; the
    # kernel may deliver SIGTERM to any thread (for instance when the main thread already has
    # a signal pending), which does not interrupt a long wait here. So wait in short steps:
    # one long wait once left a SIGTERM unanswered for as long as it lasted.
    while not stop.wait(0.2):
        if reload.is_set():
            reload.clear()
            daemon.reload_tokens()
    daemon.stop()
    return 0
