"""The real hoard daemon as a subprocess, for tests and benchmarks alike.

The harness picks the TCP port itself (bind port 0, read it, close) and passes it with
``--listen``; the daemon is ready once ``grpc.health.v1.Health/Check`` answers SERVING.
Its stderr is drained from the start into ``log`` (and optionally a file), so a failure
message can show what the daemon said, and a test can wait for a log line. A daemon started
with TLS flags is checked over TLS: give it the ``ClientTLS`` a client needs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .memory import peak_rss_bytes, reset_peak_rss, rss_bytes
from .waiting import WaitTimeout

_NOT_YET = (
    grpc.StatusCode.UNAVAILABLE,  # not listening yet
    grpc.StatusCode.DEADLINE_EXCEEDED,  # this attempt's slice ran out
    grpc.StatusCode.NOT_FOUND,  # listening, the health status not set yet
)

# what grpc core and the daemon say when the port went to someone else
_PORT_TAKEN = ("Address already in use", "Failed to bind to address", "cannot listen on")


@dataclass(frozen=True)
class ClientTLS:
    """What a client needs to reach a daemon serving TLS: the CA of its certificate, a
    client certificate and key for mutual TLS, the name its certificate has."""

    ca: str
    cert: str = ""
    key: str = ""
    server_name: str = ""

    def connect_kwargs(self) -> dict[str, str]:
        """As :func:`hoard.connect`'s arguments."""
        given = {
            "tls_ca": self.ca,
            "tls_cert": self.cert,
            "tls_key": self.key,
            "tls_server_name": self.server_name,
        }
        return {name: value for name, value in given.items() if value}

    def channel(self, target: str, options: list[tuple[str, Any]]) -> grpc.Channel:
        def read(path: str) -> bytes | None:
            if not path:
                return None
            with open(path, "rb") as fh:
                return fh.read()

        credentials = grpc.ssl_channel_credentials(read(self.ca), read(self.key), read(self.cert))
        if self.server_name:
            options = [*options, ("grpc.ssl_target_name_override", self.server_name)]
        return grpc.secure_channel(target, credentials, options=options)


