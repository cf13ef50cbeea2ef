"""Every metric the daemon exports, declared once, on hoard's own registry.

The RPC metrics are fed by the call interceptor (``grpc/interceptors/calls.py``); the
counters of datasets, maintenance and metadata syncs by one line where the work happens
(storage, maintenance and service modules may import this module: it knows nothing of gRPC);
the per-repository figures are read at scrape time (``observe/storage.py``).

``REGISTRY`` is what ``/metrics`` serves (``observe/endpoint.py``): one per process, and a
process serves one daemon. It also carries prometheus_client's process and Python collectors
(``process_*``, ``python_*``). ``docs/operations.md`` lists every ``hoard_*`` metric; a test
holds that list to this module.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Protocol, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

__all__ = ["REGISTRY", "BackupRun", "tracked_sync"]

disable_created_metrics()  # no `*_created` series: half the series, nothing a dashboard reads
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# -- RPCs (grpc/interceptors/calls.py) ----------------------------------------------------------

_RPC = ("service", "method")
# 100 us (a Has answered from the index) to 60 s (a long upload or a maintenance run)
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip

RPCS = Counter("hoard_rpcs", "RPCs ended, by final status code", (*_RPC, "code"), registry=REGISTRY)
RPC_DURATION = Histogram(
    "hoard_rpc_duration_seconds",
    "Time from the start of an RPC's handler to its end (streams: the whole stream)",
    _RPC,
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
RPC_RECEIVED_BYTES = Counter(
    "hoard_rpc_received_bytes", "Bytes of request messages received", _RPC, registry=REGISTRY
)
RPC_SENT_BYTES = Counter(
    "hoard_rpc_sent_bytes", "Bytes of response messages sent", _RPC, registry=REGISTRY
)
RPCS_IN_FLIGHT = Gauge("hoard_rpcs_in_flight", "RPCs being served now", _RPC, registry=REGISTRY)

# -- datasets (storage/hdf5/appends.py, services/datasets/service.py) ---------------------------

APPEND_ROWS = Counter(
    "hoard_dataset_append_rows",
    "Rows appended to datasets (along their grow dimension)",
    ("repository",),
    registry=REGISTRY,
)
APPEND_BYTES = Counter(
    "hoard_dataset_append_bytes",
    "Bytes of array data appended to datasets (text: its characters)",
    ("repository",),
    registry=REGISTRY,
)
APPEND_BATCHES = Counter(
    "hoard_dataset_append_batches",
    "Append batches written (a client's batch of rows for one dataset)",
    ("repository",),
    registry=REGISTRY,
)
APPEND_COMMITS = Counter(
    "hoard_dataset_append_commits",
    "Group commits of appends: one flush and one fsync of a file each",
    ("repository",),
    registry=REGISTRY,
)
FOLLOW_STREAMS = Gauge("hoard_dataset_follow_streams", "Follow streams open now", registry=REGISTRY)

# -- maintenance (maintenance/compactor.py, maintenance/backup.py) ------------------------------

COMPACTION_RUNS = Counter(
    "hoard_compaction_runs",
    "Compaction runs started (dry runs not counted)",
    ("repository",),
    registry=REGISTRY,
)
COMPACTION_MOVED_BYTES = Counter(
    "hoard_compaction_moved_bytes",
    "Bytes of live records compaction copied out of packs it emptied",
    ("repository",),
    registry=REGISTRY,
)
COMPACTION_RECLAIMED_BYTES = Counter(
    "hoard_compaction_reclaimed_bytes",
    "Disk bytes compaction gave back (packs deleted, the index file shrunk)",
    ("repository",),
    registry=REGISTRY,
)
BACKUP_RUNS = Counter("hoard_backup_runs", "Backups started", ("repository",), registry=REGISTRY)
BACKUP_COPIED_BYTES = Counter(
    "hoard_backup_copied_bytes",
    "Bytes backups wrote: pack data and dataset files (unchanged ones are not copied)",
    ("repository",),
    registry=REGISTRY,
)
BACKUP_PROGRESS = Gauge(
    "hoard_backup_progress",
    "Share (0 to 1) of a running backup's bytes handled, packs then dataset files; "
    "present only while a backup of the repository runs",
    ("repository",),
    registry=REGISTRY,
)

# -- metadata syncs (services/metadata/cache.py) ------------------------------------------------

SYNCS_RUNNING = Gauge(
    "hoard_metadata_syncs_running", "Server-side metadata syncs running now", registry=REGISTRY
)
SYNC_SCANNED_FILES = Gauge(
    "hoard_metadata_sync_scanned_files",
    "Files looked at so far by the metadata syncs running now (0 when none runs)",
    registry=REGISTRY,
)
SYNC_INDEXED_FILES = Counter(
    "hoard_metadata_sync_indexed_files",
    "Files a metadata sync extracted and wrote to the cache (new or changed; parse "
    "failures included)",
    registry=REGISTRY,
)
SYNC_FAILED_FILES = Counter(
    "hoard_metadata_sync_failed_files",
    "Files a metadata sync could not parse (stored with the reason)",
    registry=REGISTRY,
)


class BackupRun:
    """One backup's share of the metrics, for the ``with`` block the backup runs in: the
    run counted, the bytes it copied, and its progress gauge (from ``expect`` to the end)."""

    def __init__(self, repository: str) -> None:
        self._repository = repository
        self._lock = threading.Lock()
        self._expected = 0
        self._handled = 0
        self._copied = BACKUP_COPIED_BYTES.labels(repository)
        BACKUP_RUNS.labels(repository).inc()

    def expect(self, total_bytes: int) -> None:
        """The run will handle about ``total_bytes`` (packs to their ends, dataset files)."""
        with self._lock:
            self._expected = total_bytes
            self._show()

    def handled(self, nbytes: int, copied: int = 0) -> None:
        """A pack or file of ``nbytes`` is in the backup; ``copied`` of them written now."""
        if copied:
            self._copied.inc(copied)
        with self._lock:
            self._handled += nbytes
            self._show()

    def _show(self) -> None:
        share = self._handled / self._expected if self._expected else 0.0
        BACKUP_PROGRESS.labels(self._repository).set(min(1.0, share))

    def __enter__(self) -> BackupRun:
        return self

    def __exit__(self, *exc: object) -> None:
        """The run is over (done, failed or abandoned): its progress gauge goes."""
        BACKUP_PROGRESS.remove(self._repository)


class SyncCounts(Protocol):
    """What a sync's progress reports say (``services.metadata.sync.SyncProgress``)."""

    @property
    def scanned(self) -> int: ...
    @property
    def added(self) -> int: ...
    @property
    def updated(self) -> int: ...
    @property
    def failed(self) -> int: ...


P = TypeVar("P", bound=SyncCounts)


def tracked_sync(reports: Iterator[P]) -> Iterator[P]:
    """A metadata sync's progress reports, passed through while the metrics follow them:
    the sync counts as running until the reports end (or their consumer lets them go)."""
    seen = written = failed = 0
    SYNCS_RUNNING.inc()
    try:
        for report in reports:
            SYNC_SCANNED_FILES.inc(report.scanned - seen)
            SYNC_INDEXED_FILES.inc(report.added + report.updated - written)
            SYNC_FAILED_FILES.inc(report.failed - failed)
            seen, written, failed = report.scanned, report.added + report.updated, report.failed
            yield report
    finally:
        SYNC_SCANNED_FILES.dec(seen)
        SYNCS_RUNNING.dec()
        close = getattr(reports, "close", None)
        if close is not None:  # a sync let go early: its own clean-up runs now
            close()
