"""Old import path: ``from daemon import DaemonProcess`` (the harness lives in harness/)."""

from harness.daemon import DaemonProcess, DaemonStartError, free_port

__all__ = ["DaemonProcess", "DaemonStartError", "free_port"]
