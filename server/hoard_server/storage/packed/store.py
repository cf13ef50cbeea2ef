"""The packed blob store: objects in append-only pack files, located by an LMDB index.

Built from parts that each stand alone: ``ObjectIndex`` (where every object is),
``PackWriter`` (group commit of new records), ``PackReader`` and ``ObjectReader`` (the read
path), ``StagedUpload`` (large uploads), ``Codec`` (compression and checks), ``Activity``
(operations in progress) and ``DictionaryTrainer``. This module wires them together and
owns the rules that span several: dedup, durability of puts, deletion accounting, and the
retirement of packs compaction emptied.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor

from hoard_server.errors import (
    FailedPrecondition,
    InvalidArgument,
    ObjectNotFound,
    OutOfRange,
    RepositoryNotFound,
)
from hoard_server.reports import PackReport, StoreInfo
from hoard_server.storage.activity import Activity
from hoard_server.storage.blobstore import READ_MANY_INLINE, BlobStore, ObjectStat
from hoard_server.storage.codec import Codec
from hoard_server.storage.index import ObjectIndex, PackState
from hoard_server.storage.keys import KEY_FORMAT, format_key, key_of, parse_key, parse_keys
from hoard_server.storage.layout import RepositoryLayout
from hoard_server.storage.pack import PACK_MAGIC, Encoding, PackReader
from hoard_server.storage.packed.dictionary import DictionaryTrainer
from hoard_server.storage.packed.reads import ObjectReader
from hoard_server.storage.packed.recovery import recover
from hoard_server.storage.settings import StorageSettings
from hoard_server.storage.staging import StagedUpload
from hoard_server.storage.writer import NewRecord, PackWriter

log = logging.getLogger(__name__)

INLINE_LIMIT = 8 << 20  # streamed puts up to this size are encoded in memory
CLOSE_WAIT = 30.0  # seconds close() waits for operations in progress
RETIRE_WAIT = 30.0  # seconds compaction waits for readers before deferring a pack's deletion
_LIST_BATCH = 10_000  # keys list_keys reads per activity hold


class PackedStore(BlobStore):
    """A ``BlobStore`` over packs and an LMDB index in ``layout``.

    The engine parts are public attributes for maintenance (``hoard_server.maintenance``)
    to be handed the ones it needs: ``index``, ``reader`` (pack bytes), ``writer``,
    ``codec``, ``activity``.
    """

    def __init__(
        self, name: str, layout: RepositoryLayout, settings: StorageSettings, pool: Executor
    ) -> None:
        self.name = name
        self.layout = layout
        self.settings = settings
        self._pool = pool
        self.index = ObjectIndex(layout.index_dir, settings.index_map_size)
        raw_uuid = self.index.get_meta("uuid")
        if raw_uuid is None:
            self.index.close()
            raise FailedPrecondition(
                f"repository {name!r} at {layout.root} was never initialised",
                reason="REPOSITORY_NOT_INITIALISED",
                repository=name,
                path=layout.root,
            )
        self.uuid = raw_uuid.decode()
        self.created_at = float(self.index.get_meta("created_at") or b"0")
        self.codec = Codec(
            settings.compression_level, settings.frame_compression_level, settings.frame_size
        )
        dicts = self.index.dictionaries()
        for i, (_, data) in enumerate(sorted(dicts.items())):
            self.codec.add_dictionary(data, use_for_writes=i == len(dicts) - 1)
        current, next_id = recover(name, self.index, layout, settings.pack_max_bytes)
        self.reader = PackReader(layout.pack_path)
        self.writer = PackWriter(self.index, layout, settings.pack_max_bytes, current, next_id)
        self.activity = Activity(name)
        self._objects = ObjectReader(self.index, self.reader, self.codec, self.activity, pool)
        self._trainer = (
            DictionaryTrainer(
                name, self.index, self.codec, self.activity, settings.compression_level
            )
            if settings.train_dictionary
            else None
        )
        # packs gone from the index whose files wait for their last readers: (pack, epoch)
        self._retired: list[tuple[int, int]] = []
        self._retired_lock = threading.Lock()

    @property
    def path(self) -> str:
        return self.layout.root

    def pack_path(self, pack_id: int) -> str:
        return self.layout.pack_path(pack_id)

    def close(self, timeout: float | None = CLOSE_WAIT) -> None:
        """Wait (at most ``timeout`` seconds) for operations in progress, commit what is
        queued, release files. Operations still running then fail on closed files; nothing
        acknowledged depends on them."""
        if not self.activity.close(timeout):
            log.warning(
                "repository %s: closing while operations are still running after %.0fs",
                self.name,
                timeout,
            )
        self.writer.close()
        self.reader.close()
        self.index.close()

    # -- writes -------------------------------------------------------------------------
    def put_many(self, objects: list[bytes]) -> list[tuple[str, bool]]:
        return self._put(objects, [key_of(o) for o in objects])

    def _put(self, objects: list[bytes], digests: list[bytes]) -> list[tuple[str, bool]]:
        """Store ``objects`` whose digests the caller computed (once)."""
        with self.activity.hold():
            present = self.index.has_many(digests)
            slots = [i for i, p in enumerate(present) if not p]
            todo = [objects[i] for i in slots]
            records = []
            for i, data, (enc, parts) in zip(
                slots, todo, self.codec.encode_batch(todo), strict=True
            ):
                records.append(NewRecord(digests[i], len(data), enc, parts))
                if enc == Encoding.ZSTD and self._trainer is not None:
                    self._trainer.sample(data)
            created = [False] * len(objects)
            if records:
                for i, c in zip(slots, self.writer.submit(records).result(), strict=True):
                    created[i] = c
            return [(format_key(d), c) for d, c in zip(digests, created, strict=True)]

    def put_stream(
        self, chunks: Iterable[bytes], expected_key: str = "", size: int | None = None
    ) -> tuple[str, int, bool]:
        """See ``BlobStore.put_stream``.

        A declared ``size`` above INLINE_LIMIT streams straight to a staging file; without
        one, the upload is held in memory until it passes INLINE_LIMIT. ``chunks`` may wait
        on a client for as long as it likes: the activity hold is taken only to commit, so
        an idle upload never holds back compaction, shutdown or erasure. An upload still
        arriving when the store closes fails with NOT_FOUND at commit.
        """
        expected = parse_key(expected_key) if expected_key else None
        if size is not None and size < 0:
            raise InvalidArgument(
                f"the upload announced {size} bytes", reason="INVALID_SIZE", size=size
            )
        parts: list[bytes] = []  # joined once at the end: no copy per chunk
        buffered = 0
        staged: StagedUpload | None = None
        try:
            if size is not None and size > INLINE_LIMIT:
                staged = self._stage()
            for chunk in chunks:
                if staged is not None:
                    staged.write(chunk)
                    received = staged.raw_size
                else:
                    parts.append(chunk)
                    buffered += len(chunk)
                    received = buffered
                    if buffered > INLINE_LIMIT:
                        staged = self._stage()
                        for part in parts:
                            staged.write(part)
                        parts = []
                if size is not None and received > size:
                    _size_mismatch(size, received, more=True)
            raw_size = staged.raw_size if staged is not None else buffered
            if size is not None and size != raw_size:
                _size_mismatch(size, raw_size)
            if staged is None:
                data = parts[0] if len(parts) == 1 and type(parts[0]) is bytes else b"".join(parts)
                del parts
                digest = key_of(data)  # the one hash of this upload
                _check_expected(digest, expected)
                ((key, created),) = self._put([data], [digest])  # takes its own hold
                return key, raw_size, created
            record = staged.finish()  # hashed as it was written
            staged = None
        except BaseException:
            if staged is not None:
                staged.abort()
            raise
        try:
            _check_expected(record.digest, expected)
            with self.activity.hold():
                if self.index.has_many([record.digest])[0]:
                    os.unlink(record.path)
                    return format_key(record.digest), raw_size, False
                (created,) = self.writer.submit([record]).result()
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(record.path)
            raise
        return format_key(record.digest), raw_size, created

    def _stage(self) -> StagedUpload:
        if self.activity.closing:
            raise RepositoryNotFound(self.name)
        return StagedUpload(self.layout.staging_dir, self.codec, self._pool)

    # -- reads --------------------------------------------------------------------------
    def read(
        self, key: str, offset: int = 0, length: int | None = None
    ) -> tuple[int, Iterator[bytes]]:
        if offset < 0 or (length is not None and length < 0):
            raise InvalidArgument(
                "offset and length must not be negative",
                reason="INVALID_RANGE",
                key=key,
                offset=offset,
                length=length,
            )
        digest = parse_key(key)
        with self.activity.hold() as epoch:
            (loc,) = self.index.get_many([digest])  # the one look-up, unless compaction moves it
        if loc is None:
            raise ObjectNotFound([key])
        if offset > loc.raw_size:
            raise OutOfRange(
                f"offset {offset} is past the end of object {key} ({loc.raw_size} bytes)",
                reason="OFFSET_OUT_OF_RANGE",
                key=key,
                offset=offset,
                size=loc.raw_size,
            )
        n = loc.raw_size - offset if length is None else min(length, loc.raw_size - offset)
        return loc.raw_size, self._objects.stream(key, digest, loc, epoch, offset, n)

    def read_many(
        self, keys: list[str], inline_limit: int = READ_MANY_INLINE
    ) -> Iterator[tuple[str, int, bytes | None]]:
        """See ``BlobStore.read_many``: in storage order."""
        digests = parse_keys(keys)
        with self.activity.hold() as epoch:
            locs = self.index.get_many(digests)
        missing = [k for k, loc in zip(keys, locs, strict=True) if loc is None]
        if missing:
            raise ObjectNotFound(missing)
        return self._objects.many(keys, digests, locs, epoch, inline_limit)  # type: ignore[arg-type]

    def has_many(self, keys: list[str]) -> list[bool]:
        digests = parse_keys(keys)
        with self.activity.hold():
            return self.index.has_many(digests)

    def stat_many(self, keys: list[str]) -> list[ObjectStat]:
        digests = parse_keys(keys)
        with self.activity.hold():
            locs = self.index.get_many(digests)
        return [
            ObjectStat(k, False)
            if loc is None
            else ObjectStat(k, True, loc.raw_size, loc.stored_size, loc.encoding.label, loc.pack_id)
            for k, loc in zip(keys, locs, strict=True)
        ]

    def list_keys(self, page_token: str = "", limit: int | None = None) -> Iterator[str]:
        if page_token:
            try:
                after: bytes | None = parse_key(page_token)
            except InvalidArgument:
                raise InvalidArgument(
                    f"page token {page_token[:80]!r} is not one this server handed out",
                    reason="INVALID_PAGE_TOKEN",
                ) from None
        else:
            after = None
        return self._list(after, limit)

    def _list(self, after: bytes | None, limit: int | None) -> Iterator[str]:
        # A batch of keys per hold, yielded after it is released (no hold across a yield).
        left = limit
        while left is None or left > 0:
            n = _LIST_BATCH if left is None else min(left, _LIST_BATCH)
            with self.activity.hold():
                batch = list(itertools.islice(self.index.iter_digests(after), n))
            yield from (format_key(d) for d in batch)
            if len(batch) < n:
                return
            after = batch[-1]
            if left is not None:
                left -= len(batch)

    # -- deletion -----------------------------------------------------------------------
    def delete_many(
        self, keys: list[str], require_all: bool = False
    ) -> tuple[list[str], list[str]]:
        """Logically delete; return (deleted, missing). Space comes back via compaction."""
        unique = list(dict.fromkeys(keys))
        digests = parse_keys(unique)
        with self.activity.hold():
            index = self.index
            with index.write() as txn:
                locs = [index.get(txn, d) for d in digests]
                missing = [k for k, loc in zip(unique, locs, strict=True) if loc is None]
                if missing and require_all:
                    txn.abort()
                    return [], missing
                totals = index.totals(txn)
                dead: dict[int, int] = {}
                deleted = []
                for k, d, loc in zip(unique, digests, locs, strict=True):
                    if loc is None:
                        continue
                    index.delete(txn, d)
                    dead[loc.pack_id] = dead.get(loc.pack_id, 0) + loc.stored_size
                    totals.objects -= 1
                    totals.raw_bytes -= loc.raw_size
                    totals.stored_bytes -= loc.stored_size
                    deleted.append(k)
                for pid, n in dead.items():
                    state = index.get_pack(txn, pid) or PackState(end=0)
                    state.dead_bytes += n
                    index.put_pack(txn, pid, state)
                index.put_totals(txn, totals)
            return deleted, missing

    # -- reporting ----------------------------------------------------------------------
    def info(self) -> StoreInfo:
        with self.activity.hold():
            with self.index.read() as txn:
                totals = self.index.totals(txn)
                packs = self.index.packs(txn)
                meta = {
                    m: self.index.get_meta(m, txn)
                    for m in ("last_maintenance", "last_verification", "last_verification_errors")
                }
            on_disk = 0
            for root, _dirs, files in os.walk(self.layout.root):
                for f in files:
                    with contextlib.suppress(FileNotFoundError):
                        on_disk += os.path.getsize(os.path.join(root, f))
        magic = len(PACK_MAGIC)
        return StoreInfo(
            repository=self.name,
            uuid=self.uuid,
            key_format=KEY_FORMAT,
            object_count=totals.objects,
            raw_bytes=totals.raw_bytes,
            stored_bytes=totals.stored_bytes,
            on_disk_bytes=on_disk,
            pack_count=len(packs),
            reclaimable_bytes=sum(s.dead_bytes for s in packs.values()),
            has_dictionary=self.codec.has_dictionary,
            compression_ratio=(
                totals.raw_bytes / totals.stored_bytes if totals.stored_bytes else 1.0
            ),
            last_maintenance=float(meta["last_maintenance"] or 0),
            last_verification=float(meta["last_verification"] or 0),
            last_verification_errors=int(meta["last_verification_errors"] or 0),
            packs=tuple(
                PackReport(
                    pack_id=pid,
                    size=s.end,
                    live_bytes=max(0, s.end - magic - s.dead_bytes),
                    dead_bytes=s.dead_bytes,
                    single_object=s.single,
                )
                for pid, s in sorted(packs.items())
            ),
        )

    # -- packs compaction emptied -----------------------------------------------------------
    def drop_pack_file(self, pack_id: int, timeout: float = RETIRE_WAIT) -> None:
        """Delete the file of a pack the index no longer knows, once no reader can still hold
        a location in it; wait at most ``timeout`` seconds for such readers.

        If they do not finish in time the file stays and is deleted by a later call, the next
        maintenance run, or at start-up (which deletes pack files unknown to the index): the
        pack is already gone from the index, so nothing new can reach it.
        """
        epoch = self.activity.new_epoch()
        with self._retired_lock:
            self._retired.append((pack_id, epoch))
        if not self.activity.readers_done(epoch, timeout):
            log.warning(
                "repository %s: pack %d still has readers after %.0fs; it is deleted later",
                self.name,
                pack_id,
                timeout,
            )
        self.drop_retired_packs()

    def drop_retired_packs(self) -> None:
        """Delete the files of retired packs whose last readers have finished."""
        with self._retired_lock:
            ready = [(p, e) for p, e in self._retired if self.activity.readers_done(e)]
            self._retired = [r for r in self._retired if r not in ready]
        for pack_id, _ in ready:
            self.reader.forget(pack_id)
            self.forget_pack(pack_id)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.layout.pack_path(pack_id))
            log.info("repository %s: pack %d compacted away", self.name, pack_id)

    def forget_pack(self, pack_id: int) -> None:
        """Drop cached state of a pack that no longer exists (or was rewritten in place)."""
        self._objects.forget_pack(pack_id)


def _size_mismatch(declared: int, received: int, more: bool = False) -> None:
    sent = f"more than {declared}" if more else str(received)
    raise InvalidArgument(
        f"the upload announced {declared} bytes but sent {sent}; nothing was stored",
        reason="SIZE_MISMATCH",
        declared=declared,
        received=received,
    )


def _check_expected(digest: bytes, expected: bytes | None) -> None:
    if expected is not None and digest != expected:
        raise InvalidArgument(
            f"content hashes to {digest.hex()}, not the expected key {expected.hex()}; "
            "nothing was stored",
            reason="HASH_MISMATCH",
            key=expected.hex(),
            actual=digest.hex(),
        )
