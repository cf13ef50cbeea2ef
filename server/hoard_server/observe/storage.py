"""Per-repository figures, read when Prometheus scrapes: nothing is kept up to date for them.

Each comes from what a repository already keeps: its index's running totals (objects, raw and
stored bytes), its pack table (count, dead bytes) and its open HDF5 handles. No disk walk:
``Info``'s ``on_disk_bytes`` and dataset file sizes are not here for that reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hoard_server.errors import HoardError

if TYPE_CHECKING:
    from hoard_server.storage.registry import RepositoryRegistry

log = logging.getLogger(__name__)

_LABELS = ("repository",)
_FAMILIES = (
    ("hoard_repository_objects", "Objects in the repository"),
    ("hoard_repository_bytes", "Logical (uncompressed) bytes of the repository's objects"),
    (
        "hoard_repository_stored_bytes",
        "Bytes the repository's live objects take in packs (compressed, headers included)",
    ),
    ("hoard_repository_packs", "Pack files of the repository"),
    (
        "hoard_repository_reclaimable_bytes",
        "Bytes of deleted objects still in packs: what compaction (hoard maintain) can free",
    ),
    ("hoard_dataset_open_files", "HDF5 files of the repository open in the daemon now"),
)


class StorageCollector(Collector):
    """The figures of every repository of ``registry`` (each one opened if it is not yet:
    a scrape sees every repository, not only those used since the start)."""

    def __init__(self, registry: RepositoryRegistry) -> None:
        self._registry = registry

    def describe(self) -> Iterator[Metric]:
        for name, documentation in _FAMILIES:
            yield GaugeMetricFamily(name, documentation, labels=_LABELS)

    def collect(self) -> Iterator[Metric]:
        families = [GaugeMetricFamily(n, d, labels=_LABELS) for n, d in _FAMILIES]
        for name in self._registry.names():
            try:
                figures = self._figures(name)
            except HoardError:  # erased, or the daemon is stopping: no figures for it
                continue
            except Exception:  # a scrape must not fail for one repository
                log.exception("metrics: cannot read the figures of repository %s", name)
                continue
            for family, value in zip(families, figures, strict=True):
                family.add_metric([name], value)
        yield from families

    def _figures(self, name: str) -> tuple[int, ...]:
        repo = self._registry.get(name)
        with repo.activity.hold(reader=False), repo.index.read() as txn:
            totals = repo.index.totals(txn)
            packs = repo.index.packs(txn)
        return (
            totals.objects,
            totals.raw_bytes,
            totals.stored_bytes,
            len(packs),
            sum(state.dead_bytes for state in packs.values()),
            repo.files.open_handles(),
        )
