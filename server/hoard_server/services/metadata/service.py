"""The metadata caches of every repository of one registry: what the RPC layer calls.

Each repository owns its cache's index (``Repository.metadata``, opened on first use);
this service puts a ``MetadataCache`` over it with the daemon's sync roots and the
repository's activity hold (erasing it waits for the metadata calls in progress).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import AbstractContextManager

from hoard_server.services.metadata.cache import MetadataCache
from hoard_server.services.metadata.sync import DEFAULT_BATCH, ExtractPool, default_workers
from hoard_server.services.repositories import open_repository
from hoard_server.storage.registry import RepositoryRegistry


class MetadataService:
    """One ``MetadataCache`` per repository of ``registry``; thread-safe (the index is)."""

    def __init__(self, registry: RepositoryRegistry, sync_roots: Sequence[str] = (),
                 batch_size: int = DEFAULT_BATCH) -> None:
        self._registry = registry
        self.sync_roots = tuple(os.path.realpath(r) for r in sync_roots)
        self._batch_size = batch_size
        if self.sync_roots and default_workers():  # server-side syncs: their workers now
            ExtractPool(default_workers()).warm()

    def cache(self, repository: str, adding: bool = False) -> MetadataCache:
        """The cache of ``repository``: INVALID_REPOSITORY_NAME or REPOSITORY_NOT_FOUND;
        ``adding`` records: QUOTA_EXCEEDED if the repository is at its quota."""
        repo = open_repository(self._registry, repository)
        if adding:
            repo.usage.admit()

        def hold() -> AbstractContextManager[object]:
            # not a reader: a metadata call keeps no pack location, compaction need not wait
            return repo.activity.hold(reader=False)

        with hold():
            index = repo.metadata
        return MetadataCache(index, sync_roots=self.sync_roots, batch_size=self._batch_size,
                             hold=hold)
