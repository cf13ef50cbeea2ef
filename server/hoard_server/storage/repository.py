"""A repository: one object index, its packs and the writer that appends to them.

Directory layout::

    <repo>/index/        LMDB environment (ObjectIndex)
    <repo>/packs/        00000001.pack, ... (pack format in ``pack.py``)
    <repo>/staging/      large uploads in progress (emptied at start-up)

Opening a repository never scans objects: it checks each pack's size against the committed
end recorded in the index (cutting off crash leftovers), deletes pack files the index does
not know and empties staging. Start-up cost grows with the number of packs only.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import hashlib
import itertools
import logging
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass

import zstandard

from hoard_server.errors import (
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    ObjectNotFound,
    OutOfRange,
    RepositoryNotFound,
)
from hoard_server.storage import modes
from hoard_server.storage.codec import FRAME_SIZE, Codec, FrameTable
from hoard_server.storage.index import Location, ObjectIndex, PackState
from hoard_server.storage.keys import KEY_FORMAT, format_key, parse_key, parse_keys
from hoard_server.storage.pack import PACK_MAGIC, Encoding, PackReader
from hoard_server.storage.staging import StagedUpload
from hoard_server.storage.writer import NewRecord, PackWriter

log = logging.getLogger(__name__)

INLINE_LIMIT = 8 << 20  # streamed puts up to this size are encoded in memory
READ_MANY_INLINE = 8 << 20
_COALESCE_SPAN = 4 << 20  # read neighbouring records in one pread up to this span
_COALESCE_GAP = 64 << 10
_DICT_SAMPLES = 2000
_DICT_SIZE = 64 << 10
_PREFETCH = 8  # frames decoded ahead of the one being sent
CLOSE_WAIT = 30.0  # seconds close() waits for operations in progress
_READ_MANY_BATCH = 4 << 20  # raw bytes read_many decodes per activity hold
_LIST_BATCH = 10_000  # keys list_keys reads per activity hold
RETIRE_WAIT = 30.0  # seconds compaction waits for readers before deferring a pack's deletion


@dataclass(frozen=True)
class StorageSettings:
    pack_max_bytes: int = 4 << 30
    compression_level: int = 3
    frame_compression_level: int = 1
    frame_size: int = FRAME_SIZE
    index_map_size: int = 1 << 40
    train_dictionary: bool = True
    # share of the time live compaction works while clients are active (1.0: never yields)
    maintenance_duty: float = 0.33
    # who besides the daemon's user may read the data: "none", "read" or "write" (its group)
    group_access: str = "none"


@dataclass(frozen=True)
class ObjectStat:
    key: str
    exists: bool
    raw_size: int = 0
    stored_size: int = 0
    encoding: str = ""
    pack_id: int = 0


class _Activity:
    """Operations in progress, so that shutdown and pack retirement can wait for them.

    Readers are counted per epoch. Retiring a pack (compaction) first switches the index,
    then opens a new epoch (``new_epoch``) and waits until every reader that began before it
    has finished (``readers_done``): only those can still hold a location in the old pack.
    Readers that begin later look the object up again and find its new place.

    Invariant: no hold is ever kept while waiting on a client (across a yield to the gRPC
    layer, or while waiting for an upload's next chunk); holds last only as long as the
    daemon's own work, so every wait on them ends.

    ``exclusive`` holds new operations back and waits for running ones to finish, for the
    brief moment the index file is swapped for a compacted copy.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._cond = threading.Condition()
        self._readers: dict[int, int] = {}
        self._others = 0
        self._epoch = 0
        self._closing = False
        self._paused = False
        self.started = 0  # operations begun so far: compaction backs off while this moves

    @contextlib.contextmanager
    def hold(self, reader: bool = True) -> Iterator[None]:
        with self._cond:
            while self._paused and not self._closing:
                self._cond.wait()
            if self._closing:
                raise RepositoryNotFound(self._name)
            epoch = self._epoch
            if reader:
                self._readers[epoch] = self._readers.get(epoch, 0) + 1
            else:
                self._others += 1
            self.started += 1
        try:
            yield
        finally:
            with self._cond:
                if reader:
                    self._readers[epoch] -= 1
                    if not self._readers[epoch]:
                        del self._readers[epoch]
                else:
                    self._others -= 1
                self._cond.notify_all()

    @property
    def closing(self) -> bool:
        return self._closing

    def new_epoch(self) -> int:
        """Open a new reader epoch; return the one it closed (for ``readers_done``)."""
        with self._cond:
            epoch = self._epoch
            self._epoch += 1
            return epoch

    def readers_done(self, epoch: int, timeout: float | None = 0) -> bool:
        """Whether every reader of ``epoch`` or earlier has finished, waiting up to
        ``timeout`` seconds (None: for ever) for them."""
        with self._cond:
            return self._cond.wait_for(lambda: not any(e <= epoch for e in self._readers), timeout)

    def wait_for_readers(self, timeout: float | None = None) -> bool:
        """Open a new epoch and wait up to ``timeout`` for the readers of the ones before."""
        return self.readers_done(self.new_epoch(), timeout)

    @contextlib.contextmanager
    def exclusive(self, own_others: int, timeout: float) -> Iterator[bool]:
        """Hold new operations back until the block ends; yields whether everything else
        finished within ``timeout`` (if not, the caller should skip its work)."""
        with self._cond:
            self._paused = True
            drained = self._cond.wait_for(
                lambda: not self._readers and self._others <= own_others, timeout
            )
        try:
            yield drained
        finally:
            with self._cond:
                self._paused = False
                self._cond.notify_all()

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new operations and wait for running ones; False if some still ran after
        ``timeout`` seconds.

        An operation a client abandoned (a response generator suspended inside a hold) ends
        only when the generator is collected, which a reference cycle can put off until the
        cyclic collector runs: so collect while waiting."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            while self._readers or self._others:
                left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if left <= 0:
                    return False
                if not self._cond.wait(left):
                    gc.collect()  # finalizers re-enter hold() on this thread: the lock is an RLock
        return True


class Repository:
    """Content-addressed objects of one repository. Every public method is thread-safe."""

    def __init__(self, name: str, path: str, settings: StorageSettings, pool: Executor) -> None:
        self.name = name
        self.path = path
        self.settings = settings
        self._pool = pool
        self._packs_dir = os.path.join(path, "packs")
        self._staging_dir = os.path.join(path, "staging")
        self.index = ObjectIndex(os.path.join(path, "index"), settings.index_map_size)
        raw_uuid = self.index.get_meta("uuid")
        if raw_uuid is None:
            self.index.close()
            raise FailedPrecondition(f"repository {name!r} at {path} was never initialised")
        self.uuid = raw_uuid.decode()
        self.created_at = float(self.index.get_meta("created_at") or b"0")
        self.codec = Codec(
            settings.compression_level, settings.frame_compression_level, settings.frame_size
        )
        dicts = self.index.dictionaries()
        for i, (_, data) in enumerate(sorted(dicts.items())):
            self.codec.add_dictionary(data, use_for_writes=i == len(dicts) - 1)
        current, next_id = self._recover()
        self.reader = PackReader(self.pack_path)
        self.writer = PackWriter(
            self.index, self._packs_dir, settings.pack_max_bytes, current, next_id
        )
        self.activity = _Activity(name)
        self._tables: OrderedDict[tuple[int, int], FrameTable] = OrderedDict()
        self._tables_lock = threading.Lock()
        self._samples: list[bytes] = []
        self._samples_lock = threading.Lock()
        self._training = False
        self._maintenance = threading.Lock()
        # packs gone from the index whose files wait for their last readers: (pack, epoch)
        self._retired: list[tuple[int, int]] = []
        self._retired_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------
    @classmethod
    def create(
        cls, name: str, path: str, settings: StorageSettings, pool: Executor, scratch: str
    ) -> Repository:
        """Initialise a repository directory at ``path`` (which must not exist) and open it.

        It is built at ``scratch`` (a name start-up clean-up recognises as a leftover) and
        renamed into place whole."""
        tmp = scratch
        modes.makedirs(os.path.join(tmp, "packs"))
        modes.makedirs(os.path.join(tmp, "staging"))
        index = ObjectIndex(os.path.join(tmp, "index"), settings.index_map_size)
        with index.write() as txn:
            index.put_meta(txn, "uuid", uuid.uuid4().hex.encode())
            index.put_meta(txn, "created_at", repr(time.time()).encode())
            index.put_meta(txn, "format", b"1")
        index.close()
        os.rename(tmp, path)  # the repository appears whole or not at all
        return cls(name, path, settings, pool)

    def pack_path(self, pack_id: int) -> str:
        return os.path.join(self._packs_dir, f"{pack_id:08d}.pack")

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
                os.unlink(self.pack_path(pack_id))
            log.info("repository %s: pack %d compacted away", self.name, pack_id)

    def forget_pack(self, pack_id: int) -> None:
        """Drop cached state of a pack that no longer exists."""
        with self._tables_lock:
            for k in [k for k in self._tables if k[0] == pack_id]:
                del self._tables[k]

    def _recover(self) -> tuple[tuple[int, int] | None, int]:
        packs = self.index.packs()
        for entry in os.listdir(self._packs_dir):
            stem = entry.removesuffix(".pack")
            if not stem.isdigit() or int(stem) not in packs:
                log.warning(
                    "repository %s: removing pack %s unknown to the index", self.name, entry
                )
                os.unlink(os.path.join(self._packs_dir, entry))
        for pid, state in packs.items():
            path = self.pack_path(pid)
            try:
                size = os.path.getsize(path)
            except FileNotFoundError:
                log.error("repository %s: pack %d is missing", self.name, pid)
                continue
            if size > state.end:
                log.info(
                    "repository %s: cutting %d uncommitted bytes off pack %d",
                    self.name,
                    size - state.end,
                    pid,
                )
                os.truncate(path, state.end)
            elif size < state.end:
                log.error("repository %s: pack %d is shorter than committed", self.name, pid)
        shutil.rmtree(self._staging_dir, ignore_errors=True)
        modes.makedirs(self._staging_dir, exist_ok=True)
        open_packs = [
            (pid, st.end)
            for pid, st in packs.items()
            if not st.single and st.end < self.settings.pack_max_bytes
        ]
        current = max(open_packs) if open_packs else None
        # never reuse a pack id, even of a pack compacted away: backups rely on it
        next_id = int(self.index.get_meta("next_pack_id") or b"1")
        return current, max(next_id, max(packs, default=0) + 1)

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
        """Store many objects; return (key, created) for each, once all are durable."""
        with self.activity.hold():
            digests = [hashlib.sha256(o).digest() for o in objects]
            present = self.index.has_many(digests)
            slots = [i for i, p in enumerate(present) if not p]
            todo = [objects[i] for i in slots]
            records = []
            for i, data, (enc, parts) in zip(
                slots, todo, self.codec.encode_batch(todo), strict=True
            ):
                records.append(NewRecord(digests[i], len(data), enc, parts))
                if enc == Encoding.ZSTD:
                    self._sample(data)
            created = [False] * len(objects)
            if records:
                for i, c in zip(slots, self.writer.submit(records).result(), strict=True):
                    created[i] = c
            return [(format_key(d), c) for d, c in zip(digests, created, strict=True)]

    def put_stream(
        self, chunks: Iterable[bytes], expected_key: str = "", size: int | None = None
    ) -> tuple[str, int, bool]:
        """Store one object arriving in chunks; return (key, raw size, created).

        ``chunks`` may wait on a client for as long as it likes: the activity hold is taken
        only to commit, so an idle upload never holds back compaction, shutdown or erasure.
        An upload still arriving when the repository closes fails with NOT_FOUND at commit.
        """
        expected = parse_key(expected_key) if expected_key else None
        buf = bytearray()
        staged: StagedUpload | None = None
        try:
            for chunk in chunks:
                if staged is not None:
                    staged.write(chunk)
                    continue
                buf += chunk
                if len(buf) > INLINE_LIMIT:
                    if self.activity.closing:
                        raise RepositoryNotFound(self.name)
                    staged = StagedUpload(self._staging_dir, self.codec, self._pool)
                    staged.write(bytes(buf))
                    buf = bytearray()
            raw_size = staged.raw_size if staged is not None else len(buf)
            if size is not None and size != raw_size:
                raise InvalidArgument(
                    f"the upload announced {size} bytes but sent {raw_size}; nothing was stored"
                )
            if staged is None:
                data = bytes(buf)
                if expected is not None:
                    self._check_expected(hashlib.sha256(data).digest(), expected)
                ((key, created),) = self.put_many([data])  # takes its own hold
                return key, raw_size, created
            record = staged.finish()
            staged = None
        except BaseException:
            if staged is not None:
                staged.abort()
            raise
        try:
            self._check_expected(record.digest, expected)
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

    @staticmethod
    def _check_expected(digest: bytes, expected: bytes | None) -> None:
        if expected is not None and digest != expected:
            raise InvalidArgument(
                f"content hashes to {digest.hex()}, not the expected key {expected.hex()}; "
                "nothing was stored"
            )

    def _sample(self, data: bytes) -> None:
        """Collect small compressible objects until a zstd dictionary can be trained."""
        if (
            not self.settings.train_dictionary
            or self.codec.has_dictionary
            or self._training
            or not 256 <= len(data) <= 16 << 10
        ):
            return
        with self._samples_lock:
            if self._training:
                return
            self._samples.append(data)
            if len(self._samples) < _DICT_SAMPLES:
                return
            self._training = True
            samples, self._samples = self._samples, []
        threading.Thread(target=self._train, args=(samples,), daemon=True).start()

    def _train(self, samples: list[bytes]) -> None:
        try:
            with self.activity.hold(reader=False):
                self._store_dictionary(samples)
        except Exception as exc:  # training is an optimisation; never fatal
            log.warning("repository %s: dictionary training failed: %s", self.name, exc)
        finally:
            self._training = False

    def _store_dictionary(self, samples: list[bytes]) -> None:
        d = zstandard.train_dictionary(_DICT_SIZE, samples, level=self.settings.compression_level)
        data = d.as_bytes()
        self.index.put_dictionary(d.dict_id(), data)  # durable before any object uses it
        self.codec.add_dictionary(data)
        log.info("repository %s: trained a %d-byte zstd dictionary", self.name, len(data))

    # -- reads --------------------------------------------------------------------------
    def _locate(self, key: str) -> Location:
        loc = self.index.get_many([parse_key(key)])[0]
        if loc is None:
            raise ObjectNotFound([key])
        return loc

    def _relocate(self, digests: list[bytes], keys: list[str], before: list[Location]):
        """Where objects are now, for a read that resumes under a new hold (call it under
        that hold): compaction may have moved them since. An object deleted meanwhile is
        still read from its old place while that pack is registered in the index (its file
        then stays until the hold ends); otherwise ObjectNotFound."""
        now = self.index.get_many(digests)
        gone = [i for i, loc in enumerate(now) if loc is None]
        if not gone:
            return now
        with self.index.read() as txn:
            for i in gone:
                if self.index.get_pack(txn, before[i].pack_id) is None:
                    raise ObjectNotFound([keys[i]])
                now[i] = before[i]
        return now

    def _frame_table(self, loc: Location) -> FrameTable:
        k = (loc.pack_id, loc.offset)
        with self._tables_lock:
            t = self._tables.get(k)
            if t is not None:
                self._tables.move_to_end(k)
                return t
        end = loc.body_offset + loc.body_size
        n = FrameTable.trailer_length(self.reader.read(loc.pack_id, end - 4, 4), loc.body_size)
        t = FrameTable.decode(self.reader.read(loc.pack_id, end - 4 - n, n))
        t.check_fits(loc.raw_size, loc.body_size)  # before any of it is used, or cached
        with self._tables_lock:
            self._tables[k] = t
            while len(self._tables) > 512:
                self._tables.popitem(last=False)
        return t

    def _decode_whole(self, loc: Location, digest: bytes) -> bytes:
        if loc.encoding == Encoding.FRAMES:
            return b"".join(self._iter_frames(loc, 0, loc.raw_size, False, digest))
        body = self.reader.read(loc.pack_id, loc.body_offset, loc.body_size)
        return self.codec.decode_small(loc.encoding, body, loc.raw_size, digest)

    def _iter_frames(
        self,
        loc: Location,
        offset: int,
        length: int,
        prefetch: bool,
        digest: bytes | None = None,
    ) -> Iterator[bytes]:
        """The frames of ``loc`` holding [offset, offset + length), decoded and checked.
        Call under an activity hold, and consume before it ends (``_read_chunks`` streams
        without one)."""
        table = self._frame_table(loc)
        # Compressed frames of an older table have no check value of their own: a whole
        # read is also hashed against the key, and DataLoss follows the last chunk.
        if digest is not None and not table.checks_all and length == loc.raw_size:
            yield from _hashed(self._iter_frames(loc, 0, length, prefetch), digest)
            return

        def decode(i: int) -> bytes:
            return self._frame_part(loc, table, i, offset, offset + length)

        frames = table.frames_for(offset, length)
        yield from self._prefetched(decode, frames) if prefetch else map(decode, frames)

    def _frame_part(self, loc: Location, table: FrameTable, i: int, offset: int, end: int) -> bytes:
        """Frame ``i`` of the object at ``loc``, checked, cut to [offset, end)."""
        start = i * table.frame_size
        n = min(table.frame_size, loc.raw_size - start)
        body = self.reader.read(loc.pack_id, loc.body_offset + table.offsets[i], table.stored[i])
        data = self.codec.decode_frame(body, table.raw[i], n, table.crc[i], table.checks_all)
        lo, hi = max(offset, start) - start, min(end, start + n) - start
        return data if lo == 0 and hi == n else data[lo:hi]

    def _prefetched(self, work, items: Iterable[int]) -> Iterator[bytes]:
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

    def read(
        self, key: str, offset: int = 0, length: int | None = None
    ) -> tuple[int, Iterator[bytes]]:
        """(object size, chunks of the range). A range past the end is cut short."""
        if offset < 0 or (length is not None and length < 0):
            raise InvalidArgument("offset and length must not be negative")
        with self.activity.hold():
            loc = self._locate(key)
        if offset > loc.raw_size:
            raise OutOfRange(
                f"offset {offset} is past the end of object {key} ({loc.raw_size} bytes)"
            )
        n = loc.raw_size - offset if length is None else min(length, loc.raw_size - offset)
        return loc.raw_size, self._read_chunks(key, loc, offset, n)

    def _read_chunks(self, key: str, loc: Location, offset: int, length: int) -> Iterator[bytes]:
        """The range's chunks, streamed without an activity hold across a yield: the consumer
        may be a client that stops reading, and a hold kept meanwhile would hold compaction
        (``drop_pack_file``) back. Each frame is read under a short hold of its own, after
        looking the object up again (compaction may have moved it: the copy has the same
        frames), and frames are decoded ahead on the codec pool."""
        if length == 0:
            return
        digest = parse_key(key)
        end = offset + length
        with self.activity.hold():
            (loc,) = self._relocate([digest], [key], [loc])
            if loc.encoding != Encoding.FRAMES:
                data = self._decode_whole(loc, digest)
            else:
                table = self._frame_table(loc)
        if loc.encoding != Encoding.FRAMES:
            yield data if (offset == 0 and length == len(data)) else data[offset:end]
            return
        # a whole read of a frame table without per-frame check values: hash it as well
        hasher = hashlib.sha256() if length == loc.raw_size and not table.checks_all else None
        latest = [loc]

        def frame(i: int) -> bytes:
            with self.activity.hold():
                (now,) = self._relocate([digest], [key], latest)
                latest[0] = now
                now_table = table if now == loc else self._frame_table(now)
                return self._frame_part(now, now_table, i, offset, end)

        for chunk in self._prefetched(frame, table.frames_for(offset, length)):
            if hasher is not None:
                hasher.update(chunk)
            yield chunk
        if hasher is not None and hasher.digest() != digest:
            raise DataLoss("stored object does not hash to its key (damaged on disk)")

    def read_many(
        self, keys: list[str], inline_limit: int = READ_MANY_INLINE
    ) -> Iterator[tuple[str, int, bytes | None]]:
        """(key, size, content or None when larger than inline_limit), in storage order."""
        with self.activity.hold():
            digests = parse_keys(keys)
            locs = self.index.get_many(digests)
            missing = [k for k, loc in zip(keys, locs, strict=True) if loc is None]
        if missing:
            raise ObjectNotFound(missing)
        return self._read_many(keys, digests, locs, inline_limit)  # type: ignore[arg-type]

    def _read_many(
        self,
        keys: list[str],
        digests: list[bytes],
        first_locs: list[Location],
        inline_limit: int,
    ) -> Iterator[tuple[str, int, bytes | None]]:
        # Batches of about _READ_MANY_BATCH raw bytes, each looked up again and decoded under
        # a hold of its own, and yielded after it is released (no hold across a yield).
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
            with self.activity.hold():
                now = self._relocate(
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
            span = self.reader.read(first.pack_id, start, last.body_offset + last.body_size - start)
            view = memoryview(span)
            items = []
            for i in run:
                loc = locs[i]
                lo = loc.body_offset - start
                items.append(
                    (loc.encoding, view[lo : lo + loc.body_size], loc.raw_size, digests[i])
                )
            for i, data in zip(run, self.codec.decode_batch(items, self._pool), strict=True):
                yield keys[i], locs[i].raw_size, data

        for i in order:
            loc = locs[i]
            if loc.encoding == Encoding.FRAMES:
                if run:
                    yield from flush_run()
                    run = []
                if loc.raw_size <= inline_limit:
                    yield keys[i], loc.raw_size, self._decode_whole(loc, digests[i])
                else:
                    yield keys[i], loc.raw_size, None
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

    def has_many(self, keys: list[str]) -> list[bool]:
        with self.activity.hold():
            return self.index.has_many(parse_keys(keys))

    def stat_many(self, keys: list[str]) -> list[ObjectStat]:
        with self.activity.hold():
            locs = self.index.get_many(parse_keys(keys))
        return [
            ObjectStat(k, False)
            if loc is None
            else ObjectStat(k, True, loc.raw_size, loc.stored_size, loc.encoding.label, loc.pack_id)
            for k, loc in zip(keys, locs, strict=True)
        ]

    def list_keys(self, page_token: str = "", limit: int | None = None) -> Iterator[str]:
        """Keys in key order after ``page_token`` (a key), at most ``limit`` of them."""
        if page_token:
            try:
                after = parse_key(page_token)
            except InvalidArgument:
                raise InvalidArgument(
                    f"page token {page_token[:80]!r} is not one this server handed out"
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
            yield from (d.hex() for d in batch)
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
        with self.activity.hold():
            unique = list(dict.fromkeys(keys))
            digests = parse_keys(unique)
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
    def info(self) -> dict:
        with self.activity.hold():
            totals = self.index.totals()
            packs = self.index.packs()
            on_disk = 0
            for root, _dirs, files in os.walk(self.path):
                for f in files:
                    with contextlib.suppress(FileNotFoundError):
                        on_disk += os.path.getsize(os.path.join(root, f))
            magic = len(PACK_MAGIC)
            return {
                "repository": self.name,
                "uuid": self.uuid,
                "key_format": KEY_FORMAT,
                "objects": totals.objects,
                "raw_bytes": totals.raw_bytes,
                "stored_bytes": totals.stored_bytes,
                "on_disk_bytes": on_disk,
                "pack_count": len(packs),
                "reclaimable_bytes": sum(s.dead_bytes for s in packs.values()),
                "has_dictionary": self.codec.has_dictionary,
                "compression_ratio": (
                    totals.raw_bytes / totals.stored_bytes if totals.stored_bytes else 1.0
                ),
                "last_maintenance": float(self.index.get_meta("last_maintenance") or 0),
                "last_verification": float(self.index.get_meta("last_verification") or 0),
                "last_verification_errors": int(
                    self.index.get_meta("last_verification_errors") or 0
                ),
                "packs": [
                    {
                        "pack_id": pid,
                        "size": s.end,
                        "dead_bytes": s.dead_bytes,
                        "live_bytes": max(0, s.end - magic - s.dead_bytes),
                        "single_object": s.single,
                    }
                    for pid, s in sorted(packs.items())
                ],
            }

    def maintain(
        self, dry_run: bool = False, dead_fraction: float = 0.0, max_packs: int = 0
    ) -> Iterator[dict]:
        """Live compaction with progress reports (see ``compactor.py``)."""
        from hoard_server.storage.compactor import Compactor

        self.drop_retired_packs()  # files a previous run had to leave to their last readers
        with self.activity.hold(reader=False):
            if not self._maintenance.acquire(blocking=False):
                raise FailedPrecondition(
                    f"maintenance of repository {self.name!r} is already running; "
                    "wait for it or cancel it"
                )
            try:
                yield from Compactor(self).run(dry_run, dead_fraction, max_packs)
            finally:
                self._maintenance.release()

    def verify(self, pack_id: int = 0, sample: float = 0.0) -> Iterator[dict]:
        """Re-read and re-hash objects; report every problem (see ``verify.py``)."""
        from hoard_server.storage.verify import Verifier

        with self.activity.hold(reader=False):
            yield from Verifier(self).run(pack_id, sample)


def _hashed(chunks: Iterator[bytes], digest: bytes) -> Iterator[bytes]:
    """Pass ``chunks`` through; DataLoss after the last one unless they hash to ``digest``."""
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
        yield chunk
    if h.digest() != digest:
        raise DataLoss("stored object does not hash to its key (damaged on disk)")


__all__ = ["FRAME_SIZE", "ObjectStat", "Repository", "StorageSettings"]
