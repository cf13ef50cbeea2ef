"""Live compaction: reclaim the space of deleted objects while clients keep working.

A pack qualifies when its dead bytes reach a fraction of its payload. The index, never the
pack's record headers, decides what lives in a pack:

1. one walk of the index collects, for every planned pack, the entries pointing into it
   (digest, offset, body size, raw size, encoding); the pack being written is sealed first;
2. packs are then compacted one at a time, so the extra disk in use never exceeds one pack's
   live data. Each record is read where its entry says and checked before it is copied: its
   header must agree with the entry and its body must decode and hash to its key. A record
   that fails stays where it is (its pack is kept) and is reported, like ``verify`` does;
3. checked records are copied (bytes as stored: nothing is recompressed) through the pack
   writer, which switches each index entry only if it still points at the old place (an
   object deleted meanwhile is simply dropped);
4. before the pack is retired, no index entry may point into it any more (every collected
   entry is looked up again, and the pack's dead-byte counter must account for all of it);
   then it is dropped from the index, readers that might hold a location in it are waited
   for, and the file is deleted.

Nothing ever makes an index entry point into a sealed pack that is not being written: new
records and relocations go to the writer's current pack, large uploads to new single packs.
So the set of entries pointing into a planned pack, once collected after the seal, can only
shrink; that is what makes one walk per run (and the look-ups of step 4) sufficient.

A crash at any point leaves every object readable: entries point either at the old pack
(still registered, still on disk) or at the new copy (committed). A later run resumes.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from hoard_server.errors import DataLoss
from hoard_server.storage.codec import FrameTable
from hoard_server.storage.index import LOCATION, Location
from hoard_server.storage.pack import HEADER_SIZE, PACK_MAGIC, Encoding
from hoard_server.storage.writer import RelocatedRecord

log = logging.getLogger(__name__)

DEFAULT_DEAD_FRACTION = 0.25
_MOVE_BATCH_BYTES = 2 << 20
_INDEX_SLACK = 2.0  # compact the index file when it is this many times what its trees use
_INDEX_MIN_BYTES = 4 << 20
_PAUSE_TIMEOUT = 10.0  # give up swapping the index if operations do not drain by then
_BUCKET = 8 << 20  # collected entries are grouped by offset in spans this big (a read window)
# Index entries held at once (61 bytes each: ~24 MB). More live entries than this in the
# planned packs cost another index walk; a bucket holds at most 8 MiB / 51 B = 164k entries.
_MAX_ENTRIES = 400_000
_ENTRY = 32 + LOCATION.size  # digest + encoded Location
_PID_OFFSET = struct.Struct("<IQ")  # the head of an encoded Location
_WALK_BATCH = 10_000


@dataclass(frozen=True)
class PackPlan:
    pack_id: int
    size: int
    dead_bytes: int
    single: bool


@dataclass
class _PackRun:
    """One planned pack while it is being compacted."""

    plan: PackPlan
    start: int = 0  # entries at offsets below this were handled in an earlier round
    moved_bytes: int = 0
    moved_objects: int = 0
    failed: set[bytes] = field(default_factory=set)  # digests not moved: the pack stays

    @property
    def pid(self) -> int:
        return self.plan.pack_id


class Compactor:
    def __init__(self, repo) -> None:  # repo: hoard_server.storage.repository.Repository
        self.repo = repo

    def plan(self, dead_fraction: float = DEFAULT_DEAD_FRACTION) -> list[PackPlan]:
        """Packs worth compacting, most dead bytes first (whole dead packs need no room)."""
        plans = []
        for pid, st in self.repo.index.packs().items():
            payload = st.end - len(PACK_MAGIC)
            if payload <= 0 or (st.dead_bytes > 0 and st.dead_bytes >= dead_fraction * payload):
                plans.append(PackPlan(pid, st.end, st.dead_bytes, st.single))
        return sorted(plans, key=lambda p: -p.dead_bytes)

    def _back_off(self, worked: float, seen: int) -> int:
        """Yield to clients: if any operation began since ``seen``, pause so that compaction
        works only ``maintenance_duty`` of the time while clients are active (full speed
        when they are not)."""
        now = self.repo.activity.started
        duty = self.repo.settings.maintenance_duty
        if now != seen and worked > 0 and 0 < duty < 1:
            time.sleep(min(worked * (1 - duty) / duty, 1.0))
        return self.repo.activity.started

    def run(
        self, dry_run: bool = False, dead_fraction: float = 0.0, max_packs: int = 0
    ) -> Iterator[dict]:
        repo = self.repo
        fraction = dead_fraction if dead_fraction > 0 else DEFAULT_DEAD_FRACTION
        plan = self.plan(fraction)
        if max_packs:
            plan = plan[:max_packs]
        reclaimable = sum(p.dead_bytes for p in plan)
        self._problems: list[dict] = []  # new since the last report
        progress = {
            "stage": "plan",
            "dry_run": dry_run,
            "done": 0,
            "total": len(plan),
            "reclaimable_bytes": reclaimable,
            "reclaimed_bytes": 0,
            "moved_bytes": 0,
            "moved_objects": 0,
            "problems": [],
            "problem_count": 0,
            "message": (
                f"{len(plan)} pack(s) with at least {fraction:.0%} dead bytes; "
                f"{reclaimable} bytes reclaimable"
                + ("; dry run, nothing changed" if dry_run else "")
            ),
        }
        yield dict(progress)
        if dry_run:
            yield {**progress, "stage": "done"}
            return
        kept = 0
        pending = [_PackRun(p) for p in plan]
        while pending and not repo.activity.closing:
            # New writes must go elsewhere before the walk: from then on, entries pointing
            # into a pending pack can only disappear (see the module docstring).
            if repo.writer.current_pack_id in {r.pid for r in pending}:
                repo.writer.seal().result()
            collected = self._collect(pending)
            for r in list(pending):
                if repo.activity.closing:
                    break
                buckets, stop = collected.pop(r.pid)
                if stop is not None and stop <= r.start:
                    continue  # nothing collected this round: the next walk
                moved_before = (r.moved_bytes, r.moved_objects)
                self._move(r, buckets)
                del buckets
                progress["moved_bytes"] += r.moved_bytes - moved_before[0]
                progress["moved_objects"] += r.moved_objects - moved_before[1]
                if stop is not None:
                    r.start = stop  # partly collected: the next walk goes on from here
                    continue
                pending.remove(r)
                progress["done"] += 1
                progress["stage"] = "compact"
                freed = 0 if r.failed else self._retire_if_unreferenced(r)
                if freed:
                    progress["reclaimed_bytes"] += freed
                    progress["message"] = (
                        f"pack {r.pid}: moved {r.moved_objects} live objects "
                        f"({r.moved_bytes} bytes), freed {freed} bytes"
                    )
                else:
                    kept += 1
                    progress["message"] = (
                        f"pack {r.pid}: kept, {len(r.failed) or 'some'} record(s) could not be "
                        f"moved safely (see problems); moved {r.moved_objects} live objects"
                    )
                yield self._report(progress)
        freed = self._compact_index()
        if freed:
            progress["reclaimed_bytes"] += freed
            progress["stage"] = "index"
            progress["message"] = f"index compacted: {freed} bytes freed"
            yield self._report(progress)
        with repo.index.write() as txn:
            repo.index.put_meta(txn, "last_maintenance", repr(time.time()).encode())
        progress["stage"] = "done"
        progress["message"] = (
            f"compacted {progress['done'] - kept} of {len(plan)} pack(s); "
            f"reclaimed {progress['reclaimed_bytes']} bytes"
            + (f"; {kept} pack(s) kept because of problems" if kept else "")
            + ("; stopped: the daemon is shutting down" if pending else "")
        )
        yield self._report(progress)

    def _report(self, progress: dict) -> dict:
        """A copy of ``progress`` carrying the problems found since the previous report."""
        out = {**progress, "problems": self._problems}
        progress["problem_count"] += len(self._problems)
        out["problem_count"] = progress["problem_count"]
        self._problems = []
        return out

    # -- step 1: which records live in the planned packs, from the index ---------------------
    def _collect(
        self, pending: list[_PackRun]
    ) -> dict[int, tuple[dict[int, bytearray], int | None]]:
        """One walk of the index: for each pending pack, the entries pointing into it at
        offsets from its ``start``, as ``{offset // _BUCKET: digest+location records}``, and
        where collection stopped (None: every entry from ``start`` on was collected).

        At most ``_MAX_ENTRIES`` are held: past that, the last pack in plan order with
        entries gives up its highest bucket and collects only below it from then on.
        """
        rank = {r.pid: i for i, r in enumerate(pending)}
        start = {r.pid: r.start for r in pending}
        limit: dict[int, int | None] = dict.fromkeys(rank)
        buckets: dict[int, dict[int, bytearray]] = {pid: {} for pid in rank}
        counts = dict.fromkeys(rank, 0)
        total = 0
        head = _PID_OFFSET.unpack_from
        seen = self.repo.activity.started
        began = time.monotonic()
        for n, (digest, value) in enumerate(self.repo.index.iter_entries()):
            if not n % _WALK_BATCH and n:
                seen = self._back_off(time.monotonic() - began, seen)
                began = time.monotonic()
            pid, off = head(value)
            b = buckets.get(pid)
            if b is None or off < start[pid]:
                continue
            lim = limit[pid]
            if lim is not None and off >= lim:
                continue
            key = off // _BUCKET
            ba = b.get(key)
            if ba is None:
                ba = b[key] = bytearray()
            ba += digest
            ba += value
            counts[pid] += 1
            total += 1
            while total > _MAX_ENTRIES:
                victim = max((p for p, c in counts.items() if c), key=rank.__getitem__)
                vb = buckets[victim]
                if len(vb) == 1 and sum(1 for c in counts.values() if c) == 1:
                    break  # cannot happen (one bucket holds fewer entries); never loop
                top = max(vb)
                dropped = len(vb.pop(top)) // _ENTRY
                counts[victim] -= dropped
                total -= dropped
                limit[victim] = top * _BUCKET
        return {pid: (buckets[pid], limit[pid]) for pid in rank}

    # -- steps 2 and 3: check and copy -----------------------------------------------------------
    def _move(self, r: _PackRun, buckets: dict[int, bytearray]) -> None:
        """Check and copy the collected records of one pack, in offset order, then confirm
        that none of them is still indexed in the pack unless it was reported."""
        repo = self.repo
        pid = r.pid
        batch: list[RelocatedRecord] = []
        batch_bytes = 0
        seen = 0
        started = time.monotonic()

        def flush() -> None:
            nonlocal batch, batch_bytes, seen, started
            if batch:
                done = repo.writer.submit(batch).result()
                for rec, ok in zip(batch, done, strict=True):
                    if ok:  # not ok: deleted (or re-put) meanwhile; the final look-up tells
                        r.moved_bytes += HEADER_SIZE + rec.body_size
                        r.moved_objects += 1
            batch, batch_bytes = [], 0
            seen = self._back_off(time.monotonic() - started, seen)
            started = time.monotonic()

        with repo.activity.hold():
            seen = repo.activity.started  # our own hold included: only others count
            end = self._committed_end(pid)
            for key in sorted(buckets):
                raw = buckets[key]
                entries = sorted(
                    (Location.decode(raw[i + 32 : i + _ENTRY]), bytes(raw[i : i + 32]))
                    for i in range(0, len(raw), _ENTRY)
                )
                span_end = max(loc.offset + loc.stored_size for loc, _ in entries)
                window, w_start = memoryview(b""), 0
                for n, (loc, digest) in enumerate(entries):
                    if not n % 128:
                        time.sleep(0)  # hand the interpreter to waiting requests now
                    rec_end = loc.offset + loc.stored_size
                    try:
                        if rec_end > end:
                            raise DataLoss(
                                f"index entry runs past the pack's committed end "
                                f"({rec_end} > {end})"
                            )
                        if loc.offset < w_start or rec_end > w_start + len(window):
                            window = memoryview(b"")  # let the old window go first
                            want = max(loc.stored_size, min(_BUCKET, span_end - loc.offset))
                            window = memoryview(repo.reader.read(pid, loc.offset, want))
                            w_start = loc.offset
                        record = window[loc.offset - w_start : rec_end - w_start]
                        self._check(digest, loc, record)
                    except DataLoss as exc:
                        self._problem(r, digest, loc, exc)
                        continue
                    batch.append(
                        RelocatedRecord(
                            digest,
                            loc.raw_size,
                            loc.encoding,
                            [bytes(record[HEADER_SIZE:])],
                            loc.body_size,
                            loc.encode(),
                            pid,
                        )
                    )
                    batch_bytes += loc.body_size
                    if batch_bytes >= _MOVE_BATCH_BYTES:
                        flush()
                del window
                flush()
            self._confirm_moved(r, buckets)

    def _check(self, digest: bytes, loc: Location, record: memoryview) -> None:
        """DataLoss unless the record at ``loc`` is the object ``digest`` as indexed: its
        header agrees with the entry and its body decodes and hashes to the key."""
        loc.check_header(digest, record[:HEADER_SIZE])
        body = record[HEADER_SIZE:]
        codec = self.repo.codec
        if loc.encoding == Encoding.FRAMES:
            self._check_frames(digest, loc, body)
        elif loc.encoding == Encoding.RAW:
            codec.decode_small(loc.encoding, body, loc.raw_size, digest)  # hashes it
        else:  # zstd's checksum catches damage; the hash catches a wrong (but whole) frame
            data = codec.decode_small(loc.encoding, body, loc.raw_size)
            if hashlib.sha256(data).digest() != digest:
                raise DataLoss("content does not hash to its key")

    def _check_frames(self, digest: bytes, loc: Location, body: memoryview) -> None:
        """Decode a FRAMES body one frame at a time (memory: one decoded frame) and hash it."""
        size = len(body)
        if size < 4:
            raise DataLoss("frame table is missing")
        n = FrameTable.trailer_length(bytes(body[-4:]))
        if n + 4 > size:
            raise DataLoss("frame table is damaged (length)")
        table = FrameTable.decode(bytes(body[size - 4 - n : size - 4]))
        offsets = table.offsets
        fs = table.frame_size
        if fs <= 0 or offsets[-1] != size - 4 - n or len(table.stored) != -(-loc.raw_size // fs):
            raise DataLoss("frame table does not match the record")
        h = hashlib.sha256()
        codec = self.repo.codec
        for i in range(len(table.stored)):
            frame = body[offsets[i] : offsets[i + 1]]
            raw_n = min(fs, loc.raw_size - i * fs)
            h.update(codec.decode_frame(frame, table.raw[i], raw_n, table.crc[i]))
        if h.digest() != digest:
            raise DataLoss("content does not hash to its key")

    def _problem(self, r: _PackRun, digest: bytes, loc: Location, exc: Exception) -> None:
        """Record that ``digest`` stays in its pack, unless it was deleted meanwhile."""
        with self.repo.index.read() as txn:
            current = self.repo.index.get(txn, digest)
        if current != loc:
            return  # deleted (or re-put elsewhere) since the walk: not ours to keep
        r.failed.add(digest)
        problem = f"not moved, pack {r.pid} kept: {exc}"
        self._problems.append({"key": digest.hex(), "pack_id": r.pid, "problem": problem})
        log.error("repository %s: object %s: %s", self.repo.name, digest.hex(), problem)

    def _confirm_moved(self, r: _PackRun, buckets: dict[int, bytearray]) -> None:
        """Look every collected entry up again: only reported ones may still point into the
        pack. Checked here rather than just before retiring: an entry never comes back."""
        index = self.repo.index
        with index.read() as txn:
            for raw in buckets.values():
                for i in range(0, len(raw), _ENTRY):
                    digest = bytes(raw[i : i + 32])
                    if digest in r.failed:
                        continue
                    loc = index.get(txn, digest)
                    if loc is not None and loc.pack_id == r.pid:
                        r.failed.add(digest)
                        self._problems.append(
                            {
                                "key": digest.hex(),
                                "pack_id": r.pid,
                                "problem": f"still indexed in pack {r.pid} after its move; "
                                "pack kept",
                            }
                        )
                        log.error(
                            "repository %s: object %s still indexed in pack %d after its move",
                            self.repo.name,
                            digest.hex(),
                            r.pid,
                        )

    # -- step 4: retire ----------------------------------------------------------------------
    def _retire_if_unreferenced(self, r: _PackRun) -> int:
        """Retire the pack if no index entry points into it; bytes freed (0: kept)."""
        repo = self.repo
        with repo.index.read() as txn:
            state = repo.index.get_pack(txn, r.pid)
        if state is None:
            return 0
        live = state.end - len(PACK_MAGIC) - state.dead_bytes
        if live != 0:
            # The counters disagree with the entries collected: only a full look can tell.
            log.warning(
                "repository %s: pack %d still counts %d live bytes after compaction; "
                "checking the whole index",
                repo.name,
                r.pid,
                live,
            )
            left = [d for d, loc in repo.index.iter_locations() if loc.pack_id == r.pid]
            for d in left:
                self._problems.append(
                    {
                        "key": d.hex(),
                        "pack_id": r.pid,
                        "problem": f"still indexed in pack {r.pid} after compaction; pack kept",
                    }
                )
            if left:
                log.error(
                    "repository %s: pack %d kept: %d object(s) still point into it",
                    repo.name,
                    r.pid,
                    len(left),
                )
                return 0
        self._retire(r.pid)
        return max(0, state.end - r.moved_bytes)

    def _committed_end(self, pid: int) -> int:
        with self.repo.index.read() as txn:
            state = self.repo.index.get_pack(txn, pid)
        return state.end if state is not None else 0

    def _compact_index(self) -> int:
        """Give the index file's free pages back to the disk; bytes freed.

        LMDB reuses free pages but never shrinks its file. Swapping in a compacted copy needs
        a moment with no other operation running: new ones wait (typically well under a
        second) and the swap is skipped if running ones do not finish in time.
        """
        repo = self.repo
        size, used = repo.index.usage()
        if size < _INDEX_MIN_BYTES or size < _INDEX_SLACK * used:
            return 0
        with repo.activity.exclusive(own_others=1, timeout=_PAUSE_TIMEOUT) as drained:
            if not drained:
                log.info("repository %s: index compaction skipped: clients busy", repo.name)
                return 0
            repo.index.replace_with_compacted_copy()
        after, _ = repo.index.usage()
        log.info("repository %s: index compacted from %d to %d bytes", repo.name, size, after)
        return max(0, size - after)

    def _retire(self, pid: int) -> None:
        """Forget a pack whose live objects have all moved, then delete it once unused."""
        repo = self.repo
        with repo.index.write() as txn:
            repo.index.delete_pack(txn, pid)
        repo.drop_pack_file(pid)  # a bounded wait for readers; else the file goes later
