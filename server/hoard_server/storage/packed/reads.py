"""The read path of the packed store: index entries to checked bytes.

Reads never keep an activity hold across a yield: the consumer may be a client that stops
reading, and a hold kept meanwhile would hold pack retirement (``drop_pack_file``) and
shutdown back. Each frame (or batch of small objects) is read under a short hold of its
own. A location found under a hold of reader epoch ``e`` stays readable under any later
hold of epoch ``e`` (packs are retired only after a new epoch opens), so the index is looked
up again only when the epoch moved on, i.e. when compaction may have moved the object.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from typing import TypeVar

from hoard_server.errors import DataLoss, ObjectNotFound
from hoard_server.storage.activity import Activity
from hoard_server.storage.codec import Codec, FrameTable
from hoard_server.storage.index import Location, ObjectIndex
from hoard_server.storage.pack import Encoding, PackReader

_COALESCE_SPAN = 4 << 20  # read neighbouring records in one pread up to this span
_COALESCE_GAP = 64 << 10
_PREFETCH = 8  # frames decoded ahead of the one being sent
_READ_MANY_BATCH = 4 << 20  # raw bytes read_many decodes per activity hold
_TABLES_CACHED = 512

T = TypeVar("T")


def _hashed(chunks: Iterator[bytes], digest: bytes) -> Iterator[bytes]:
    """Pass ``chunks`` through; DataLoss after the last one unless they hash to ``digest``."""
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
        yield chunk
    if h.digest() != digest:
        raise DataLoss(
            "stored object does not hash to its key (damaged on disk)",
            reason="HASH_MISMATCH",
            key=digest.hex(),
        )


class ObjectReader:
    """Decodes objects from packs for one store; thread-safe."""

    def __init__(
        self,
        index: ObjectIndex,
        packs: PackReader,
        codec: Codec,
        activity: Activity,
        pool: Executor,
    ) -> None:
        self._index = index
        self._packs = packs
        self._codec = codec
        self._activity = activity
        self._pool = pool
        self._tables: OrderedDict[tuple[int, int], FrameTable] = OrderedDict()
        self._tables_lock = threading.Lock()

    def forget_pack(self, pack_id: int) -> None:
        """Drop cached frame tables of a pack that no longer exists (or was rewritten)."""
        with self._tables_lock:
            for k in [k for k in self._tables if k[0] == pack_id]:
                del self._tables[k]

    # -- locations ------------------------------------------------------------------------
    def relocate(
        self, digests: list[bytes], keys: list[str], before: list[Location]
    ) -> list[Location]:
        """Where objects are now, for a read that resumes in a later epoch (call it under
        that hold): compaction may have moved them since. An object deleted meanwhile is
        still read from its old place while that pack is registered in the index (its file
        then stays until the hold ends); otherwise ObjectNotFound."""
        now = self._index.get_many(digests)
        gone = [i for i, loc in enumerate(now) if loc is None]
        if not gone:
            return now  # type: ignore[return-value]
        with self._index.read() as txn:
            for i in gone:
                if self._index.get_pack(txn, before[i].pack_id) is None:
                    raise ObjectNotFound([keys[i]])
                now[i] = before[i]
        return now  # type: ignore[return-value]

    # -- decoding (call under a hold) ---------------------------------------------------------
    def frame_table(self, loc: Location) -> FrameTable:
        k = (loc.pack_id, loc.offset)
        with self._tables_lock:
            t = self._tables.get(k)
            if t is not None:
                self._tables.move_to_end(k)
                return t
        end = loc.body_offset + loc.body_size
        n = FrameTable.trailer_length(self._packs.read(loc.pack_id, end - 4, 4), loc.body_size)
        t = FrameTable.decode(self._packs.read(loc.pack_id, end - 4 - n, n))
        t.check_fits(loc.raw_size, loc.body_size)  # before any of it is used, or cached
        with self._tables_lock:
            self._tables[k] = t
            while len(self._tables) > _TABLES_CACHED:
                self._tables.popitem(last=False)
        return t

    def decode_whole(self, loc: Location, digest: bytes) -> bytes:
        """The object at ``loc``, checked against ``digest``."""
        if loc.encoding == Encoding.FRAMES:
            table = self.frame_table(loc)
            parts: Iterator[bytes] = (
                self._frame_part(loc, table, i, 0, loc.raw_size) for i in range(len(table.stored))
            )
            if not table.checks_all:  # compressed frames of an older table: hash it too
                parts = _hashed(parts, digest)
            return b"".join(parts)
        body = self._packs.read(loc.pack_id, loc.body_offset, loc.body_size)
        return self._codec.decode_small(loc.encoding, body, loc.raw_size, digest)

    def _frame_part(self, loc: Location, table: FrameTable, i: int, offset: int, end: int) -> bytes:
        """Frame ``i`` of the object at ``loc``, checked, cut to [offset, end)."""
        start = i * table.frame_size
        n = min(table.frame_size, loc.raw_size - start)
        body = self._packs.read(loc.pack_id, loc.body_offset + table.offsets[i], table.stored[i])
        data = self._codec.decode_frame(body, table.raw[i], n, table.crc[i], table.checks_all)
        lo, hi = max(offset, start) - start, min(end, start + n) - start
        return data if lo == 0 and hi == n else data[lo:hi]

    def _prefetched(self, work: Callable[[int], T], items: Iterable[int]) -> Iterator[T]:
        """``work(item)`` for each item in order, up to _PREFETCH of them running ahead on
        the codec pool while earlier results are consumed."""
        items = list(items)
        if len(items) <= 1:  # one frame (a small ranged read): no thread hop
            yield from map(work, items)
            return
        ahead: collections.deque = collections.deque()
        it = iter(items)
        try:
            for item in itertools.islice(it, _PREFETCH + 1):
                ahead.append(self._pool.submit(work, item))
            while ahead:
                result = ahead.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    ahead.append(self._pool.submit(work, nxt))
                yield result
        finally:
            for f in ahead:
                f.cancel()

    # -- one object ---------------------------------------------------------------------------
    def stream(
        self, key: str, digest: bytes, loc: Location, epoch: int, offset: int, length: int
    ) -> Iterator[bytes]:
        """Chunks of [offset, offset + length) of the object found at ``loc`` under a hold
        of ``epoch``; each frame read under a hold of its own and decoded ahead on the pool."""
        if length == 0:
            return
        end = offset + length
        # (location, the epoch it was found valid in, its frame table or None), replaced
        # whole so that the prefetching threads always see a consistent triple
        latest: list[tuple[Location, int, FrameTable | None]] = [(loc, epoch, None)]

        def where(now_epoch: int) -> tuple[Location, FrameTable | None]:
            """The object's location for a hold of ``now_epoch``; call under that hold."""
            found, found_epoch, table = latest[0]
            if found_epoch != now_epoch:
                (now,) = self.relocate([digest], [key], [found])
                if now != found:
                    table = None
                found = now
                latest[0] = (found, now_epoch, table)
            return found, table

        if loc.encoding != Encoding.FRAMES:
            with self._activity.hold() as now_epoch:
                loc, _ = where(now_epoch)
                data = self.decode_whole(loc, digest)
            yield data if (offset == 0 and length == len(data)) else data[offset:end]
            return
        with self._activity.hold() as now_epoch:
            loc, _ = where(now_epoch)
            table = self.frame_table(loc)
            latest[0] = (loc, now_epoch, table)
        # a whole read of a frame table without per-frame check values: hash it as well
        hasher = hashlib.sha256() if length == loc.raw_size and not table.checks_all else None

        def frame(i: int) -> bytes:
            with self._activity.hold() as now_epoch:
                now, now_table = where(now_epoch)
                if now_table is None:
                    now_table = self.frame_table(now)  # moved: the copy has the same frames
                    latest[0] = (now, now_epoch, now_table)
                return self._frame_part(now, now_table, i, offset, end)

        for chunk in self._prefetched(frame, table.frames_for(offset, length)):
            if hasher is not None:
                hasher.update(chunk)
            yield chunk
        if hasher is not None and hasher.digest() != digest:
            raise DataLoss(
                "stored object does not hash to its key (damaged on disk)",
                reason="HASH_MISMATCH",
                key=key,
            )

    # -- many objects -------------------------------------------------------------------------
    def many(
        self,
        keys: list[str],
        digests: list[bytes],
        first_locs: list[Location],
        epoch: int,
        inline_limit: int,
    ) -> Iterator[tuple[str, int, bytes | None]]:
        """(key, size, content or None) in storage order, for locations found under a hold
        of ``epoch``: batches of about _READ_MANY_BATCH raw bytes, each decoded under a
        hold of its own and yielded after it is released."""
        order = sorted(
            range(len(keys)), key=lambda i: (first_locs[i].pack_id, first_locs[i].offset)
        )
        pos = 0
        while pos < len(order):
            batch: list[int] = []
            raw = 0
            while pos < len(order) and (not batch or raw < _READ_MANY_BATCH):
                i = order[pos]
                pos += 1
                batch.append(i)
                if first_locs[i].raw_size <= inline_limit:
                    raw += first_locs[i].raw_size
            with self._activity.hold() as now_epoch:
                if now_epoch == epoch:
                    locs = {i: first_locs[i] for i in batch}
                else:
                    now = self.relocate(
                        [digests[i] for i in batch],
                        [keys[i] for i in batch],
                        [first_locs[i] for i in batch],
                    )
                    locs = dict(zip(batch, now, strict=True))
                out = list(self._decode_many(keys, digests, locs, inline_limit))
            yield from out

    def _decode_many(
        self, keys: list[str], digests: list[bytes], locs: dict[int, Location], inline_limit: int
    ) -> Iterator[tuple[str, int, bytes | None]]:
        """Decode the objects ``locs`` names (index into keys -> location), in storage order,
        reading neighbouring records in one pread. Call under an activity hold."""
        order = sorted(locs, key=lambda i: (locs[i].pack_id, locs[i].offset))
        run: list[int] = []

        def flush_run() -> Iterator[tuple[str, int, bytes | None]]:
            first, last = locs[run[0]], locs[run[-1]]
            start = first.body_offset
            span = self._packs.read(first.pack_id, start, last.body_offset + last.body_size - start)
            view = memoryview(span)
            items = []
            for i in run:
                loc = locs[i]
                lo = loc.body_offset - start
                items.append(
                    (loc.encoding, view[lo : lo + loc.body_size], loc.raw_size, digests[i])
                )
            for i, data in zip(run, self._codec.decode_batch(items, self._pool), strict=True):
                yield keys[i], locs[i].raw_size, data

        for i in order:
            loc = locs[i]
            if loc.encoding == Encoding.FRAMES or loc.raw_size > inline_limit:
                if run:
                    yield from flush_run()
                    run = []
                if loc.raw_size > inline_limit:  # whatever its encoding: the caller reads it
                    yield keys[i], loc.raw_size, None
                else:
                    yield keys[i], loc.raw_size, self.decode_whole(loc, digests[i])
                continue
            if run:
                prev, first = locs[run[-1]], locs[run[0]]
                if (
                    loc.pack_id != prev.pack_id
                    or loc.offset < prev.offset
                    or loc.body_offset - (prev.body_offset + prev.body_size) > _COALESCE_GAP
                    or loc.body_offset + loc.body_size - first.body_offset > _COALESCE_SPAN
                ):
                    yield from flush_run()
                    run = []
            run.append(i)
        if run:
            yield from flush_run()
