"""What the engine reports: repository info and the progress of maintenance, verification
and backups, as typed values.

Field names are those of the matching ``hoard.v1`` messages (``InfoResponse``, ``PackInfo``,
``MaintainProgress``, ``Problem``, ``VerifyProgress``, ``BackupProgress``), so a servicer
turns a report into its message field by field without copying keys by hand, and the SDK
mirrors them from the other side.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PackReport:
    pack_id: int
    size: int
    live_bytes: int
    dead_bytes: int
    single_object: bool


@dataclass(frozen=True, slots=True)
class StoreInfo:
    repository: str
    uuid: str
    key_format: str
    object_count: int
    raw_bytes: int  # sum of the objects' uncompressed sizes
    stored_bytes: int  # what the live objects take in packs, headers included
    on_disk_bytes: int  # everything the repository takes on disk
    pack_count: int
    reclaimable_bytes: int
    has_dictionary: bool
    compression_ratio: float
    last_maintenance: float  # seconds since the epoch; 0: never
    last_verification: float
    last_verification_errors: int
    packs: tuple[PackReport, ...] = ()
    dataset_files: int = 0  # HDF5 files under datasets/ (scratch names not counted)
    dataset_bytes: int = 0
    metadata_records: int = 0  # records in the metadata cache, every machine_id


@dataclass(frozen=True, slots=True)
class Problem:
    """A damaged or missing object (``key``), pack (``key`` empty) or dataset file
    (``path``, relative to the repository; ``key`` empty, ``pack_id`` 0)."""

    key: str
    pack_id: int
    problem: str
    path: str = ""


@dataclass(slots=True)
class MaintenanceProgress:
    stage: str  # "plan", "compact", "index", "done"
    message: str
    done: int = 0  # packs handled so far, of total
    total: int = 0
    reclaimable_bytes: int = 0
    reclaimed_bytes: int = 0
    moved_bytes: int = 0
    moved_objects: int = 0
    dry_run: bool = False
    problems: list[Problem] = field(default_factory=list)  # new since the previous report
    problem_count: int = 0


@dataclass(slots=True)
class VerifyProgress:
    checked_objects: int = 0
    total_objects: int = 0
    checked_bytes: int = 0
    problems: list[Problem] = field(default_factory=list)  # new since the previous report
    done: bool = False
    problem_count: int = 0


@dataclass(slots=True)
class BackupProgress:
    stage: str  # "snapshot", "packs", "files", "done"
    message: str
    packs_total: int = 0
    packs_copied: int = 0
    packs_unchanged: int = 0
    bytes_copied: int = 0
    bytes_total: int = 0
    objects: int = 0
    files_copied: int = 0  # dataset files copied (unchanged ones are not counted)
    file_bytes: int = 0
