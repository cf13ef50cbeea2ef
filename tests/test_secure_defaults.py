"""Secure by default, through ``hoard serve``: no remote address without auth and TLS (or
``--allow-remote``, which warns), and unix sockets only their owner (or group) can open."""

from __future__ import annotations

import grp
import os
import stat
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from harness.daemon import DaemonProcess, DaemonStartError, free_port

from hoard_server.auth.tokens import Role, add_token


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hoard.cli", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_remote_address_without_auth_is_refused(tmp_path):
    done = serve("--listen", f"0.0.0.0:{free_port()}", "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 2, done.stderr
    for needed in ("tokens_file", "TLS", "--allow-remote", "refusing to listen on 0.0.0.0"):
        assert needed in done.stderr, done.stderr
    assert not (tmp_path / "data").exists(), "refused before touching the data directory"


def test_tokens_without_tls_are_not_enough_for_a_remote_address(tmp_path):
    tokens = str(tmp_path / "tokens.toml")
    add_token(tokens, "ci", {"*": Role.READ})
    done = serve(
        "--listen",
        f"0.0.0.0:{free_port()}",
        "--data-dir",
        str(tmp_path / "d"),
        "--tokens-file",
        tokens,
    )
    assert done.returncode == 2
    assert "without TLS" in done.stderr and "without a tokens_file" not in done.stderr


def _health(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        return (
            health_pb2_grpc.HealthStub(channel)
            .Check(health_pb2.HealthCheckRequest(), timeout=10)
            .status
        )


def test_allow_remote_starts_and_warns(daemon_factory):
    port = free_port("0.0.0.0")
    daemon = daemon_factory(None, "--listen", f"0.0.0.0:{port}", "--allow-remote")
    daemon.wait_for_log(f"listening on 0.0.0.0:{port} without both a tokens file and TLS")
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _mode(path) -> int:
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    return st.st_mode & 0o777


def test_a_unix_socket_is_its_owners_only(daemon_factory, tmp_path):
    sock = tmp_path / "hoard.sock"
    daemon_factory(None, "--listen", f"unix:{sock}")
    assert _mode(sock) == 0o600
    assert _health(f"unix:{sock}") == health_pb2.HealthCheckResponse.SERVING


def test_a_socket_group_opens_it_to_that_group(daemon_factory, tmp_path):
    group = grp.getgrgid(os.getgid()).gr_name
    sock = tmp_path / "hoard.sock"
    daemon_factory(
        None, "--listen", f"unix://{sock}", "--socket-group", group, "--group-access", "write"
    )
    assert _mode(sock) == 0o660
    assert os.stat(sock).st_gid == os.getgid()
    assert _health(f"unix:{sock}") == health_pb2.HealthCheckResponse.SERVING


def test_an_unknown_socket_group_stops_the_start(tmp_path):
    daemon = DaemonProcess(
        str(tmp_path / "data"),
        "--listen",
        f"unix:{tmp_path}/s.sock",
        "--socket-group",
        "no-such-group-here",
    )
    with pytest.raises(DaemonStartError):
        daemon.start(timeout=20, attempts=1)
    assert daemon.proc is not None and daemon.proc.returncode == 2
    assert "socket_group 'no-such-group-here' is not a group of this host" in daemon.log_tail()
