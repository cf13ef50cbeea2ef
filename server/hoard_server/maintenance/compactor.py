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

import logging
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from hoard_server.errors import DataLoss
from hoard_server.observe import metrics
from hoard_server.reports import MaintenanceProgress, Problem
from hoard_server.storage.activity import Activity
from hoard_server.storage.index import LOCATION, Location, ObjectIndex
from hoard_server.storage.pack import HEADER_SIZE, PACK_MAGIC, PackReader
from hoard_server.storage.writer import PackWriter, RelocatedRecord

RecordCheck = Callable[[bytes, Location, memoryview], None]

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
    """One compaction run over the parts of a packed store it works on.

    ``check_record(digest, location, record bytes)`` raises DataLoss unless a record is
    the object as indexed (``storage.records.check_record``); ``drop_pack_file(pack_id)``
    deletes a pack's file once its readers are done (a bounded wait); ``duty`` is the
    share of time compaction works while clients are active.
    """

    def __init__(
        self,
        name: str,
        index: ObjectIndex,
        packs: PackReader,
        writer: PackWriter,
        activity: Activity,
        check_record: RecordCheck,
        drop_pack_file: Callable[[int], None],
        duty: float,
    ) -> None:
        self._name = name
        self._index = index
        self._packs = packs
        self._writer = writer
        self._activity = activity
        self._check_record = check_record
        self._drop_pack_file = drop_pack_file
        self._duty = duty

    def plan(self, dead_fraction: float = DEFAULT_DEAD_FRACTION) -> list[PackPlan]:
        """Packs worth compacting, most dead bytes first (whole dead packs need no room)."""
        plans = []
        for pid, st in self._index.packs().items():
            payload = st.end - len(PACK_MAGIC)
            if payload <= 0 or (st.dead_bytes > 0 and st.dead_bytes >= dead_fraction * payload):
                plans.append(PackPlan(pid, st.end, st.dead_bytes, st.single))
        return sorted(plans, key=lambda p: -p.dead_bytes)

    def _back_off(self, worked: float, seen: int) -> int:
        """Yield to clients: if any operation began since ``seen``, pause so that compaction
        works only ``maintenance_duty`` of the time while clients are active (full speed
        when they are not)."""
        now = self._activity.started
        duty = self._duty
        if now != seen and worked > 0 and 0 < duty < 1:
            time.sleep(min(worked * (1 - duty) / duty, 1.0))
        return self._activity.started

    def run(
        self, dry_run: bool = False, dead_fraction: float = 0.0, max_packs: int = 0
    ) -> Iterator[MaintenanceProgress]:
        fraction = dead_fraction if dead_fraction > 0 else DEFAULT_DEAD_FRACTION
        plan = self.plan(fraction)
        if max_packs:
            plan = plan[:max_packs]
        reclaimable = sum(p.dead_bytes for p in plan)
        self._problems: list[Problem] = []  # new since the last report
        progress = MaintenanceProgress(
            stage="plan",
            dry_run=dry_run,
            total=len(plan),
            reclaimable_bytes=reclaimable,
            message=(
                f"{len(plan)} pack(s) with at least {fraction:.0%} dead bytes; "
                f"{reclaimable} bytes reclaimable"
                + ("; dry run, nothing changed" if dry_run else "")
            ),
        )
        yield replace(progress, problems=[])
        if dry_run:
            yield replace(progress, stage="done", problems=[])
            return
        metrics.COMPACTION_RUNS.labels(self._name).inc()
        kept = 0
        pending = [_PackRun(p) for p in plan]
        while pending and not self._activity.closing:
            # New writes must go elsewhere before the walk: from then on, entries pointing
            # into a pending pack can only disappear (see the module docstring).
            if self._writer.current_pack_id in {r.pid for r in pending}:
                self._writer.seal().result()
            collected = self._collect(pending)
            for r in list(pending):
                if self._activity.closing:
                    break
                buckets, stop = collected.pop(r.pid)
                if stop is not None and stop <= r.start:
                    continue  # nothing collected this round: the next walk
                moved_before = (r.moved_bytes, r.moved_objects)
                self._move(r, buckets)
                del buckets
                moved = r.moved_bytes - moved_before[0]
                progress.moved_bytes += moved
                metrics.COMPACTION_MOVED_BYTES.labels(self._name).inc(moved)
                progress.moved_objects += r.moved_objects - moved_before[1]
                if stop is not None:
                    r.start = stop  # partly collected: the next walk goes on from here
                    continue
                pending.remove(r)
                progress.done += 1
                progress.stage = "compact"
                freed = 0 if r.failed else self._retire_if_unreferenced(r)
                if freed:
                    progress.reclaimed_bytes += freed
                    metrics.COMPACTION_RECLAIMED_BYTES.labels(self._name).inc(freed)
                    progress.message = (
                        f"pack {r.pid}: moved {r.moved_objects} live objects "
                        f"({r.moved_bytes} bytes), freed {freed} bytes"
                    )
                else:
                    kept += 1
                    progress.message = (
                        f"pack {r.pid}: kept, {len(r.failed) or 'some'} record(s) could not be "
                        f"moved safely (see problems); moved {r.moved_objects} live objects"
                    )
                yield self._report(progress)
        freed = self._compact_index()
        if freed:
            progress.reclaimed_bytes += freed
            metrics.COMPACTION_RECLAIMED_BYTES.labels(self._name).inc(freed)
            progress.stage = "index"
            progress.message = f"index compacted: {freed} bytes freed"
            yield self._report(progress)
        with self._index.write() as txn:
            self._index.put_meta(txn, "last_maintenance", repr(time.time()).encode())
        progress.stage = "done"
        progress.message = (
            f"compacted {progress.done - kept} of {len(plan)} pack(s); "
            f"reclaimed {progress.reclaimed_bytes} bytes"
            + (f"; {kept} pack(s) kept because of problems" if kept else "")
            + ("; stopped: the daemon is shutting down" if pending else "")
        )
        yield self._report(progress)

    def _report(self, progress: MaintenanceProgress) -> MaintenanceProgress:
        """A copy of ``progress`` carrying the problems found since the previous report."""
        progress.problem_count += len(self._problems)
        out = replace(progress, problems=self._problems)
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
        seen = self._activity.started
        began = time.monotonic()
        for n, (digest, value) in enumerate(self._index.iter_entries()):
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
        pid = r.pid
        batch: list[RelocatedRecord] = []
        batch_bytes = 0
        seen = 0
        started = time.monotonic()

        def flush() -> None:
            nonlocal batch, batch_bytes, seen, started
            if batch:
                done = self._writer.submit(batch).result()
                for rec, ok in zip(batch, done, strict=True):
                    if ok:  # not ok: deleted (or re-put) meanwhile; the final look-up tells
                        r.moved_bytes += HEADER_SIZE + rec.body_size
                        r.moved_objects += 1
            batch, batch_bytes = [], 0
            seen = self._back_off(time.monotonic() - started, seen)
            started = time.monotonic()

        with self._activity.hold():
            seen = self._activity.started  # our own hold included: only others count
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
                            window = memoryview(self._packs.read(pid, loc.offset, want))
                            w_start = loc.offset
                        record = window[loc.offset - w_start : rec_end - w_start]
                        self._check_record(digest, loc, record)
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

    def _problem(self, r: _PackRun, digest: bytes, loc: Location, exc: Exception) -> None:
        """Record that ``digest`` stays in its pack, unless it was deleted meanwhile."""
        with self._index.read() as txn:
            current = self._index.get(txn, digest)
        if current != loc:
            return  # deleted (or re-put elsewhere) since the walk: not ours to keep
        r.failed.add(digest)
        problem = f"not moved, pack {r.pid} kept: {exc}"
        self._problems.append(Problem(digest.hex(), r.pid, problem))
        log.error("repository %s: object %s: %s", self._name, digest.hex(), problem)

    def _confirm_moved(self, r: _PackRun, buckets: dict[int, bytearray]) -> None:
        """Look every collected entry up again: only reported ones may still point into the
        pack. Checked here rather than just before retiring: an entry never comes back."""
        index = self._index
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
                            Problem(
                                digest.hex(),
                                r.pid,
                                f"still indexed in pack {r.pid} after its move; pack kept",
                            )
                        )
                        log.error(
                            "repository %s: object %s still indexed in pack %d after its move",
                            self._name,
                            digest.hex(),
                            r.pid,
                        )

    # -- step 4: retire ----------------------------------------------------------------------
    def _retire_if_unreferenced(self, r: _PackRun) -> int:
        """Retire the pack if no index entry points into it; bytes freed (0: kept)."""
        with self._index.read() as txn:
            state = self._index.get_pack(txn, r.pid)
        if state is None:
            return 0
        live = state.end - len(PACK_MAGIC) - state.dead_bytes
        if live != 0:
            # The counters disagree with the entries collected: only a full look can tell.
            log.warning(
                "repository %s: pack %d still counts %d live bytes after compaction; "
                "checking the whole index",
                self._name,
                r.pid,
                live,
            )
            left = [d for d, loc in self._index.iter_locations() if loc.pack_id == r.pid]
            for d in left:
                self._problems.append(
                    Problem(
                        d.hex(), r.pid, f"still indexed in pack {r.pid} after compaction; pack kept"
                    )
                )
            if left:
                log.error(
                    "repository %s: pack %d kept: %d object(s) still point into it",
                    self._name,
                    r.pid,
                    len(left),
                )
                return 0
        self._retire(r.pid)
        return max(0, state.end - r.moved_bytes)

    def _committed_end(self, pid: int) -> int:
        with self._index.read() as txn:
            state = self._index.get_pack(txn, pid)
        return state.end if state is not None else 0

    def _compact_index(self) -> int:
        """Give the index file's free pages back to the disk; bytes freed.

        LMDB reuses free pages but never shrinks its file. Swapping in a compacted copy needs
        a moment with no other operation running: new ones wait (typically well under a
        second) and the swap is skipped if running ones do not finish in time.
        """
        size, used = self._index.usage()
        if size < _INDEX_MIN_BYTES or size < _INDEX_SLACK * used:
            return 0
        with self._activity.exclusive(own_others=1, timeout=_PAUSE_TIMEOUT) as drained:
            if not drained:
                log.info("repository %s: index compaction skipped: clients busy", self._name)
                return 0
            self._index.replace_with_compacted_copy()
        after, _ = self._index.usage()
        log.info("repository %s: index compacted from %d to %d bytes", self._name, size, after)
        return max(0, size - after)

    def _retire(self, pid: int) -> None:
        """Forget a pack whose live objects have all moved, then delete it once unused."""
        with self._index.write() as txn:
            self._index.delete_pack(txn, pid)
        self._drop_pack_file(pid)  # a bounded wait for readers; else the file goes later
