"""Scheduled maintenance: compact every repository every ``maintenance_interval`` seconds."""

from __future__ import annotations

import logging
import threading

from hoard_server.storage.registry import RepositoryRegistry

log = logging.getLogger("hoard")


class MaintenanceSchedule:
    """A background thread that compacts each repository in turn, live, until stopped."""

    def __init__(self, registry: RepositoryRegistry, interval: float) -> None:
        self._registry = registry
        self._interval = interval
        self._stopping = threading.Event()

    def start(self) -> None:
        """Begin the schedule; an interval of 0 means none."""
        if self._interval > 0:
            threading.Thread(target=self._run, name="maintenance", daemon=True).start()

    def stop(self) -> None:
        """Stop after the repository being compacted reaches its next step."""
        self._stopping.set()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            for name in self._registry.names():
                try:
                    message = "nothing done"
                    for step in self._registry.get(name).maintain():
                        message = step.message
                        if self._stopping.is_set():
                            break
                    log.info("scheduled maintenance of %s: %s", name, message)
                except Exception as exc:  # a busy or erased repository: next round
                    log.warning("scheduled maintenance of %s skipped: %s", name, exc)
