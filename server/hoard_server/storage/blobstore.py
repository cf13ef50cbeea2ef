"""The blob store interface: what every store of content-addressed objects offers.

A key is the lowercase SHA-256 hex digest of an object's content (``keys.py``). The packed
store (``packed/``) implements it; decorators that add behaviour around a store (metrics,
quotas, a read cache) implement it too and wrap another one (``decorators/``), so that
behaviour is composed rather than branched on flags.

Contract shared by every implementation:

- a put returns only once the object is durable; puts are idempotent (``created`` says
  whether this call stored it);
- reads check what they serve against the key; damage is ``DataLoss``, never wrong bytes;
- a returned iterator never keeps the store busy between items: a consumer may stop
  reading at any time without holding back shutdown or maintenance;
- ``InvalidArgument`` (reason ``INVALID_KEY``) for a malformed key, ``ObjectNotFound``
  for a missing one, ``OutOfRange`` for a read that starts past the end.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from hoard_server.reports import StoreInfo

READ_MANY_INLINE = 8 << 20  # read_many hands content inline up to this size


@dataclass(frozen=True)
class ObjectStat:
    key: str
    exists: bool
    raw_size: int = 0
    stored_size: int = 0
    encoding: str = ""
    pack_id: int = 0


class BlobStore(ABC):
    """A content-addressed object store. Every method is thread-safe."""

    @abstractmethod
    def put_many(self, objects: list[bytes]) -> list[tuple[str, bool]]:
        """Store objects; (key, created) for each, in order, once all are durable."""

    @abstractmethod
    def put_stream(
        self, chunks: Iterable[bytes], expected_key: str = "", size: int | None = None
    ) -> tuple[str, int, bool]:
        """Store one object arriving in chunks; (key, size, created) once durable.

        ``size``, when given, is what the sender announced: a different total stores
        nothing (InvalidArgument); ``expected_key``, when given, must be the content's key
        (InvalidArgument, reason HASH_MISMATCH). ``chunks`` may block for as long as the
        sender likes."""

    @abstractmethod
    def read(
        self, key: str, offset: int = 0, length: int | None = None
    ) -> tuple[int, Iterator[bytes]]:
        """(object size, chunks of [offset, offset + length)); a range past the end is
        cut short, an offset past the end is OutOfRange."""

    @abstractmethod
    def read_many(
        self, keys: list[str], inline_limit: int = READ_MANY_INLINE
    ) -> Iterator[tuple[str, int, bytes | None]]:
        """(key, size, content, or None when larger than ``inline_limit``) for every key,
        in the order the store reads them best; ObjectNotFound up front if any is missing."""

    @abstractmethod
    def has_many(self, keys: list[str]) -> list[bool]:
        """Whether each key is stored."""

    @abstractmethod
    def stat_many(self, keys: list[str]) -> list[ObjectStat]:
        """How each object is stored (``exists`` False for a missing one)."""

    @abstractmethod
    def list_keys(self, page_token: str = "", limit: int | None = None) -> Iterator[str]:
        """Keys in key order after ``page_token`` (a key handed out before), at most
        ``limit``."""

    @abstractmethod
    def delete_many(
        self, keys: list[str], require_all: bool = False
    ) -> tuple[list[str], list[str]]:
        """(deleted, missing); with ``require_all`` nothing is deleted if any is missing."""

    @abstractmethod
    def info(self) -> StoreInfo:
        """Counts, sizes and the state of the store."""

    @abstractmethod
    def close(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds for operations in progress, then release
        everything; later calls fail."""
