"""The bytes one repository holds on disk, and its byte quota.

``used`` is a running figure, not a directory walk per write: it is measured when first
needed (every file under the repository: packs, index, dataset files, metadata cache, staged
uploads; not at open, so a daemon opening many repositories walks none of them until asked),
increased by what each write announces (``admit``), and measured again after the calls that
shrink the repository (compaction, deleting dataset files) and whenever the last measurement
is older than ``remeasure_every`` seconds when it is next needed (a write to a repository
with a quota, a description of the repository), so that writes announced too high (content
already stored) or not at all (a stream of unknown length) are trued up soon. Deleting
dataset files only marks the figure out of date: removing many files one by one costs no
walk each.

The quota is a bound on growth, checked before a write starts: a write admitted just under
the quota may end a little above it, never by more than what was in flight.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable

from hoard_server.errors import LimitExceeded

log = logging.getLogger(__name__)

REMEASURE_EVERY = 10.0  # seconds after which ``admit`` measures again before checking


def disk_bytes(root: str) -> int:
    """Bytes the files under ``root`` take: each file's length, or its allocated blocks if
    fewer (an LMDB map or a sparse file does not count what it never wrote)."""
    total = 0
    for directory, _dirs, files in os.walk(root):
        for name in files:
            try:
                st = os.lstat(os.path.join(directory, name))
            except FileNotFoundError:  # removed while we walked
                continue
            total += min(st.st_size, st.st_blocks * 512)
    return total


class Usage:
    """Bytes used by the repository at ``root`` against its quota; thread-safe.

    ``save_quota`` persists a new quota (the repository keeps it in its index); the
    quota is read back by whoever opens the repository and handed in as ``quota``."""

    def __init__(
        self,
        name: str,
        root: str,
        quota: int,
        save_quota: Callable[[int], None],
        remeasure_every: float = REMEASURE_EVERY,
    ) -> None:
        self.name = name
        self._root = root
        self._save_quota = save_quota
        self._remeasure_every = remeasure_every
        self._lock = threading.Lock()
        self._quota = quota
        self._used = 0
        self._measured_at = -math.inf  # measured when first needed

    @property
    def quota(self) -> int:
        """The byte quota; 0: none."""
        return self._quota

    def current(self) -> int:
        """The bytes used, measured again first if the figure is out of date."""
        if time.monotonic() - self._measured_at > self._remeasure_every:
            self.measure()
        return self._used

    def changed(self) -> None:
        """Something was removed: measure again before the figure is next used."""
        self._measured_at = -math.inf

    def set_quota(self, quota: int) -> None:
        """Set (0: remove) the quota, persisted before it takes effect."""
        if quota < 0:
            raise ValueError(f"a quota is a number of bytes, not {quota}")
        with self._lock:
            self._save_quota(quota)
            self._quota = quota
        log.info("repository %s: quota %s (%d bytes used)", self.name, quota or "none", self._used)

    def measure(self) -> int:
        """Walk the repository and make ``used`` what it holds now."""
        started = time.monotonic()
        used = disk_bytes(self._root)
        with self._lock:
            self._used = used
            self._measured_at = started
        return used

    def admit(self, incoming: int = 0) -> None:
        """Let a write of ``incoming`` bytes (0: unknown) begin, counting them as used;
        LimitExceeded (QUOTA_EXCEEDED) when the repository is at its quota or the write
        would take it past."""
        if not self._quota:
            with self._lock:
                self._used += incoming
            return
        self.current()
        with self._lock:
            quota, used = self._quota, self._used
            if used >= quota or used + incoming > quota:
                raise QuotaExceeded(self.name, quota, used, incoming)
            self._used += incoming


class QuotaExceeded(LimitExceeded):
    """A write to a repository at (or brought past) its byte quota. Not retried: the same
    write fails again until space is freed or the quota raised."""

    def __init__(self, repository: str, quota: int, used: int, incoming: int) -> None:
        adding = f"; this write adds {incoming} more" if incoming else ""
        super().__init__(
            f"repository {repository!r} is at its quota: {used} bytes used of {quota}{adding}. "
            "Delete what it no longer needs and compact it (hoard maintain), or ask an "
            f"admin to raise the quota (hoard repo quota {repository} SIZE)",
            reason="QUOTA_EXCEEDED",
            repository=repository,
            quota=quota,
            used=used,
        )


__all__ = ["QuotaExceeded", "Usage", "disk_bytes"]
