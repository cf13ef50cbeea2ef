"""Building requests: pure functions (no I/O), shared by every way of sending them.

Arguments are checked here, before anything is sent, so a mistake costs no round trip.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from hoard.v1 import objects_pb2 as pb

__all__ = [
    "BATCH_BYTES",
    "BATCH_OBJECTS",
    "CHUNK_BYTES",
    "KEYS_PER_CALL",
    "PutPlan",
    "backup_request",
    "is_key",
    "maintain_request",
    "plan_puts",
    "put_requests",
    "read_request",
    "slices",
    "verify_request",
]

CHUNK_BYTES = 1 << 20  # Put/Read chunk: the daemon's sweet spot
BATCH_BYTES = 4 << 20  # a PutBatch call carries at most this much ...
BATCH_OBJECTS = 2_000  # ... or this many objects; bigger objects are streamed alone
KEYS_PER_CALL = 10_000  # Has / Stat / ReadMany / Delete keys per call

_KEY = re.compile(r"[0-9a-f]{64}")
T = TypeVar("T")


def is_key(key: object) -> bool:
    """Whether ``key`` is spelt as a stored object's key can be (64 lowercase hex digits);
    TypeError when it is not a str at all."""
    if not isinstance(key, str):
        raise TypeError(f"object keys are str, not {type(key).__name__}: {key!r:.80}")
    return _KEY.fullmatch(key) is not None


def slices(items: Sequence[T], size: int = KEYS_PER_CALL) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def put_requests(
    repository: str, chunks: Iterable[bytes], size: int | None = None
) -> Iterator[pb.PutRequest]:
    """The messages of one streamed put: header, chunks, and -- when ``size`` was not
    declared -- the finish that tells the daemon the upload is whole (a stream cut short
    without it stores nothing)."""
    header = pb.PutHeader(repository=repository)
    if size is not None:
        header.size = size
    yield pb.PutRequest(header=header)
    sent = 0
    for chunk in chunks:
        if chunk:
            sent += len(chunk)
            yield pb.PutRequest(chunk=chunk)
    if size is None:
        yield pb.PutRequest(finish=pb.PutFinish(size=sent))


@dataclass(frozen=True)
class PutPlan:
    """Objects to send together: ``positions`` in the caller's input; ``streamed`` when the
    one object is too large for a batch and goes through Put."""

    positions: list[int]
    contents: list[bytes]
    streamed: bool = False


def plan_puts(
    contents: Iterable[bytes], max_bytes: int = BATCH_BYTES, max_objects: int = BATCH_OBJECTS
) -> Iterator[PutPlan]:
    """Group objects into PutBatch calls of at most ``max_bytes`` or ``max_objects``;
    larger objects come alone, to be streamed. TypeError on anything but bytes, raised
    when it is reached."""
    positions: list[int] = []
    batch: list[bytes] = []
    size = 0
    for position, content in enumerate(contents):
        if not isinstance(content, bytes | bytearray | memoryview):
            raise TypeError(f"objects must be bytes, not {type(content).__name__}")
        if len(content) > max_bytes:
            yield PutPlan([position], [bytes(content)], streamed=True)
            continue
        if batch and (size + len(content) > max_bytes or len(batch) >= max_objects):
            yield PutPlan(positions, batch)
            positions, batch, size = [], [], 0
        positions.append(position)
        batch.append(bytes(content))
        size += len(content)
    if batch:
        yield PutPlan(positions, batch)


def read_request(
    repository: str, key: str, offset: int = 0, length: int | None = None
) -> pb.ReadRequest:
    if offset < 0 or (length is not None and length < 0):
        raise ValueError("offset and length must not be negative")
    request = pb.ReadRequest(repository=repository, key=key, offset=offset)
    if length is not None:
        request.length = length
    return request


def maintain_request(
    repository: str,
    dry_run: bool = False,
    live: bool = True,
    dead_fraction: float | None = None,
    max_packs: int | None = None,
) -> pb.MaintainRequest:
    request = pb.MaintainRequest(repository=repository, dry_run=dry_run, live=live)
    if dead_fraction is not None:
        if not 0 < dead_fraction <= 1:
            raise ValueError(f"dead_fraction must be in (0, 1], not {dead_fraction!r}")
        request.dead_fraction = dead_fraction
    if max_packs is not None:
        if max_packs < 0:
            raise ValueError(f"max_packs must not be negative, not {max_packs!r}")
        request.max_packs = max_packs
    return request


def verify_request(
    repository: str, pack_id: int | None = None, sample: float | None = None
) -> pb.VerifyRequest:
    request = pb.VerifyRequest(repository=repository)
    if pack_id is not None:
        if pack_id <= 0:
            raise ValueError(f"pack_id must be positive, not {pack_id!r}")
        request.pack_id = pack_id
    if sample is not None:
        if not 0 < sample <= 1:
            raise ValueError(f"sample must be a fraction in (0, 1], not {sample!r}")
        request.sample = sample
    return request


def backup_request(repository: str, destination: str) -> pb.BackupRequest:
    return pb.BackupRequest(repository=repository, destination=destination)
