"""The daemon's configuration: one section per concern, each key declared once.

Layers, each overriding the one before: defaults < TOML file (``--config`` or
``HOARD_CONFIG``) < ``HOARD_*`` environment < command-line flags. The machinery that derives
the loader, the flags and the docs from these declarations is in :mod:`.schema`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hoard_server.daemon.schema import ConfigError, find, key, load
from hoard_server.storage.modes import GROUP_ACCESS
from hoard_server.storage.repository import StorageSettings

__all__ = [
    "Config",
    "ConfigError",
    "exposed",
    "is_loopback",
    "load_config",
    "stream_slots",
    "validate",
]

DEFAULT_LISTEN = "127.0.0.1:50051"
_ENGINE = StorageSettings()


@dataclass(frozen=True)
class ServerSection:
    """Where the daemon listens, with how many threads, and how it logs."""

    listen: tuple[str, ...] = key(
        (DEFAULT_LISTEN,),
        "`host:port` and/or `unix:/path`; loopback and unix sockets only unless `allow_remote`",
        metavar="ADDR",
    )
    data_dir: str = key(
        "./hoard-data", "where repositories live; created if missing", metavar="DIR"
    )
    workers: int = key(
        64,
        "gRPC worker threads, i.e. RPCs served at once (health checks have two of their own)",
        at_least=1,
    )
    grace_period: float = key(
        15.0, "seconds in-flight RPCs get on SIGTERM/SIGINT", metavar="SECONDS", at_least=0
    )
    log_level: str = key(
        "info",
        "how much to log: `debug`, `info`, `warning` or `error`",
        choices=("debug", "info", "warning", "error"),
    )
    log_format: str = key(
        "text", "`text`, or `json`: one object per line", choices=("text", "json")
    )
    allow_remote: bool = key(
        False,
        "permit non-loopback listen addresses without both a tokens file and TLS (a warning "
        "is logged at every start): only on a network you trust",
    )
    socket_group: str = key(
        "",
        "unix sockets are made mode 0600 (the daemon's user only); with a group, 0660 and "
        "owned by that group",
        metavar="GROUP",
        note="none",
    )
    metrics_listen: str = key(
        "",
        "`host:port` of the Prometheus endpoint (`/metrics`; plain HTTP unless `metrics_tls`: "
        "keep it on loopback or the scraper's network)",
        metavar="ADDR",
        note="off",
    )


@dataclass(frozen=True)
class SecuritySection:
    """Who may call the daemon: bearer tokens and their roles, TLS, client certificates."""

    tokens_file: str = key(
        "",
        "TOML file of tokens (their SHA-256 hashes only) and their roles per repository, kept "
        "with `hoard token`; re-read on SIGHUP. Set, every RPC but health needs a token",
        metavar="FILE",
        note="no authentication",
    )
    tls_cert: str = key(
        "",
        "PEM certificate chain the daemon presents on its TCP addresses (unix sockets stay "
        "plain: their file mode guards them)",
        metavar="FILE",
        note="no TLS",
    )
    tls_key: str = key("", "PEM private key of `tls_cert`", metavar="FILE")
    tls_client_ca: str = key(
        "",
        "PEM CA certificate(s): set, every TCP client must present a certificate they signed "
        "(mutual TLS), besides its token",
        metavar="FILE",
        note="no client certificates",
    )
    metrics_tls: bool = key(
        False,
        "serve `metrics_listen` over HTTPS with `tls_cert` and `tls_key`; with "
        "`tls_client_ca`, only to scrapers presenting a client certificate it signed. "
        "Renewed files are read at the next start",
    )


@dataclass(frozen=True)
class LimitsSection:
    """What slow or hostile clients may take: worker threads, time, memory, connections."""

    max_read_streams: int = key(
        0,
        "Read, ReadMany and List streams (and the dataset files' ListFiles, ExportFile and "
        "ZipFolder, the metadata cache's Query, Signatures and ReadFile) served at once; the "
        "rest of the workers stay free for short calls",
        at_least=0,
        note="3/8 of `workers`: 24",
        moved_from="server",
    )
    max_upload_streams: int = key(
        0,
        "Put (and ImportFile, and the metadata cache's SynchronizeDirectory and AddFiles) "
        "streams served at once",
        at_least=0,
        note="3/8 of `workers`: 24",
        moved_from="server",
    )
    stream_idle_timeout: float = key(
        60.0,
        "cancel a stream whose client has neither read nor sent for this many seconds (`0`: never)",
        metavar="SECONDS",
        at_least=0,
        moved_from="server",
    )
    response_memory_bytes: int = key(
        256 << 20,
        "bytes of response data being built or waiting to be sent, daemon-wide",
        metavar="BYTES",
        at_least=1 << 20,
        note="256 MiB",
        moved_from="server",
    )
    max_message_bytes: int = key(
        64 << 20,
        "largest gRPC message the daemon receives or sends; a larger one is refused "
        "(RESOURCE_EXHAUSTED). GetData replies are kept below it; the SDK's messages are at "
        "most 4 MiB",
        metavar="BYTES",
        at_least=8 << 20,
        note="64 MiB",
    )
    streams_per_client: int = key(
        32,
        "long streams (reads, uploads, appends, follows, syncs) one client may hold at once, "
        "a client being its token's name, or without authentication a remote host or a "
        "loopback connection (unix-socket peers are not told apart) (`0`: no limit)",
        at_least=0,
    )
    default_deadline: float = key(
        0.0,
        "a stream that arrives without a deadline is ended (DEADLINE_EXCEEDED) once it has "
        "lasted this many seconds; unary calls are not covered (`0`: none)",
        metavar="SECONDS",
        at_least=0,
        note="none",
    )
    keepalive_interval: float = key(
        60.0,
        "ping a connection after this many seconds without traffic from its client (`0`: never)",
        metavar="SECONDS",
        at_least=0,
        moved_from="server",
    )
    keepalive_timeout: float = key(
        20.0,
        "drop a connection whose client does not answer a ping within this many seconds",
        metavar="SECONDS",
        more_than=0,
        moved_from="server",
    )


@dataclass(frozen=True)
class StorageSection:
    """How repositories store objects (the engine's StorageSettings) and which one to create."""

    pack_max_bytes: int = key(
        _ENGINE.pack_max_bytes,
        "pack files roll over at this size",
        metavar="BYTES",
        at_least=1 << 16,
        note="4 GiB",
    )
    compression_level: int = key(
        _ENGINE.compression_level, "zstd level for small objects", metavar="LEVEL"
    )
    frame_compression_level: int = key(
        _ENGINE.frame_compression_level,
        "zstd level for the frames of large objects (kept low: they are throughput-bound)",
        metavar="LEVEL",
    )
    frame_size: int = key(
        _ENGINE.frame_size,
        "large objects are cut into independently compressed frames of this size; a ranged "
        "read decompresses only the frames it touches",
        metavar="BYTES",
        at_least=1,
        note="256 KiB",
    )
    index_map_size: int = key(
        _ENGINE.index_map_size,
        "LMDB map size per repository: the index's maximum size. Sparse, so it uses address "
        "space, not disk or RAM",
        metavar="BYTES",
        at_least=1 << 20,
        note="1 TiB",
    )
    train_dictionary: bool = key(
        _ENGINE.train_dictionary,
        "train a zstd dictionary from the first small objects of a repository",
    )
    group_access: str = key(
        _ENGINE.group_access,
        "who besides the daemon's user may read data files and backups: `none` (files 0600, "
        "directories 0700), `read` (0640/0750) or `write` (0660/0770) for the daemon's group",
        choices=tuple(GROUP_ACCESS),
    )
    default_repository: str = key(
        "default", 'created at start-up if missing; `""` creates none', metavar="NAME"
    )


@dataclass(frozen=True)
class MaintenanceSection:
    """Scheduled compaction, its pace, and where backups may be written."""

    maintenance_interval: float = key(
        0.0,
        "compact every repository this often (seconds), live",
        metavar="SECONDS",
        at_least=0,
        note="off",
        moved_from="server",
    )
    maintenance_duty: float = key(
        _ENGINE.maintenance_duty,
        "while clients are active, live compaction works this share of the time and pauses "
        "the rest, so their latency barely moves (`1.0`: full speed regardless)",
        metavar="SHARE",
        more_than=0,
        moved_from="storage",
    )
    backup_roots: tuple[str, ...] = key(
        (),
        "directories under which `hoard backup` may write; a destination outside them is "
        "refused (PERMISSION_DENIED)",
        flag="--backup-root",
        metavar="DIR",
        note="backups off",
        moved_from="server",
    )


@dataclass(frozen=True)
class DatasetsSection:
    """The datasets face: reply size, open HDF5 handles, Append and Follow streams, chunks."""

    max_reply_bytes: int = key(
        64 << 20,
        "largest GetData reply; a larger selection is refused (RESOURCE_EXHAUSTED, "
        "REPLY_TOO_LARGE) and must be read with ReadData",
        metavar="BYTES",
        at_least=1 << 10,
        note="64 MiB",
    )
    max_open_files: int = key(
        256,
        "HDF5 files the daemon keeps open at once, across repositories; the least recently "
        "used idle one is closed first",
        at_least=1,
    )
    handle_idle_seconds: float = key(
        30.0,
        "close an HDF5 file nobody has used for this many seconds, so that it is clean on "
        "disk (plain h5py opens it) while the daemon runs (`0`: never)",
        metavar="SECONDS",
        at_least=0,
    )
    structural_copy_bytes: int = key(
        64 << 20,
        "files up to this size get structural changes (new or deleted datasets, attributes) "
        "on a copy renamed over them, so a crash cannot damage them (`0`: in place)",
        metavar="BYTES",
        at_least=0,
        note="64 MiB",
    )
    shared_memory_reads: bool = key(
        True,
        "answer a large ReadData from a client on the daemon's host (unix socket or "
        "loopback) through a file of /dev/shm (mode 0600) the client maps, instead of the "
        "stream; a client that cannot open it falls back to the stream",
    )
    shared_memory_bytes: int = key(
        2 << 30,
        "shared memory handed out and not yet claimed by its clients, at most; a read "
        "beyond it is streamed",
        metavar="BYTES",
        at_least=0,
        note="2 GiB",
    )
    append_streams: int = key(16, "Append streams served at once", at_least=1)
    follow_streams: int = key(
        16, "Follow streams served at once (each holds a worker while it waits)", at_least=1
    )
    chunk_target_bytes: int = key(
        256 << 10,
        "bytes per chunk of a dataset made by appending (a power-of-two number of rows, "
        "kept within 64 KiB-1 MiB)",
        metavar="BYTES",
        at_least=1,
        note="256 KiB",
    )


@dataclass(frozen=True)
class MetadataSection:
    """The metadata cache: which of the daemon's directories it may read."""

    sync_roots: tuple[str, ...] = key(
        (),
        "directories under which the metadata cache may read files (server-side sync, AddFiles, "
        "ReadFile); anything outside them is refused (PERMISSION_DENIED), and links out of them "
        "are not followed",
        flag="--sync-root",
        metavar="DIR",
        note="server-side sync off",
    )


@dataclass(frozen=True)
class Config:
    """The whole configuration; each field is a TOML table."""

    server: ServerSection = field(default_factory=ServerSection)
    security: SecuritySection = field(default_factory=SecuritySection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    storage: StorageSection = field(default_factory=StorageSection)
    maintenance: MaintenanceSection = field(default_factory=MaintenanceSection)
    datasets: DatasetsSection = field(default_factory=DatasetsSection)
    metadata: MetadataSection = field(default_factory=MetadataSection)

    def storage_settings(self) -> StorageSettings:
        """What the storage engine takes from the [storage] and [maintenance] sections."""
        own = dataclasses.asdict(self.storage)
        del own["default_repository"]
        return StorageSettings(**own, maintenance_duty=self.maintenance.maintenance_duty)


def where(name: str) -> str:
    """How a person sets key ``name``: ``workers (HOARD_WORKERS, --workers)``."""
    return find(Config, name).where()


def load_config(
    config_file: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    notices: list[str] | None = None,
) -> Config:
    """Read every layer and check the result; ConfigError names what is wrong."""
    environ = os.environ if environ is None else environ
    path = config_file or environ.get("HOARD_CONFIG")
    document: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as fh:
                document = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    cfg = load(Config, document, path or "", environ, overrides, notices)
    validate(cfg)
    return cfg


def stream_slots(cfg: Config) -> tuple[int, int]:
    """(read streams, upload streams) the daemon admits at once."""
    auto = max(1, cfg.server.workers * 3 // 8)
    return cfg.limits.max_read_streams or auto, cfg.limits.max_upload_streams or auto


def is_loopback(address: str) -> bool:
    """True for unix sockets and loopback TCP addresses."""
    if address.startswith("unix:") or address.startswith("unix-abstract:"):
        return True
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposed(cfg: Config) -> list[str]:
    """Non-loopback addresses served without both tokens and TLS (``allow_remote``): the
    daemon warns about each at every start."""
    sec = cfg.security
    if sec.tokens_file and sec.tls_cert:
        return []
    return [a for a in cfg.server.listen if not is_loopback(a)]


def validate(cfg: Config) -> None:
    """Rules across keys (each key's own type, choices and bounds are checked on loading)."""
    server = cfg.server
    if not server.listen:
        raise ConfigError("no listen address configured")
    sec = cfg.security
    if bool(sec.tls_cert) != bool(sec.tls_key):
        raise ConfigError("tls_cert and tls_key go together: set both, or neither")
    if sec.tls_client_ca and not sec.tls_cert:
        raise ConfigError("tls_client_ca (client certificates) needs tls_cert and tls_key too")
    if sec.metrics_tls and not sec.tls_cert:
        raise ConfigError("metrics_tls serves the metrics with tls_cert and tls_key: set both")
    guarded = bool(sec.tokens_file and sec.tls_cert)
    for addr in server.listen:
        if not addr.startswith("unix") and ":" not in addr:
            raise ConfigError(f"listen address {addr!r} needs a port (host:port) or unix:/path")
        if not (guarded or server.allow_remote or is_loopback(addr)):
            missing = " and ".join(
                what
                for what, have in (("a tokens_file", sec.tokens_file), ("TLS", sec.tls_cert))
                if not have
            )
            raise ConfigError(
                f"refusing to listen on {addr}: it is reachable from other machines, and "
                f"without {missing} anyone who reaches it could read and change every "
                "repository. Set tokens_file, tls_cert and tls_key (see docs/operations.md), "
                "listen on 127.0.0.1 or a unix socket, or pass --allow-remote "
                "(HOARD_ALLOW_REMOTE=1) on a network you trust."
            )
    reads, uploads = stream_slots(cfg)
    limits = cfg.limits
    if (limits.max_read_streams or limits.max_upload_streams) and reads + uploads >= server.workers:
        raise ConfigError(
            f"max_read_streams ({reads}) + max_upload_streams ({uploads}) must leave at least "
            f"one of the {server.workers} workers for short calls: raise workers or lower them"
        )