class DaemonStartError(RuntimeError):
    """The daemon exited or did not answer its health check in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port the kernel considers free now (another process may take it before us:
    ``DaemonProcess.start`` retries with a new one if the daemon cannot bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class DaemonProcess:
    """``python -m hoard_server serve`` on a loopback port of its own.

    The port is chosen at construction (``target`` is known before ``start``) and kept
    across restarts, so clients reconnect to the same address. ``extra`` arguments follow
    the harness's own; another ``--listen`` adds an address. ``env`` is merged over this
    process's environment at each start. ``tls``: the daemon serves TLS (``extra`` has its
    ``--tls-cert``/``--tls-key``), its health is checked, and :meth:`connect` connects, with
    these client credentials.
    """

    def __init__(
        self,
        data_dir: str,
        *extra: str,
        env: dict[str, str] | None = None,
        log_path: str | None = None,
        tls: ClientTLS | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.extra = extra
        self.env = env
        self.log_path = log_path
        self.tls = tls
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.log: list[str] = []  # this run's stderr, line by line
        self._log_changed = threading.Condition()
        self._drain: threading.Thread | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def connect(self, **kwargs: Any) -> Any:
        """``hoard.connect`` to this daemon, with its client TLS credentials if any;
        ``kwargs`` add to (or override) them."""
        import hoard

        given = self.tls.connect_kwargs() if self.tls else {}
        return hoard.connect(self.target, **{**given, **kwargs})

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the daemon was never started"
        return self.proc.pid

    # -- life cycle ----------------------------------------------------------------------

    def start(self, timeout: float = 30.0, attempts: int = 3) -> DaemonProcess:
        """Start and wait until the health check answers SERVING (at most ``timeout``)."""
        for attempt in range(attempts):
            self._spawn()
            try:
                self._wait_serving(time.monotonic() + timeout)
                return self
            except DaemonStartError:
                self.kill()
                port_taken = any(sign in line for line in self.log for sign in _PORT_TAKEN)
                if not port_taken or attempt == attempts - 1:
                    raise
                self.port = free_port()  # someone took it between our probe and the bind
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "hoard_server",
            "serve",
            "--listen",
            self.target,
            "--data-dir",
            self.data_dir,
            *self.extra,
        ]
        env = {**os.environ, **(self.env or {})}
        self.log = []
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
        assert self.proc.stderr is not None
        self._drain = threading.Thread(
            target=self._drain_stderr, args=(self.proc.stderr,), name="daemon-stderr", daemon=True
        )
        self._drain.start()

    def _drain_stderr(self, stream: IO[str]) -> None:
        sink = open(self.log_path, "a") if self.log_path else None  # noqa: SIM115
        try:
            for line in stream:
                if sink is not None:
                    sink.write(line)
                    sink.flush()
                with self._log_changed:
                    self.log.append(line)
                    self._log_changed.notify_all()
        finally:
            if sink is not None:
                sink.close()

    def _wait_serving(self, deadline: float) -> None:
        assert self.proc is not None
        request = health_pb2.HealthCheckRequest()
        # the daemon is not listening yet at first: retry the connection every 20-100 ms,
        # not after gRPC's default back-off of a second
        backoff = [
            ("grpc.initial_reconnect_backoff_ms", 20),
            ("grpc.min_reconnect_backoff_ms", 20),
            ("grpc.max_reconnect_backoff_ms", 100),
        ]
        channel = (
            self.tls.channel(self.target, backoff)
            if self.tls
            else grpc.insecure_channel(self.target, options=backoff)
        )
        with channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                if self.proc.poll() is not None:
                    self._join_drain()
                    raise DaemonStartError(
                        f"the daemon exited with {self.proc.returncode} during start-up:\n"
                        + self.log_tail()
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DaemonStartError(
                        f"the daemon's health check did not answer SERVING on {self.target} "
                        "in time:\n" + self.log_tail()
                    )
                try:
                    # one slice of at most a second, so that an early exit is noticed
                    for reply in health.Watch(request, timeout=min(1.0, left), wait_for_ready=True):
                        if reply.status == health_pb2.HealthCheckResponse.SERVING:
                            return
                except grpc.RpcError as exc:
                    if exc.code() not in _NOT_YET:
                        raise

    def _join_drain(self, timeout: float = 10.0) -> None:
        """Once the process has exited: wait until its last log line is in ``log``."""
        if self._drain is not None:
            self._drain.join(timeout)

    def _dump_stacks(self) -> None:
        """Ask a running daemon for every thread's stack (it prints them to its log)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(1.0)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        """Send a signal and return at once (``stop`` also waits for the exit)."""
        assert self.proc is not None, "the daemon was never started"
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit; its exit code, with its whole log read."""
        assert self.proc is not None, "the daemon was never started"
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._dump_stacks()
            self.kill()
            raise DaemonStartError(
                f"the daemon did not exit within {timeout:g}s; killed it:\n" + self.log_tail(200)
            ) from None
        self._join_drain()
        return code

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: the graceful path. The exit code (0: clean)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: the crash path."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self._join_drain()

    def restart(self) -> DaemonProcess:
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- what it says and what it holds ----------------------------------------------------

    def log_tail(self, lines: int = 40) -> str:
        return "".join(self.log[-lines:])

    def wait_for_log(self, text: str, count: int = 1, since: int = 0, timeout: float = 30.0) -> int:
        """Wait until ``count`` lines from index ``since`` on contain ``text``; the number
        found (the log only grows within a run, so later lines are checked by the caller)."""
        deadline = time.monotonic() + timeout

        def found() -> int:
            return sum(text in line for line in self.log[since:])

        with self._log_changed:
            while (n := found()) < count:
                left = deadline - time.monotonic()
                if left <= 0 or not self._drain_alive():  # no more lines will come
                    if self.proc is not None and self.proc.poll() is None:
                        self.proc.send_signal(signal.SIGUSR1)  # the daemon prints its stacks
                        end = time.monotonic() + 1.0
                        while (rest := end - time.monotonic()) > 0:
                            self._log_changed.wait(rest)  # lets the drain thread add them
                    raise WaitTimeout(
                        f"{n} of {count} log lines with {text!r} after {timeout:g}s:\n"
                        + self.log_tail(200)
                    )
                self._log_changed.wait(min(left, 1.0))
        return n

    def _drain_alive(self) -> bool:
        return self._drain is not None and self._drain.is_alive()

    def rss(self) -> int:
        """Resident memory now, in bytes."""
        return rss_bytes(self.pid)

    def peak_rss(self) -> int:
        """Peak resident memory since start or ``reset_peak_rss``, in bytes."""
        return peak_rss_bytes(self.pid)

    def reset_peak_rss(self) -> None:
        reset_peak_rss(self.pid)
