"""Tunables of a repository's storage engine (the ``[storage]`` section of the config)."""

from __future__ import annotations

from dataclasses import dataclass

from hoard_server.storage.codec import FRAME_SIZE


@dataclass(frozen=True)
class StorageSettings:
    pack_max_bytes: int = 4 << 30
    compression_level: int = 3
    frame_compression_level: int = 1
    frame_size: int = FRAME_SIZE
    index_map_size: int = 1 << 40
    train_dictionary: bool = True
    # share of the time live compaction works while clients are active (1.0: never yields)
    maintenance_duty: float = 0.33
    # who besides the daemon's user may read the data: "none", "read" or "write" (its group)
    group_access: str = "none"
