"""Objects: the content-addressed store as users see it, over the storage engine.

Plain Python: the rules a request must follow (the Put protocol, range limits, argument
ranges, backup destinations) and how replies are cut into messages, whatever carries them.
Errors are the domain errors of ``hoard_server.errors``; a transport maps them once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass

from hoard_server.errors import HoardError, InvalidArgument
from hoard_server.maintenance.backup import backup, resolve_destination
from hoard_server.reports import (
    BackupProgress,
    MaintenanceProgress,
    StoreInfo,
    VerifyProgress,
)
from hoard_server.services.batching import Batch, ResponseBudget, batches
from hoard_server.services.repositories import open_repository
from hoard_server.storage.registry import RepositoryRegistry
from hoard_server.storage.repository import ObjectStat, Repository

MESSAGE_BYTES = 1 << 20  # gather small objects or frames into messages of about this size
# ReadMany inlines objects up to this size; larger ones the client reads with Read. With
# MESSAGE_BYTES this keeps one message under ~5 MiB, whatever inline_limit asks for.
MAX_INLINE = 4 << 20
MAX_READ_MANY_ITEMS = 8192  # objects per ReadMany message
MAX_RANGE = 16 << 20  # bytes one read_range may return
LIST_CHUNK = 10_000  # keys per message of a whole (unpaged) listing
RANGE_BUDGET_WAIT = 1.0  # a one-reply read waits at most this long for response budget


# -- the Put protocol's parts ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PutHeader:
    """First part of an upload. ``size``: declared in advance (None: a PutFinish ends it)."""

    repository: str
    expected_key: str = ""
    size: int | None = None


@dataclass(frozen=True, slots=True)
class PutFinish:
    """Last part of an upload without a declared size: everything (``size`` bytes) was sent."""

    size: int


PutPart = PutHeader | bytes | PutFinish | None  # None: a message that holds no part


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    raw_size: int
    created: bool  # False: it was already stored


@dataclass(frozen=True, slots=True)
class RangeReply:
    """A range read in one reply. ``reserved`` response-budget bytes are the caller's to
    release once the reply has left (or could not be built)."""

    object_size: int
    data: bytes
    reserved: int


@dataclass(frozen=True, slots=True)
class KeyPage:
    keys: list[str]
    next_page_token: str = ""  # empty: nothing more


ReadManyItem = tuple[str, int, bytes | None]  # key, size, content (None: not inlined)


class ObjectService:
    """Object operations on the repositories of ``registry``.

    Replies that may be large (``read``, ``read_many``, ``read_range``) reserve their bytes
    from ``budget`` first; each ``Batch`` says what its sender must release once it is sent.
    """

    def __init__(
        self,
        registry: RepositoryRegistry,
        budget: ResponseBudget,
        backup_roots: tuple[str, ...] = (),
    ) -> None:
        self._registry = registry
        self._budget = budget
        self._backup_roots = backup_roots

    def _repo(self, name: str) -> Repository:
        return open_repository(self._registry, name)

    # -- writes ---------------------------------------------------------------------------

    def put(self, parts: Iterator[PutPart], is_active: Callable[[], bool]) -> StoredObject:
        """Store the object an upload carries: a header, chunks, then (without a declared
        size) a PutFinish whose size matches what arrived.

        An upload counts only if the client ends it properly; one cut short (which a
        transport may present as a normal end of ``parts``) or no longer ``is_active`` when
        its last byte arrived stores nothing and fails with InvalidArgument.
        """
        header = next(parts, None)
        if not isinstance(header, PutHeader):
            raise InvalidArgument("a Put stream must start with a header naming the repository")
        try:
            repo = self._repo(header.repository)
            repo.usage.admit(header.size or 0)
            chunks = _upload_chunks(parts, header.size, is_active)
            key, raw_size, created = repo.put_stream(chunks, header.expected_key, header.size)
        except HoardError as exc:
            exc.details.setdefault("repository", header.repository)
            raise
        return StoredObject(key, raw_size, created)

    def put_batch(self, repository: str, objects: list[bytes]) -> list[StoredObject]:
        repo = self._repo(repository)
        repo.usage.admit(sum(len(o) for o in objects))
        results = repo.put_many(objects)
        return [StoredObject(k, len(o), c) for (k, c), o in zip(results, objects, strict=True)]

    def delete(
        self, repository: str, keys: list[str], require_all: bool = False
    ) -> tuple[list[str], list[str]]:
        """(deleted, missing); with ``require_all``, nothing is deleted if any is missing."""
        return self._repo(repository).delete_many(keys, require_all=require_all)

    # -- reads ----------------------------------------------------------------------------

    def read(
        self, repository: str, key: str, offset: int = 0, length: int | None = None
    ) -> tuple[int, Iterator[Batch[bytes]]]:
        """(object size, the range's chunks in batches of about MESSAGE_BYTES). There is at
        least one batch, so that an empty range still tells the size."""
        size, chunks = self._repo(repository).read(key, offset, length)
        return size, batches(chunks, len, self._budget, MESSAGE_BYTES, send_empty=True)

    def read_range(self, repository: str, key: str, offset: int, length: int | None) -> RangeReply:
        """At most MAX_RANGE bytes in one reply; ``length`` is required."""
        if length is None or length > MAX_RANGE:
            raise InvalidArgument(
                f"ReadRange reads at most {MAX_RANGE} bytes and needs a length; "
                "use Read to stream larger ranges"
            )
        size, chunks = self._repo(repository).read(key, offset, length)
        # A short call: wait briefly for budget, if at all.
        reserved = self._budget.acquire(
            min(length, size - offset), min(RANGE_BUDGET_WAIT, self._budget.wait)
        )
        try:
            return RangeReply(size, b"".join(chunks), reserved)
        except BaseException:
            self._budget.release(reserved)
            raise

    def read_many(
        self, repository: str, keys: list[str], inline_limit: int = 0
    ) -> Iterator[Batch[ReadManyItem]]:
        """Objects in storage order, in batches of about MESSAGE_BYTES of inlined content.
        Objects over ``inline_limit`` (0: MAX_INLINE; never more) come as their size only."""
        limit = min(inline_limit or MAX_INLINE, MAX_INLINE)
        items = self._repo(repository).read_many(keys, limit)
        return batches(
            items,
            lambda item: len(item[2]) if item[2] is not None else 0,
            self._budget,
            MESSAGE_BYTES,
            max_items=MAX_READ_MANY_ITEMS,
        )

    def has(self, repository: str, keys: list[str]) -> list[bool]:
        return self._repo(repository).has_many(keys)

    def stat(self, repository: str, keys: list[str]) -> list[ObjectStat]:
        return self._repo(repository).stat_many(keys)

    def list(self, repository: str, page_size: int = 0, page_token: str = "") -> Iterator[KeyPage]:
        """Keys in key order after ``page_token``: one page of ``page_size`` keys with the
        token of the next, or (``page_size`` 0) every key in pages of LIST_CHUNK."""
        repo = self._repo(repository)
        if page_size:
            keys = list(repo.list_keys(page_token, page_size + 1))
            more = len(keys) > page_size
            keys = keys[:page_size]
            return iter([KeyPage(keys, keys[-1] if more else "")])
        return _pages(repo.list_keys(page_token))

    def info(self, repository: str, detailed: bool = False) -> StoreInfo:
        """What the repository holds; its packs only when ``detailed``."""
        info = self._repo(repository).info()
        return info if detailed else dataclasses.replace(info, packs=())

    # -- maintenance ----------------------------------------------------------------------

    def maintain(
        self, repository: str, dry_run: bool = False, dead_fraction: float = 0.0, max_packs: int = 0
    ) -> Generator[MaintenanceProgress, None, None]:
        """Live compaction's progress; closing the generator stops after the current pack."""
        if not 0 <= dead_fraction <= 1:
            raise InvalidArgument(
                f"dead_fraction must lie in [0, 1], not {dead_fraction}", setting="dead_fraction"
            )
        progress = self._repo(repository).maintain(
            dry_run=dry_run, dead_fraction=dead_fraction, max_packs=max_packs
        )
        return progress

    def verify(
        self, repository: str, pack_id: int = 0, sample: float = 0.0
    ) -> Iterator[VerifyProgress]:
        """Re-read and re-hash objects (all, one pack, or a ``sample`` fraction)."""
        if not 0 <= sample <= 1:
            raise InvalidArgument(f"sample must lie in [0, 1], not {sample}", setting="sample")
        return self._repo(repository).verify(pack_id, sample)

    def backup(self, repository: str, destination: str) -> Iterator[BackupProgress]:
        """Snapshot the repository into ``destination``, which must lie under a backup root."""
        try:
            root, real = resolve_destination(
                destination, self._backup_roots, self._registry.data_dir
            )
        except HoardError as exc:
            exc.details.setdefault("path", destination)
            raise
        return backup(self._repo(repository), real, root)


def _upload_chunks(
    parts: Iterator[PutPart], size: int | None, is_active: Callable[[], bool]
) -> Iterator[bytes]:
    """The chunks after the header, enforcing the rest of the Put protocol as they come."""
    received = 0
    finished = False
    for part in parts:
        if finished:
            raise InvalidArgument("PutFinish must be the last message of a Put stream")
        if isinstance(part, bytes):
            received += len(part)
            yield part
        elif isinstance(part, PutFinish):
            if part.size != received:
                raise InvalidArgument(
                    f"PutFinish says {part.size} bytes but {received} arrived; nothing was stored"
                )
            finished = True
        elif isinstance(part, PutHeader):
            raise InvalidArgument("only the first message of a Put stream may be a header")
        else:
            raise InvalidArgument("a Put message must hold a header, a chunk or a finish")
    if not finished and size is None:
        raise InvalidArgument(
            f"the upload was incomplete: the stream ended after {received} bytes "
            "without a PutFinish message (nor a declared size); nothing was stored"
        )
    if not is_active():
        raise InvalidArgument("the upload was cancelled; nothing was stored")


def _pages(keys: Iterable[str]) -> Iterator[KeyPage]:
    page: list[str] = []
    for key in keys:
        page.append(key)
        if len(page) >= LIST_CHUNK:
            yield KeyPage(page)
            page = []
    if page:
        yield KeyPage(page)
