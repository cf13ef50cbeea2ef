"""Moved to :mod:`hoard_server.daemon.config`; kept so that older imports still work."""

from hoard_server.daemon.config import (  # noqa: F401
    Config,
    ConfigError,
    is_loopback,
    load_config,
    stream_slots,
    validate,
)
