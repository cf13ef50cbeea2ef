"""Integrity checks: re-read and re-hash objects, check the index against the packs.

Every problem is reported with the object's key (or the pack's id) and what is wrong;
checking carries on past it, and the daemon keeps serving every other object. The result
(time and number of problems) is recorded in the index for ``info``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import time
from collections.abc import Iterator

from hoard_server.errors import DataLoss
from hoard_server.storage.index import Location
from hoard_server.storage.pack import HEADER_SIZE, PACK_MAGIC

_REPORT_EVERY = 2000

log = logging.getLogger(__name__)


class Verifier:
    def __init__(self, repo) -> None:  # repo: hoard_server.storage.repository.Repository
        self.repo = repo

    def _check_packs(self, only: int) -> list[dict]:
        problems = []
        for pid, st in self.repo.index.packs().items():
            if only and pid != only:
                continue
            path = self.repo.pack_path(pid)
            try:
                size = os.path.getsize(path)
            except FileNotFoundError:
                problems.append({"key": "", "pack_id": pid, "problem": "pack file is missing"})
                continue
            if size < st.end:
                problems.append(
                    {
                        "key": "",
                        "pack_id": pid,
                        "problem": f"pack file is truncated: {size} bytes, {st.end} committed",
                    }
                )
            else:
                try:
                    with open(path, "rb") as fh:
                        magic = fh.read(len(PACK_MAGIC))
                except OSError as exc:
                    problems.append(
                        {"key": "", "pack_id": pid, "problem": f"pack file is unreadable: {exc}"}
                    )
                    continue
                if magic != PACK_MAGIC:
                    problems.append(
                        {"key": "", "pack_id": pid, "problem": "pack file header is damaged"}
                    )
        return problems

    def _check_object(self, digest: bytes) -> tuple[int, int]:
        """(pack id, bytes checked); DataLoss naming what is wrong (any other exception is
        wrapped in one). (0, 0) if deleted."""
        repo = self.repo
        with repo.activity.hold():  # the object's pack cannot be retired meanwhile
            loc = repo.index.get_many([digest])[0]
            if loc is None:
                return 0, 0
            try:
                return loc.pack_id, self._check_at(digest, loc)
            except DataLoss as exc:
                exc.pack_id = loc.pack_id  # type: ignore[attr-defined]
                raise
            except Exception as exc:
                if repo.activity.closing:
                    raise  # shutting down: not a problem of this object
                log.exception("verify: checking object %s failed", digest.hex())
                loss = DataLoss(f"checking it failed: {type(exc).__name__}: {exc}")
                loss.pack_id = loc.pack_id  # type: ignore[attr-defined]
                raise loss from exc

    def _check_at(self, digest: bytes, loc: Location) -> int:
        repo = self.repo
        loc.check_header(digest, repo.reader.read(loc.pack_id, loc.offset, HEADER_SIZE))
        h = hashlib.sha256()
        _size, chunks = repo.read(digest.hex())
        n = 0
        for chunk in chunks:
            h.update(chunk)
            n += len(chunk)
        if h.digest() != digest or n != loc.raw_size:
            raise DataLoss("content does not hash to its key")
        return n

    def run(self, pack_id: int = 0, sample: float = 0.0) -> Iterator[dict]:
        repo = self.repo
        total = repo.index.totals().objects
        rng = random.Random()
        problems = self._check_packs(pack_id)
        count = len(problems)
        progress = {
            "checked_objects": 0,
            "total_objects": total,
            "checked_bytes": 0,
            "problems": problems,
            "done": False,
            "problem_count": count,
        }
        since = 0
        for digest, loc in repo.index.iter_locations():
            if pack_id and loc.pack_id != pack_id:
                continue
            if sample and rng.random() >= sample:
                continue
            try:
                _pid, n = self._check_object(digest)
                progress["checked_bytes"] += n
            except DataLoss as exc:
                pid = getattr(exc, "pack_id", loc.pack_id)
                progress["problems"].append(
                    {"key": digest.hex(), "pack_id": pid, "problem": str(exc)}
                )
                count += 1
                progress["problem_count"] = count
            progress["checked_objects"] += 1
            since += 1
            if since >= _REPORT_EVERY:
                yield dict(progress)
                progress["problems"] = []
                since = 0
        progress["done"] = True
        with repo.index.write() as txn:
            repo.index.put_meta(txn, "last_verification", repr(time.time()).encode())
            repo.index.put_meta(txn, "last_verification_errors", str(count).encode())
        yield progress
