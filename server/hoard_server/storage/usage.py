"""The bytes one repository holds on disk, and its byte quota.

``used`` is a running figure, not a directory walk per write. It is measured (every file
under the repository: packs, index, dataset files, metadata cache, staged uploads) when
first needed, not at open, so a daemon opening many repositories walks none of them until
asked; and measured again before its next use after something shrank the repository
(``changed``: compaction, deleting dataset files; removing many files one by one marks it
once per file, and costs one walk). Each write adds what it announces (``admit``).

Writes announced too high (content already stored) or not at all (a stream of unknown
length) are trued up by a measurement in the background once the figure is older than
``remeasure_every`` seconds: the write or the description that notices starts it and goes
on with the running figure, so no call waits on a walk for that. The one exception is a
write the running figure would refuse: it is refused only on a figure measured within the
last ``remeasure_every`` seconds, so a figure announced too high never refuses for long.

Walks are single-flight: callers that need a fresh figure at once share one walk.

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
        self._lock = threading.Lock()  # guards the figures below; never held during a walk
        self._walk = threading.Lock()  # one walk at a time (single-flight)
        self._quota = quota
        self._used = 0
        self._measured_at = -math.inf  # when the last walk began
        self._changed_at = 0.0  # measure before the next use if later than _measured_at
        self._refreshing = False  # a background walk is under way

    @property
    def quota(self) -> int:
        """The byte quota; 0: none."""
        return self._quota

    def current(self) -> int:
        """The bytes used: measured first if never measured or something shrank the
        repository since; a background re-measure started if the figure is old."""
        if self._changed_at >= self._measured_at:
            self._measure_since(self._changed_at)
        elif time.monotonic() - self._measured_at > self._remeasure_every:
            self._refresh_soon()
        return self._used

    def changed(self) -> None:
        """Something was removed: measure again before the figure is next used."""
        self._changed_at = time.monotonic()

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
        with self._walk:
            return self._measure()

    def _measure(self) -> int:
        started = time.monotonic()
        used = disk_bytes(self._root)
        with self._lock:
            self._used = used
            self._measured_at = started
        return used

    def _measure_since(self, since: float) -> None:
        """Make sure the figure comes from a walk that began after ``since``: wait for the
        walk under way, and walk only if it began too early."""
        with self._walk:
            if self._measured_at <= since:
                self._measure()

    def _refresh_soon(self) -> None:
        with self._lock:
            if self._refreshing:
                return
            self._refreshing = True
        threading.Thread(target=self._refresh, name=f"usage-{self.name}", daemon=True).start()

    def _refresh(self) -> None:
        try:
            self._measure_since(time.monotonic())
        except Exception:  # the figure stays as it was; the next use tries again
            log.exception("repository %s: measuring its bytes on disk failed", self.name)
        finally:
            with self._lock:
                self._refreshing = False

    def admit(self, incoming: int = 0) -> None:
        """Let a write of ``incoming`` bytes (0: unknown) begin, counting them as used;
        LimitExceeded (QUOTA_EXCEEDED) when the repository is at its quota or the write
        would take it past."""
        if not self._quota:
            with self._lock:
                self._used += incoming
            return
        self.current()
        if not self._try_admit(incoming, fresh=False):
            self._measure_since(time.monotonic() - self._remeasure_every)
            self._try_admit(incoming, fresh=True)

    def _try_admit(self, incoming: int, fresh: bool) -> bool:
        """Count ``incoming`` if it fits. A refusal on a figure older than
        ``remeasure_every`` is left to the caller (False) unless ``fresh``."""
        with self._lock:
            quota, used = self._quota, self._used
            if used < quota and used + incoming <= quota:
                self._used += incoming
                return True
            if not fresh and time.monotonic() - self._measured_at > self._remeasure_every:
                return False
        raise QuotaExceeded(self.name, quota, used, incoming)


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
