"""Live compaction: reclaim the space of deleted objects while clients keep working.

A pack qualifies when its dead bytes reach a fraction of its payload. Packs are compacted
one at a time, so the extra disk in use never exceeds one pack's live data:

1. scan the pack's record headers; a record is live if the index still points at it;
2. copy live records (bytes as stored: nothing is recompressed) through the pack writer,
   which appends them to its current pack and switches each index entry only if it still
   points at the old place (an object deleted meanwhile is simply dropped);
3. drop the pack from the index, wait until every reader that might still hold a location
   in it has finished, then delete the file.

A crash at any point leaves every object readable: entries point either at the old pack
(still registered, still on disk) or at the new copy (committed). A later run resumes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from hoard_server.errors import DataLoss
from hoard_server.storage.index import Location
from hoard_server.storage.pack import HEADER_SIZE, PACK_MAGIC, scan_records
from hoard_server.storage.writer import RelocatedRecord

log = logging.getLogger(__name__)

DEFAULT_DEAD_FRACTION = 0.25
_MOVE_BATCH_BYTES = 2 << 20
_INDEX_SLACK = 2.0  # compact the index file when it is this many times what its trees use
_INDEX_MIN_BYTES = 4 << 20
_PAUSE_TIMEOUT = 10.0  # give up swapping the index if operations do not drain by then


@dataclass(frozen=True)
class PackPlan:
    pack_id: int
    size: int
    dead_bytes: int
    single: bool


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
        progress = {
            "stage": "plan",
            "dry_run": dry_run,
            "done": 0,
            "total": len(plan),
            "reclaimable_bytes": reclaimable,
            "reclaimed_bytes": 0,
            "moved_bytes": 0,
            "moved_objects": 0,
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
        if any(p.pack_id == repo.writer.current_pack_id for p in plan):
            repo.writer.seal().result()  # new writes go to a new pack; this one can go
        for p in plan:
            if repo.activity.closing:
                progress["message"] = "stopped: the daemon is shutting down"
                break
            if p.pack_id == repo.writer.current_pack_id:  # never move records into their own pack
                repo.writer.seal().result()
            moved_bytes, moved_objects = self._compact(p)
            progress["done"] += 1
            progress["moved_bytes"] += moved_bytes
            progress["moved_objects"] += moved_objects
            progress["reclaimed_bytes"] += p.size - moved_bytes
            progress["stage"] = "compact"
            progress["message"] = (
                f"pack {p.pack_id}: moved {moved_objects} live objects ({moved_bytes} bytes), "
                f"freed {p.size} bytes"
            )
            yield dict(progress)
        freed = self._compact_index()
        if freed:
            progress["reclaimed_bytes"] += freed
            progress["stage"] = "index"
            progress["message"] = f"index compacted: {freed} bytes freed"
            yield dict(progress)
        with repo.index.write() as txn:
            repo.index.put_meta(txn, "last_maintenance", repr(time.time()).encode())
        progress["stage"] = "done"
        progress["message"] = (
            f"compacted {progress['done']} of {len(plan)} pack(s); "
            f"reclaimed {progress['reclaimed_bytes']} bytes"
        )
        yield progress

    def _compact(self, plan: PackPlan) -> tuple[int, int]:
        repo = self.repo
        pid = plan.pack_id
        moved_bytes = moved_objects = 0
        batch: list[RelocatedRecord] = []
        batch_bytes = 0

        seen = 0
        started = time.monotonic()

        def flush() -> None:
            nonlocal batch, batch_bytes, moved_bytes, moved_objects, seen, started
            if batch:
                done = repo.writer.submit(batch).result()
                for rec, ok in zip(batch, done, strict=True):
                    if ok:
                        moved_bytes += HEADER_SIZE + rec.body_size
                        moved_objects += 1
            batch, batch_bytes = [], 0
            seen = self._back_off(time.monotonic() - started, seen)
            started = time.monotonic()

        with repo.activity.hold():
            seen = repo.activity.started  # our own hold included: only others count
            objects_db = repo.index.objects_db
            scanned = 0
            try:
                # Scan to the pack's committed end as the index has it now (the plan's size
                # may be stale: a pack being written was sealed only after planning), and
                # again from there should it still have grown: every live record must move
                # before the pack may go.
                while (end := self._committed_end(pid)) > scanned:
                    records = scan_records(
                        lambda off, n: repo.reader.read(pid, off, n), end, start=scanned
                    )
                    for n, (offset, header, window_body) in enumerate(records):
                        if not n % 128:
                            time.sleep(0)  # hand the interpreter to waiting requests now
                        with repo.index.read() as txn:
                            current = txn.get(header.digest, db=objects_db)
                        if current is None:
                            continue
                        loc = Location.decode(current)
                        if loc.pack_id != pid or loc.offset != offset:
                            continue  # a deleted object's record, or one moved already
                        body = (
                            bytes(window_body)
                            if window_body is not None
                            else repo.reader.read(pid, offset + HEADER_SIZE, header.body_size)
                        )
                        batch.append(
                            RelocatedRecord(
                                header.digest,
                                header.raw_size,
                                header.encoding,
                                [body],
                                header.body_size,
                                current,
                                pid,
                            )
                        )
                        batch_bytes += header.body_size
                        if batch_bytes >= _MOVE_BATCH_BYTES:
                            flush()
                    scanned = end
            except DataLoss as exc:  # keep the pack: verify reports it, reads still work
                flush()
                log.error("repository %s: not retiring damaged pack %d: %s", repo.name, pid, exc)
                return moved_bytes, moved_objects
            flush()
        self._retire(pid)
        return moved_bytes, moved_objects

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
