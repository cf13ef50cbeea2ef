"""``hoard serve``: configuration, start-up, signals and graceful shutdown."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hoard.v1 import objects_pb2, objects_pb2_grpc, repositories_pb2, repositories_pb2_grpc
from hoard_server import __version__
from hoard_server.config import Config, ConfigError, load_config, stream_slots
from hoard_server.services.decode_guard import DecodeGuard
from hoard_server.services.limits import StreamLimits
from hoard_server.services.objects import ObjectsServicer
from hoard_server.services.repositories import RepositoriesServicer
from hoard_server.storage import modes
from hoard_server.storage.registry import RepositoryRegistry

log = logging.getLogger("hoard")

MAX_MESSAGE = 64 << 20
MAX_STREAMS_PER_CONNECTION = 256
SERVICES = (
    objects_pb2.DESCRIPTOR.services_by_name["Objects"].full_name,
    repositories_pb2.DESCRIPTOR.services_by_name["Repositories"].full_name,
)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(cfg: Config) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if cfg.log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(cfg.log_level.upper())


class Daemon:
    """A running hoard: the registry, the gRPC server and the ports it listens on."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        modes.configure(cfg.storage.group_access)
        modes.makedirs(cfg.data_dir, exist_ok=True)
        self.registry = RepositoryRegistry(cfg.data_dir, cfg.storage)
        if cfg.default_repository:
            self.registry.create(cfg.default_repository)
        reads, uploads = stream_slots(cfg)
        self.limits = StreamLimits(
            {
                "read": (reads, "max_read_streams (HOARD_MAX_READ_STREAMS, --max-read-streams)"),
                "upload": (
                    uploads,
                    "max_upload_streams (HOARD_MAX_UPLOAD_STREAMS, --max-upload-streams)",
                ),
            },
            cfg.stream_idle_timeout,
            cfg.response_memory_bytes,
        )
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="rpc"),
            interceptors=[DecodeGuard()],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", MAX_MESSAGE),
                ("grpc.so_reuseport", 0),
                # One connection may not open streams without end (each costs the core
                # memory); further ones wait on the client's side. Worker threads are
                # guarded by the stream slots of self.limits, not by this.
                ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
                # Ping every connection now and then and drop one that does not answer: a
                # client that froze or vanished (its socket unread) otherwise keeps what its
                # calls hold (replies in grpc's buffers, stream slots) until TCP gives up,
                # which for a peer that stopped reading is never.
                *(
                    [
                        ("grpc.keepalive_time_ms", int(cfg.keepalive_interval * 1000)),
                        ("grpc.keepalive_timeout_ms", int(cfg.keepalive_timeout * 1000)),
                        ("grpc.keepalive_permit_without_calls", 1),
                    ]
                    if cfg.keepalive_interval > 0
                    else []
                ),
            ],
        )
        objects_pb2_grpc.add_ObjectsServicer_to_server(
            ObjectsServicer(self.registry, cfg.backup_roots, self.limits), self.server
        )
        repositories_pb2_grpc.add_RepositoriesServicer_to_server(
            RepositoriesServicer(self.registry), self.server
        )
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (
                *SERVICES,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            self.server,
        )
        self._stopping = threading.Event()
        self.addresses: list[str] = []
        for addr in cfg.listen:
            port = self.server.add_insecure_port(addr)
            if not addr.startswith("unix") and port == 0:
                raise ConfigError(
                    f"cannot listen on {addr} (in use, or not an address of this host)"
                )
            if addr.startswith("unix"):
                self.addresses.append(addr)
            else:
                self.addresses.append(f"{addr.rsplit(':', 1)[0]}:{port}")

    def _maintenance_loop(self) -> None:
        """Compact every repository every ``maintenance_interval`` seconds."""
        while not self._stopping.wait(self.cfg.maintenance_interval):
            for name in self.registry.names():
                try:
                    last = {"message": "nothing done"}
                    for last in self.registry.get(name).maintain():  # noqa: B007
                        if self._stopping.is_set():
                            break
                    log.info("scheduled maintenance of %s: %s", name, last.message)
                except Exception as exc:  # a busy or erased repository: next round
                    log.warning("scheduled maintenance of %s skipped: %s", name, exc)

    def start(self) -> None:
        self.server.start()
        if self.cfg.maintenance_interval > 0:
            threading.Thread(target=self._maintenance_loop, name="maintenance", daemon=True).start()
        for name in ("", *SERVICES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "hoard %s listening on %s, data in %s",
            __version__,
            ", ".join(self.addresses),
            os.path.abspath(self.cfg.data_dir),
        )

    def stop(self) -> None:
        """Refuse new RPCs, let in-flight ones finish within the grace period, commit, close."""
        log.info("shutting down: in-flight requests get %.0fs to finish", self.cfg.grace_period)
        self._stopping.set()
        self.health.enter_graceful_shutdown()
        self.server.stop(self.cfg.grace_period).wait()
        self.limits.close()
        self.registry.close(timeout=max(1.0, self.cfg.grace_period))
        log.info("stopped; everything acknowledged is committed")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hoard serve", description="Run the hoard storage daemon.")
    p.add_argument(
        "--listen",
        action="append",
        metavar="ADDR",
        help="host:port or unix:/path (repeatable; default 127.0.0.1:50051)",
    )
    p.add_argument("--data-dir", help="where repositories live (default ./hoard-data)")
    p.add_argument("--config", help="TOML config file (also HOARD_CONFIG)")
    p.add_argument("--workers", type=int, help="gRPC worker threads (default 64)")
    p.add_argument("--grace-period", type=float, help="seconds in-flight RPCs get on shutdown")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["text", "json"])
    p.add_argument(
        "--allow-remote",
        action="store_true",
        default=None,
        help="allow listening on non-loopback addresses (no auth yet: trusted networks only)",
    )
    p.add_argument("--pack-max-bytes", type=int, help="roll packs over at this size")
    p.add_argument(
        "--backup-root",
        action="append",
        metavar="DIR",
        help="a directory under which backups may be written (repeatable)",
    )
    p.add_argument(
        "--maintenance-interval",
        type=float,
        metavar="SECONDS",
        help="compact every repository this often (default 0: only on request)",
    )
    p.add_argument(
        "--max-read-streams",
        type=int,
        metavar="N",
        help="Read/ReadMany/List streams served at once (default 3/8 of workers)",
    )
    p.add_argument(
        "--max-upload-streams",
        type=int,
        metavar="N",
        help="Put streams served at once (default 3/8 of workers)",
    )
    p.add_argument(
        "--stream-idle-timeout",
        type=float,
        metavar="SECONDS",
        help="cancel a stream whose client neither reads nor sends for this long "
        "(default 60; 0: never)",
    )
    p.add_argument(
        "--response-memory-bytes",
        type=int,
        metavar="BYTES",
        help="memory for response messages in flight, daemon-wide (default 256 MiB)",
    )
    p.add_argument("--version", action="version", version=f"hoard {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {
        "listen": tuple(args.listen) if args.listen else None,
        "data_dir": args.data_dir,
        "workers": args.workers,
        "grace_period": args.grace_period,
        "log_level": args.log_level,
        "log_format": args.log_format,
        "allow_remote": args.allow_remote,
        "pack_max_bytes": args.pack_max_bytes,
        "backup_roots": tuple(args.backup_root) if args.backup_root else None,
        "maintenance_interval": args.maintenance_interval,
        "max_read_streams": args.max_read_streams,
        "max_upload_streams": args.max_upload_streams,
        "stream_idle_timeout": args.stream_idle_timeout,
        "response_memory_bytes": args.response_memory_bytes,
    }
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"hoard serve: {exc}", file=sys.stderr)
        return 2
    setup_logging(cfg)
    # Hand the GIL over every millisecond, not every 5: a small read waiting behind a batch
    # of compression or compaction work gets its turn sooner (tail latency over throughput).
    sys.setswitchinterval(0.001)
    try:
        daemon = Daemon(cfg)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    daemon.start()
    # Everything built so far lives as long as the process: keep it out of the cyclic
    # collector's full passes, whose pauses would otherwise stall every request now and then.
    gc.freeze()
    while not stop.wait(3600):
        pass
    daemon.stop()
    return 0
