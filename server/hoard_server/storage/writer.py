"""The pack writer: appends records to packs and indexes them, one group commit at a time.

Durability order, for every group of puts gathered from the queue:

1. append the new records to the current pack (pwritev at the committed end);
2. fdatasync every pack touched; rename staged single-object packs into place and fsync the
   packs directory;
3. one LMDB write transaction with every index entry, the packs' new committed ends and the
   repository totals, committed with fsync;
4. only then resolve the callers' futures: a put is acknowledged after (2) and (3).

A crash before (3) leaves bytes past a pack's committed end (cut off at the next start-up)
or a pack file the index does not know (deleted at start-up); neither is ever visible.
A failure in (1)-(3) truncates the packs back and fails the whole group; puts are
idempotent, so callers simply retry.

The batching itself (a writer thread, one commit per group of submissions) is
``group_commit.GroupCommit``; this module is what one commit does with pack records.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import lmdb

from hoard_server.errors import StorageFull
from hoard_server.storage.group_commit import GroupCommit
from hoard_server.storage.index import LOCATION, ObjectIndex, PackState, Txn
from hoard_server.storage.layout import RepositoryLayout
from hoard_server.storage.pack import (
    HEADER_SIZE,
    PACK_MAGIC,
    RECORD_HEADER,
    RECORD_MAGIC,
    Encoding,
    PackAppender,
    create_pack,
    fsync_dir,
    raise_if_full,
)

_GROUP_BYTES = 64 << 20  # stop gathering a group past this many body bytes


@dataclass(slots=True)
class NewRecord:
    """An encoded object held in memory, to be appended to the current pack."""

    digest: bytes
    raw_size: int
    encoding: Encoding
    parts: list[bytes]
    body_size: int = 0

    def __post_init__(self) -> None:
        if not self.body_size:
            parts = self.parts
            self.body_size = len(parts[0]) if len(parts) == 1 else sum(map(len, parts))


@dataclass(slots=True)
class StagedRecord:
    """A complete, fsynced single-record pack file in the staging directory."""

    digest: bytes
    raw_size: int
    encoding: Encoding
    body_size: int
    path: str


@dataclass(slots=True)
class RelocatedRecord:
    """A live record copied out of a pack being compacted.

    It is committed only if the index still points at ``old_location`` (the encoded
    Location it was read from): an object deleted or moved meanwhile is skipped.
    """

    digest: bytes
    raw_size: int
    encoding: Encoding
    parts: list[bytes]
    body_size: int
    old_location: bytes
    old_pack_id: int


Record = NewRecord | StagedRecord | RelocatedRecord


class PackWriter:
    """Group-commits records for one repository; ``submit`` is safe from any thread."""

    def __init__(
        self,
        index: ObjectIndex,
        layout: RepositoryLayout,
        pack_max_bytes: int,
        current: tuple[int, int] | None,
        next_pack_id: int,
    ) -> None:
        self._index = index
        self._layout = layout
        self._pack_max = pack_max_bytes
        self._next_id = next_pack_id
        self._current_id: int | None = None
        self._appender: PackAppender | None = None
        if current is not None:
            self._current_id = current[0]
            self._appender = PackAppender(layout.pack_path(current[0]), current[1])
        self._group: GroupCommit[Record, bool] = GroupCommit(
            self._commit,
            name=f"pack-writer:{layout.packs_dir}",
            size_of=lambda r: r.body_size,
            group_bytes=_GROUP_BYTES,
            quiet=(StorageFull,),
        )

    @property
    def current_pack_id(self) -> int | None:
        """The pack new records are appended to (never a compaction candidate)."""
        return self._current_id

    @property
    def groups_committed(self) -> int:
        """Commits so far: one pack fsync and one index transaction each."""
        return self._group.groups_committed

    def submit(self, records: Sequence[Record]) -> Future:
        """Queue records; the future resolves to a list of "created" flags once durable."""
        return self._group.submit(records)

    def seal(self) -> Future:
        """Finish the current pack: everything queued before goes in it, later records go
        to a new one. Lets compaction reclaim space in the pack being written."""
        return self._group.submit([], then=self._close_current)

    def _close_current(self) -> None:  # on the writer thread
        if self._appender is not None:
            self._appender.close()
            self._current_id, self._appender = None, None

    def close(self) -> None:
        """Commit everything queued, then stop the thread."""
        self._group.close()
        self._close_current()

    # -- one commit, on the writer thread ----------------------------------------------------
    def _roll_over(self, txn: Txn) -> tuple[int, PackAppender]:
        pack_id = self._next_id
        self._next_id += 1
        path = self._layout.pack_path(pack_id)
        try:
            create_pack(path)
        except OSError as exc:
            raise_if_full(exc, "creating a pack")
        self._index.put_pack(txn, pack_id, PackState(end=len(PACK_MAGIC)))
        return pack_id, PackAppender(path, len(PACK_MAGIC))

    def _commit(self, records: list[Record]) -> list[bool]:
        index = self._index
        results = [False] * len(records)
        seen: set[bytes] = set()
        # pack id -> [appender, buffers, end after this group] for packs this group appends to
        touched: dict[int, list] = {}
        created_packs: list[tuple[int, PackAppender]] = []
        renamed: list[tuple[str, int]] = []
        staged_dups: list[str] = []
        entries: list[tuple[bytes, bytes]] = []
        old_current = (self._current_id, self._appender)
        header = RECORD_HEADER.pack
        location = LOCATION.pack
        magic = RECORD_MAGIC
        txn = index.write()
        try:
            totals = index.totals(txn)
            exists = txn.cursor(db=index.objects_db).set_key
            slot: list | None = None  # touched entry of the current pack
            first_new_id = self._next_id
            moved_out: dict[int, int] = {}
            get_location = txn.get
            for i, rec in enumerate(records):
                if i and not i % 512:
                    time.sleep(0)  # a long group must not starve the threads serving reads
                d = rec.digest
                size = HEADER_SIZE + rec.body_size
                if isinstance(rec, RelocatedRecord):
                    if d in seen or get_location(d, db=index.objects_db) != rec.old_location:
                        continue  # deleted or moved since it was read: nothing to keep
                    moved_out[rec.old_pack_id] = moved_out.get(rec.old_pack_id, 0) + size
                else:
                    if d in seen or exists(d):
                        if isinstance(rec, StagedRecord):
                            staged_dups.append(rec.path)
                        continue
                    totals.objects += 1
                    totals.raw_bytes += rec.raw_size
                    totals.stored_bytes += size
                seen.add(d)
                results[i] = True
                if isinstance(rec, StagedRecord):
                    pack_id = self._next_id
                    self._next_id += 1
                    entries.append(
                        (
                            d,
                            location(
                                pack_id, len(PACK_MAGIC), rec.body_size, rec.raw_size, rec.encoding
                            ),
                        )
                    )
                    renamed.append((rec.path, pack_id))
                    index.put_pack(txn, pack_id, PackState(end=len(PACK_MAGIC) + size, single=True))
                    continue
                if slot is None or (slot[2] + size > self._pack_max and slot[2] > len(PACK_MAGIC)):
                    if (
                        self._appender is None
                        or slot is not None
                        or (
                            self._appender.end + size > self._pack_max
                            and self._appender.end > len(PACK_MAGIC)
                        )
                    ):
                        self._current_id, self._appender = self._roll_over(txn)
                        created_packs.append((self._current_id, self._appender))
                    # the current pack id and its appender are set and cleared together
                    assert self._current_id is not None
                    slot = touched.setdefault(
                        self._current_id, [self._appender, [], self._appender.end]
                    )
                offset = slot[2]
                bufs = slot[1]
                bufs.append(header(magic, rec.encoding, d, rec.raw_size, rec.body_size))
                bufs.extend(rec.parts)
                slot[2] = offset + size
                entries.append(
                    (
                        d,
                        location(
                            self._current_id, offset, rec.body_size, rec.raw_size, rec.encoding
                        ),
                    )
                )
            if not entries:
                txn.abort()
                for p in staged_dups:
                    _unlink(p)
                return results
            # (1)+(2): the bytes, durably
            for pid, (app, bufs, end) in touched.items():
                app.append(bufs)
                if app.end != end:
                    raise RuntimeError(f"pack {pid} end {app.end} != expected {end}")
                app.sync()
                state = index.get_pack(txn, pid) or PackState(end=end)
                state.end = end
                index.put_pack(txn, pid, state)
            for path, pack_id in renamed:
                os.rename(path, self._layout.pack_path(pack_id))
            if renamed:
                fsync_dir(self._layout.packs_dir)
            # (3): the index, in key order (a sorted putmulti touches each page once)
            for pid, n in moved_out.items():
                old_state = index.get_pack(txn, pid)
                if old_state is not None:
                    old_state.dead_bytes += n
                    index.put_pack(txn, pid, old_state)
            if self._next_id != first_new_id:
                index.put_meta(txn, "next_pack_id", str(self._next_id).encode())
            entries.sort()
            txn.cursor(db=index.objects_db).putmulti(entries)
            index.put_totals(txn, totals)
            txn.commit()
        except BaseException as exc:
            txn.abort()
            self._undo(touched, created_packs, renamed, old_current)
            if isinstance(exc, lmdb.MapFullError):
                raise StorageFull(
                    "the object index is full (raise its map size)",
                    setting="index_map_size",
                ) from exc
            if isinstance(exc, OSError):
                raise_if_full(exc, "committing a group of puts")
            raise
        for p in staged_dups:
            _unlink(p)
        # appenders replaced by a roll-over in this group are finished with
        for app in {old_current[1], *(a for _, a in created_packs)}:
            if app is not None and app is not self._appender:
                app.close()
        return results

    def _undo(self, touched, created_packs, renamed, old_current) -> None:
        created_ids = {pid for pid, _ in created_packs}
        for pid, (app, _bufs, _end) in touched.items():
            if pid not in created_ids:
                app.rollback(self._committed_end(pid, app))
        for pid, app in created_packs:
            app.close()
            _unlink(self._layout.pack_path(pid))
        for path, pack_id in renamed:
            _unlink(path)
            _unlink(self._layout.pack_path(pack_id))
        self._current_id, self._appender = old_current

    def _committed_end(self, pid: int, app: PackAppender) -> int:
        with self._index.read() as txn:
            state = self._index.get_pack(txn, pid)
        return state.end if state is not None else app.end


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
