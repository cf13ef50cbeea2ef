"""The test harness: the daemon subprocess, condition waits, memory readings, fixtures."""

from .daemon import DaemonProcess, DaemonStartError, free_port
from .memory import peak_rss_bytes, reset_peak_rss, rss_bytes, steady_rss
from .waiting import WaitTimeout, wait_until

__all__ = [
    "DaemonProcess",
    "DaemonStartError",
    "WaitTimeout",
    "free_port",
    "peak_rss_bytes",
    "reset_peak_rss",
    "rss_bytes",
    "steady_rss",
    "wait_until",
]
