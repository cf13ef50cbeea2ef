"""What the daemon reports, as typed values: repositories, repository info, and the progress
of maintenance, verification and backups.

Each class is named after its ``hoard.v1`` message and has its fields, so a reply becomes a
report by :func:`from_message` without naming a field (the daemon's ``reports`` mirror them
from the other side). Reports are frozen dataclasses that also read like the dicts the SDK
used to return: ``report.stage`` and ``report["stage"]`` are the same value, and a report
equals a dict with the same items.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.protobuf.message import Message

__all__ = [
    "BackupProgress",
    "MaintainProgress",
    "ObjectStat",
    "PackInfo",
    "Problem",
    "Report",
    "RepositoryInfo",
    "StoreInfo",
    "VerifyProgress",
    "VerifyResult",
    "from_message",
]

R = TypeVar("R", bound="Report")


class Report(Mapping[str, Any]):
    """Read access by field name, for code written against the former dict reports."""

    __slots__ = ()

    def __getitem__(self, name: str) -> Any:
        if name in self.__dataclass_fields__:  # type: ignore[attr-defined]
            return getattr(self, name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dataclass_fields__)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)  # type: ignore[attr-defined]

    def __eq__(self, other: object) -> bool:
        # Equal to any mapping with the same items: a report compares like the dict it was.
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:  # TypeError for a report holding lists, like a dict
        return hash(tuple(self.values()))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (nested reports as dicts), ready for ``json.dumps``."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True, slots=True, eq=False)
class RepositoryInfo(Report):
    """One repository hosted by the daemon; ``created_at`` is seconds since the epoch (UTC);
    ``quota_bytes`` its byte quota (0: none) and ``used_bytes`` what it holds on disk."""

    name: str
    uuid: str
    key_format: str
    created_at: float
    quota_bytes: int = 0
    used_bytes: int = 0


@dataclass(frozen=True, slots=True, eq=False)
class PackInfo(Report):
    pack_id: int
    size: int
    live_bytes: int
    dead_bytes: int
    single_object: bool


@dataclass(frozen=True, slots=True, eq=False)
class StoreInfo(Report):
    """Counts and sizes of one repository (``InfoResponse``). ``compression_ratio`` is raw
    over stored bytes; times are seconds since the epoch, 0 when never; ``packs`` only when
    asked for in detail."""

    repository: str = ""
    uuid: str = ""
    key_format: str = ""
    object_count: int = 0
    raw_bytes: int = 0
    stored_bytes: int = 0
    on_disk_bytes: int = 0
    pack_count: int = 0
    reclaimable_bytes: int = 0
    has_dictionary: bool = False
    packs: list[PackInfo] = field(default_factory=list)
    compression_ratio: float = 1.0
    last_maintenance: float = 0.0
    last_verification: float = 0.0
    last_verification_errors: int = 0
    dataset_files: int = 0
    dataset_bytes: int = 0
    metadata_records: int = 0


@dataclass(frozen=True, slots=True, eq=False)
class Problem(Report):
    """A damaged or missing object (``key``), pack (``key`` empty) or dataset file
    (``path``, relative to the repository)."""

    key: str
    pack_id: int
    problem: str
    path: str = ""


@dataclass(frozen=True, slots=True, eq=False)
class MaintainProgress(Report):
    """One compaction report; ``stage`` is "plan", "compact" or "done" ("" if none came)."""

    stage: str = ""
    message: str = ""
    done: int = 0  # packs handled so far, of total
    total: int = 0
    reclaimable_bytes: int = 0
    reclaimed_bytes: int = 0
    moved_bytes: int = 0
    moved_objects: int = 0
    dry_run: bool = False
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0


@dataclass(frozen=True, slots=True, eq=False)
class VerifyProgress(Report):
    checked_objects: int = 0
    total_objects: int = 0
    checked_bytes: int = 0
    problems: list[Problem] = field(default_factory=list)
    done: bool = False
    problem_count: int = 0


@dataclass(frozen=True, slots=True, eq=False)
class VerifyResult(Report):
    """The outcome of a verification: every problem found, and ``ok`` when there was none."""

    checked_objects: int
    total_objects: int
    checked_bytes: int
    problem_count: int
    problems: list[Problem]
    ok: bool


@dataclass(frozen=True, slots=True, eq=False)
class BackupProgress(Report):
    """One backup report; ``stage`` is "snapshot", "packs", "files" or "done" ("" if none
    came). ``files_copied`` and ``file_bytes`` count the dataset files copied."""

    stage: str = ""
    message: str = ""
    packs_total: int = 0
    packs_copied: int = 0
    packs_unchanged: int = 0
    bytes_copied: int = 0
    bytes_total: int = 0
    objects: int = 0
    files_copied: int = 0
    file_bytes: int = 0


# Nested messages and the report each becomes.
_NESTED: dict[str, type[Report]] = {"Problem": Problem, "PackInfo": PackInfo}


def from_message(cls: type[R], message: Message) -> R:
    """The report ``cls`` holding the fields of ``message`` that it declares (by name)."""
    by_name = message.DESCRIPTOR.fields_by_name
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        descriptor = by_name.get(f.name)
        if descriptor is None:
            continue
        value = getattr(message, f.name)
        nested = descriptor.message_type and _NESTED[descriptor.message_type.name]
        if descriptor.is_repeated:
            value = [from_message(nested, v) for v in value] if nested else list(value)
        elif nested:
            value = from_message(nested, value)
        values[f.name] = value
    return cls(**values)


@dataclass(frozen=True, slots=True, eq=False)
class ObjectStat(Report):
    """Where and how an object is stored. ``stored_size`` includes the pack entry header;
    ``encoding`` is "raw", "zstd", "zstd-dict" or "zstd-frames"."""

    key: str
    raw_size: int
    stored_size: int
    encoding: str
    pack_id: int
