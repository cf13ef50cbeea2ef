"""Integrity checks: re-read and re-hash objects, check the index against the packs.

Every problem is reported with the object's key (or the pack's id, or a dataset file's path:
``dataset_check.py``) and what is wrong; checking carries on past it, and the daemon keeps
serving every other object. The result (time and number of problems) is recorded in the
index for ``info``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

from hoard_server.errors import DataLoss
from hoard_server.reports import Problem, VerifyProgress
from hoard_server.storage.activity import Activity
from hoard_server.storage.index import Location, ObjectIndex
from hoard_server.storage.pack import HEADER_SIZE, PACK_MAGIC, PackReader

ReadObject = Callable[[str], tuple[int, Iterator[bytes]]]
# the problems of the dataset files (all, or a random fraction of them)
CheckFiles = Callable[[float], Iterator[Problem]]

_REPORT_EVERY = 2000

log = logging.getLogger(__name__)


class Verifier:
    """One verification run over the parts of a store it needs: the index (what should
    exist), the packs (their files and record headers), ``read_object`` (the store's own
    read path, so that what is checked is what a client would be served) and ``activity``
    (a hold per object keeps its pack from being retired meanwhile); ``check_files``, if
    given, checks the dataset files after the objects (not when one pack is asked for)."""

    def __init__(
        self,
        name: str,
        index: ObjectIndex,
        packs: PackReader,
        pack_path: Callable[[int], str],
        activity: Activity,
        read_object: ReadObject,
        check_files: CheckFiles | None = None,
    ) -> None:
        self._name = name
        self._index = index
        self._packs = packs
        self._pack_path = pack_path
        self._activity = activity
        self._read_object = read_object
        self._check_files = check_files

    def _check_packs(self, only: int) -> list[Problem]:
        problems = []
        for pid, st in self._index.packs().items():
            if only and pid != only:
                continue
            path = self._pack_path(pid)
            try:
                size = os.path.getsize(path)
            except FileNotFoundError:
                problems.append(Problem("", pid, "pack file is missing"))
                continue
            if size < st.end:
                problems.append(
                    Problem("", pid, f"pack file is truncated: {size} bytes, {st.end} committed")
                )
            else:
                try:
                    with open(path, "rb") as fh:
                        magic = fh.read(len(PACK_MAGIC))
                except OSError as exc:
                    problems.append(Problem("", pid, f"pack file is unreadable: {exc}"))
                    continue
                if magic != PACK_MAGIC:
                    problems.append(Problem("", pid, "pack file header is damaged"))
        return problems

    def _check_object(self, digest: bytes) -> tuple[int, int]:
        """(pack id, bytes checked); DataLoss naming what is wrong (any other exception is
        wrapped in one). (0, 0) if deleted."""
        with self._activity.hold():  # the object's pack cannot be retired meanwhile
            loc = self._index.get_many([digest])[0]
            if loc is None:
                return 0, 0
            try:
                return loc.pack_id, self._check_at(digest, loc)
            except DataLoss as exc:
                exc.pack_id = loc.pack_id  # type: ignore[attr-defined]
                raise
            except Exception as exc:
                if self._activity.closing:
                    raise  # shutting down: not a problem of this object
                log.exception("verify: checking object %s failed", digest.hex())
                loss = DataLoss(f"checking it failed: {type(exc).__name__}: {exc}")
                loss.pack_id = loc.pack_id  # type: ignore[attr-defined]
                raise loss from exc

    def _check_at(self, digest: bytes, loc: Location) -> int:
        loc.check_header(digest, self._packs.read(loc.pack_id, loc.offset, HEADER_SIZE))
        h = hashlib.sha256()
        _size, chunks = self._read_object(digest.hex())
        n = 0
        for chunk in chunks:
            h.update(chunk)
            n += len(chunk)
        if h.digest() != digest or n != loc.raw_size:
            raise DataLoss("content does not hash to its key")
        return n

    def run(self, pack_id: int = 0, sample: float = 0.0) -> Iterator[VerifyProgress]:
        total = self._index.totals().objects
        rng = random.Random()
        problems = self._check_packs(pack_id)
        progress = VerifyProgress(
            total_objects=total, problems=problems, problem_count=len(problems)
        )
        since = 0
        for digest, loc in self._index.iter_locations():
            if pack_id and loc.pack_id != pack_id:
                continue
            if sample and rng.random() >= sample:
                continue
            try:
                _pid, n = self._check_object(digest)
                progress.checked_bytes += n
            except DataLoss as exc:
                pid = getattr(exc, "pack_id", loc.pack_id)
                progress.problems.append(Problem(digest.hex(), pid, str(exc)))
                progress.problem_count += 1
            progress.checked_objects += 1
            since += 1
            if since >= _REPORT_EVERY:
                yield replace(progress)
                progress.problems = []
                since = 0
        if self._check_files is not None and not pack_id:
            for problem in self._check_files(sample):
                progress.problems.append(problem)
                progress.problem_count += 1
                yield replace(progress)
                progress.problems = []
        progress.done = True
        with self._index.write() as txn:
            self._index.put_meta(txn, "last_verification", repr(time.time()).encode())
            self._index.put_meta(
                txn, "last_verification_errors", str(progress.problem_count).encode()
            )
        yield progress
