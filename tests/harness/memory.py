"""A process's resident memory, from /proc (Linux)."""

from __future__ import annotations

from pathlib import Path


def _status_field(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) << 10
    raise AssertionError(f"/proc/{pid}/status has no {field}")


def rss_bytes(pid: int) -> int:
    """Resident set size now."""
    return _status_field(pid, "VmRSS")


def peak_rss_bytes(pid: int) -> int:
    """The high-water mark of the resident set since start (or the last reset)."""
    return _status_field(pid, "VmHWM")


def reset_peak_rss(pid: int) -> None:
    """Start a new high-water mark at the current RSS (``clear_refs``, Linux 4.0+)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def steady_rss(pid: int, tolerance: int = 4 << 20, samples: int = 5, timeout: float = 30.0) -> int:
    """The resident set size once it has settled: ``samples`` readings in a row, 0.2 s
    apart, within ``tolerance`` of each other. For tests that measure what a load costs:
    they wait for the daemon to reach the state the load leads to, not for a fixed time."""
    import time

    deadline = time.monotonic() + timeout
    window: list[int] = []
    while True:
        window = [*window[-(samples - 1) :], rss_bytes(pid)]
        if len(window) == samples and max(window) - min(window) <= tolerance:
            return window[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"the RSS of {pid} did not settle: last readings {window}")
        time.sleep(0.2)
