"""Run the real hoard daemon as a subprocess for tests and benchmarks."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

_LISTENING = re.compile(r"listening on (\S+?)(?:,|\s)")


class DaemonProcess:
    """``python -m hoard_server serve`` on a free loopback port, with its log kept."""

    def __init__(self, data_dir: str, *extra: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.extra = extra
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.target = ""
        self.log: list[str] = []

    def start(self, timeout: float = 30.0) -> DaemonProcess:
        cmd = [
            sys.executable,
            "-m",
            "hoard_server",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            self.data_dir,
            *self.extra,
        ]
        env = {**os.environ, **(self.env or {})}
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
        self.log = []
        deadline = time.monotonic() + timeout
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError("daemon exited during start-up:\n" + "".join(self.log))
            self.log.append(line)
            m = _LISTENING.search(line)
            if m:
                self.target = m.group(1)
                break
        else:
            raise RuntimeError("daemon did not start in time:\n" + "".join(self.log))
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: the graceful path."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: the crash path."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def restart(self) -> DaemonProcess:
        self.stop()
        return self.start()
