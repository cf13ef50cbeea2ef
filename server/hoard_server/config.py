"""Daemon configuration: defaults < TOML file < HOARD_* environment < command-line flags."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from typing import Any

from hoard_server.storage.modes import GROUP_ACCESS
from hoard_server.storage.repository import StorageSettings

DEFAULT_LISTEN = "127.0.0.1:50051"


class ConfigError(ValueError):
    """A configuration value a person has to fix; the message names it."""


@dataclass(frozen=True)
class Config:
    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    data_dir: str = "./hoard-data"
    workers: int = 64
    grace_period: float = 15.0
    log_level: str = "info"
    log_format: str = "text"
    allow_remote: bool = False
    default_repository: str = "default"
    backup_roots: tuple[str, ...] = ()
    maintenance_interval: float = 0.0  # seconds between automatic compactions; 0: off
    # Long streams each kind may run at once (0: 3/8 of workers each, at least 1); the rest
    # of the workers stay free for health checks and short calls.
    max_read_streams: int = 0  # Read, ReadMany, List
    max_upload_streams: int = 0  # Put
    # Cancel a stream whose client has neither read nor sent for this many seconds (0: never).
    stream_idle_timeout: float = 60.0
    # Bytes of response messages being built or in flight, daemon-wide.
    response_memory_bytes: int = 256 << 20
    # Ping each connection after this many seconds without traffic from its client and drop
    # it if the ping is not answered within keepalive_timeout (0: never ping).
    keepalive_interval: float = 60.0
    keepalive_timeout: float = 20.0
    storage: StorageSettings = field(default_factory=StorageSettings)


_SERVER_KEYS = {
    "listen",
    "data_dir",
    "workers",
    "grace_period",
    "log_level",
    "log_format",
    "allow_remote",
    "backup_roots",
    "maintenance_interval",
    "max_read_streams",
    "max_upload_streams",
    "stream_idle_timeout",
    "response_memory_bytes",
    "keepalive_interval",
    "keepalive_timeout",
}
_STORAGE_KEYS = {f.name for f in fields(StorageSettings)} | {"default_repository"}
_ENV = {
    "HOARD_LISTEN": "listen",
    "HOARD_DATA_DIR": "data_dir",
    "HOARD_WORKERS": "workers",
    "HOARD_GRACE_PERIOD": "grace_period",
    "HOARD_LOG_LEVEL": "log_level",
    "HOARD_LOG_FORMAT": "log_format",
    "HOARD_ALLOW_REMOTE": "allow_remote",
    "HOARD_PACK_MAX_BYTES": "pack_max_bytes",
    "HOARD_DEFAULT_REPOSITORY": "default_repository",
    "HOARD_BACKUP_ROOTS": "backup_roots",
    "HOARD_MAINTENANCE_INTERVAL": "maintenance_interval",
    "HOARD_GROUP_ACCESS": "group_access",
    "HOARD_MAX_READ_STREAMS": "max_read_streams",
    "HOARD_MAX_UPLOAD_STREAMS": "max_upload_streams",
    "HOARD_STREAM_IDLE_TIMEOUT": "stream_idle_timeout",
    "HOARD_KEEPALIVE_INTERVAL": "keepalive_interval",
    "HOARD_KEEPALIVE_TIMEOUT": "keepalive_timeout",
    "HOARD_RESPONSE_MEMORY_BYTES": "response_memory_bytes",
}


def _coerce(name: str, value: Any, like: Any) -> Any:
    try:
        if isinstance(like, bool):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off", ""):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(like, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(s.strip() for s in items if s.strip())
        if isinstance(like, int):
            return int(value)
        if isinstance(like, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"configuration value {name} = {value!r} is not a valid {type(like).__name__}"
        ) from None


def _apply(cfg: Config, values: dict[str, Any], origin: str) -> Config:
    top: dict[str, Any] = {}
    storage: dict[str, Any] = {}
    for name, value in values.items():
        if name in _STORAGE_KEYS and name != "default_repository":
            storage[name] = _coerce(name, value, getattr(cfg.storage, name))
        elif name in _SERVER_KEYS or name == "default_repository":
            top[name] = _coerce(name, value, getattr(cfg, name))
        else:
            raise ConfigError(f"unknown configuration key {name!r} in {origin}")
    return replace(cfg, **top, storage=replace(cfg.storage, **storage))


def load_config(
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    environ = dict(os.environ if environ is None else environ)
    cfg = Config()
    path = config_file or environ.get("HOARD_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        flat: dict[str, Any] = {}
        for section, allowed in (("server", _SERVER_KEYS), ("storage", _STORAGE_KEYS)):
            body = doc.pop(section, {})
            for k, v in body.items():
                if k not in allowed:
                    raise ConfigError(f"unknown key {k!r} in section [{section}] of {path}")
                flat[k] = v
        if doc:
            raise ConfigError(
                f"unknown section(s) {sorted(doc)} in {path}; expected [server], [storage]"
            )
        cfg = _apply(cfg, flat, path)
    env_values = {key: environ[var] for var, key in _ENV.items() if var in environ}
    cfg = _apply(cfg, env_values, "the environment")
    cfg = _apply(
        cfg, {k: v for k, v in (overrides or {}).items() if v is not None}, "the command line"
    )
    validate(cfg)
    return cfg


def stream_slots(cfg: Config) -> tuple[int, int]:
    """(read streams, upload streams) the daemon admits at once."""
    auto = max(1, cfg.workers * 3 // 8)
    return cfg.max_read_streams or auto, cfg.max_upload_streams or auto


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


def validate(cfg: Config) -> None:
    if not cfg.listen:
        raise ConfigError("no listen address configured")
    for addr in cfg.listen:
        if not addr.startswith("unix") and ":" not in addr:
            raise ConfigError(f"listen address {addr!r} needs a port (host:port) or unix:/path")
        if not cfg.allow_remote and not is_loopback(addr):
            raise ConfigError(
                f"refusing to listen on {addr}: it is reachable from other machines and hoard has "
                "no authentication yet. Listen on 127.0.0.1 or a unix socket, or pass "
                "--allow-remote (HOARD_ALLOW_REMOTE=1) on a network you trust."
            )
    if cfg.keepalive_interval < 0 or cfg.keepalive_timeout <= 0:
        raise ConfigError(
            "keepalive_interval must be 0 (off) or more, and keepalive_timeout more than 0"
        )
    if cfg.workers < 1:
        raise ConfigError("workers must be at least 1")
    if cfg.max_read_streams < 0 or cfg.max_upload_streams < 0:
        raise ConfigError("max_read_streams and max_upload_streams must not be negative")
    reads, uploads = stream_slots(cfg)
    if (cfg.max_read_streams or cfg.max_upload_streams) and reads + uploads >= cfg.workers:
        raise ConfigError(
            f"max_read_streams ({reads}) + max_upload_streams ({uploads}) must leave at least "
            f"one of the {cfg.workers} workers for short calls and health checks: raise "
            "workers or lower them"
        )
    if cfg.stream_idle_timeout < 0:
        raise ConfigError("stream_idle_timeout must not be negative (0 turns it off)")
    if cfg.response_memory_bytes < 1 << 20:
        raise ConfigError("response_memory_bytes must be at least 1048576 (1 MiB)")
    if cfg.log_format not in ("text", "json"):
        raise ConfigError(f"log_format must be 'text' or 'json', not {cfg.log_format!r}")
    if cfg.storage.group_access not in GROUP_ACCESS:
        raise ConfigError(
            f"group_access must be one of {', '.join(GROUP_ACCESS)}, "
            f"not {cfg.storage.group_access!r}"
        )
    if cfg.storage.pack_max_bytes < 1 << 16:
        raise ConfigError("pack_max_bytes must be at least 65536")
