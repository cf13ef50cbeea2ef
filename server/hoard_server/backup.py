"""Backup and restore live in ``hoard_server.maintenance.backup``; re-exported here."""

from hoard_server.maintenance.backup import (
    LOCK,
    MANIFEST,
    MANIFEST_FORMAT,
    BackupSource,
    backup,
    check_destination,
    refuse_live_data,
    resolve_destination,
    restore,
)

__all__ = [
    "LOCK",
    "MANIFEST",
    "MANIFEST_FORMAT",
    "BackupSource",
    "backup",
    "check_destination",
    "refuse_live_data",
    "resolve_destination",
    "restore",
]
