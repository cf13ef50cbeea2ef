"""TLS and mutual TLS against the real daemon, with certificates made here by trustme: round
trips on every face, each way of getting TLS wrong giving a TLSError that says which, the
daemon refusing unusable files, renewed files served without a restart, keepalive, and a
client that keeps working across a daemon restart."""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import trustme
from prometheus_client.parser import text_string_to_metric_families

import hoard
from hoard import errors
from hoard.transport import KEEPALIVE_TIME_MS, channel_options
from hoard_server.auth.tokens import Role, add_token
from hoard_server.daemon.config import Config
from hoard_server.daemon.main import MIN_CLIENT_PING_INTERVAL_MS, grpc_options
from tests.harness.daemon import ClientTLS, DaemonProcess
from tests.harness.fixtures import DaemonFactory


@dataclass(frozen=True)
class Pki:
    """PEM files: a CA, the daemon's certificate (localhost, 127.0.0.1), a client
    certificate signed by the CA, and another CA with a client certificate of its own."""

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str
    other_client_cert: str
    other_client_key: str

    def serve_args(self, *, mutual: bool = False) -> tuple[str, ...]:
        args = ("--tls-cert", self.server_cert, "--tls-key", self.server_key)
        return (*args, "--tls-client-ca", self.ca) if mutual else args


def write_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca, other = trustme.CA(), trustme.CA()
    paths: dict[str, str] = {}

    def save(name: str, blob: trustme.Blob) -> None:
        paths[name] = str(folder / f"{name}.pem")
        blob.write_to_path(paths[name])

    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("workstation-1@lab.example")
    stranger = other.issue_cert("workstation-1@lab.example")
    save("ca", ca.cert_pem)
    save("server_cert", server.cert_chain_pems[0])
    save("server_key", server.private_key_pem)
    save("client_cert", client.cert_chain_pems[0])
    save("client_key", client.private_key_pem)
    save("other_ca", other.cert_pem)
    save("other_client_cert", stranger.cert_chain_pems[0])
    save("other_client_key", stranger.private_key_pem)
    return Pki(**paths)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return write_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def socket_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="hoard-tls-", dir="/tmp") as folder:
        yield folder  # short: a unix socket path has at most 107 bytes


def _started(daemon: DaemonProcess) -> Iterator[DaemonProcess]:
    daemon.start()
    try:
        yield daemon
    finally:
        try:
            daemon.stop()
        finally:
            daemon.kill()


@pytest.fixture(scope="module")
def tls_daemon(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory, socket_dir: str
) -> Iterator[DaemonProcess]:
    """TLS on its TCP port, and a unix socket beside it (plain)."""
    data = str(tmp_path_factory.mktemp("tls-data"))
    unix = f"unix:{socket_dir}/tls.sock"
    args = (*pki.serve_args(), "--listen", unix)
    yield from _started(DaemonProcess(data, *args, tls=ClientTLS(pki.ca)))


@pytest.fixture(scope="module")
def mtls_daemon(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    data = str(tmp_path_factory.mktemp("mtls-data"))
    client = ClientTLS(pki.ca, pki.client_cert, pki.client_key)
    yield from _started(DaemonProcess(data, *pki.serve_args(mutual=True), tls=client))


def _round_trip(client: hoard.Client) -> None:
    repo = client.repository("default")
    key = repo.put_object(b"over TLS")
    assert repo.has_object(key)
    assert repo.get_object_content(key) == b"over TLS"
    datasets = client.datasets("default", shared_memory=False)
    rows = np.arange(12.0).reshape(6, 2)
    datasets.append_data("tls/run.h5", "data", rows[:4], grow_dimension=0)
    datasets.append_data("tls/run.h5", "data", rows[4:], grow_dimension=0)
    np.testing.assert_array_equal(datasets.get_data("tls/run.h5", "data", np.s_[2:5]), rows[2:5])
    assert client.metadata("default").count() >= 0


def _ask(client: hoard.Client) -> bool:
    """One small call (the SDK connects lazily: this is where a connection fails)."""
    return client.repository("default").has_object("0" * 64)


# -- TLS ----------------------------------------------------------------------------------------


def test_tls_round_trip_on_every_face(tls_daemon: DaemonProcess) -> None:
    with tls_daemon.connect() as client:
        _round_trip(client)
    assert any("TLS on 127.0.0.1:" in line for line in tls_daemon.log), tls_daemon.log_tail()


def test_the_unix_socket_beside_a_tls_port_stays_plain(
    tls_daemon: DaemonProcess, socket_dir: str
) -> None:
    with hoard.connect(f"unix:{socket_dir}/tls.sock") as client:
        assert client.repository("default").put_object(b"unix") is not None
    assert any("no TLS on unix:" in line for line in tls_daemon.log), tls_daemon.log_tail()


def test_a_wrong_ca_is_a_tls_error_naming_the_ca(tls_daemon: DaemonProcess, pki: Pki) -> None:
    with (
        tls_daemon.connect(tls_ca=pki.other_ca, retries=0) as client,
        pytest.raises(errors.TLSError) as caught,
    ):
        _ask(client)
    message = str(caught.value)
    assert tls_daemon.target in message and "not signed by the CA given" in message
    assert isinstance(caught.value, ConnectionError)


def test_a_server_name_the_certificate_lacks_is_named(tls_daemon: DaemonProcess) -> None:
    with (
        tls_daemon.connect(tls_server_name="store.other.example", retries=0) as client,
        pytest.raises(errors.TLSError, match="tls_server_name"),
    ):
        _ask(client)
    # the name the certificate has, given for an address it lacks: accepted
    with tls_daemon.connect(tls_server_name="localhost") as client:
        assert not _ask(client)


def test_a_plain_client_at_a_tls_port_is_told_to_use_tls(tls_daemon: DaemonProcess) -> None:
    with (
        hoard.connect(tls_daemon.target, retries=0) as client,
        pytest.raises(errors.TLSError, match="tls_ca"),
    ):
        _ask(client)


def test_a_tls_client_at_a_plain_port_is_told_it_has_no_tls(
    hoard_daemon: DaemonProcess, pki: Pki
) -> None:
    with (
        hoard.connect(hoard_daemon.target, tls_ca=pki.ca, retries=0) as client,
        pytest.raises(errors.TLSError, match="does not speak TLS"),
    ):
        _ask(client)


# -- mutual TLS ---------------------------------------------------------------------------------


def test_mutual_tls_round_trip_with_a_client_certificate(mtls_daemon: DaemonProcess) -> None:
    with mtls_daemon.connect() as client:
        _round_trip(client)
    assert any("mutual TLS (client certificates signed by" in line for line in mtls_daemon.log)


def test_mutual_tls_without_a_client_certificate_says_one_is_needed(
    mtls_daemon: DaemonProcess, pki: Pki
) -> None:
    with (
        hoard.connect(mtls_daemon.target, tls_ca=pki.ca, retries=0) as client,
        pytest.raises(errors.TLSError, match="tls_cert= and tls_key="),
    ):
        _ask(client)


def test_mutual_tls_refuses_a_certificate_from_another_ca(
    mtls_daemon: DaemonProcess, pki: Pki
) -> None:
    with (
        mtls_daemon.connect(
            tls_cert=pki.other_client_cert, tls_key=pki.other_client_key, retries=0
        ) as client,
        pytest.raises(errors.TLSError) as caught,
    ):
        _ask(client)
    assert f"refused the client certificate {pki.other_client_cert}" in str(caught.value)


# -- the daemon's files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "words"),
    [
        (("server_cert", "other_client_key", ""), "KEY_VALUES_MISMATCH"),
        (("server_cert", "missing", ""), "No such file"),
        (("server_cert", "server_key", "server_key"), "cannot use TLS client CA"),
    ],
)
def test_unusable_tls_files_stop_the_start_naming_them(
    pki: Pki, tmp_path: Path, files: tuple[str, str, str], words: str
) -> None:
    def path(name: str) -> str:
        return getattr(pki, name) if hasattr(pki, name) else str(tmp_path / f"{name}.pem")

    cert, key, client_ca = (path(name) if name else "" for name in files)
    args = ["--tls-cert", cert, "--tls-key", key]
    if client_ca:
        args += ["--tls-client-ca", client_ca]
    done = subprocess.run(
        [sys.executable, "-m", "hoard_server", "serve", "--data-dir", str(tmp_path / "d"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert words in done.stderr and (client_ca or key) in done.stderr
    assert not (tmp_path / "d").exists(), "the data was opened before the TLS files were checked"


def test_metrics_over_mutual_tls_only_to_scrapers_with_a_client_certificate(
    daemon_factory: DaemonFactory, pki: Pki
) -> None:
    """``metrics_tls``: /metrics over HTTPS with the daemon's certificate; with a client CA,
    a scraper without a certificate from it gets no answer, and plain HTTP gets none."""
    args = ("--metrics-listen", "127.0.0.1:0", "--metrics-tls", *pki.serve_args(mutual=True))
    client = ClientTLS(pki.ca, pki.client_cert, pki.client_key)
    d = daemon_factory(None, *args, tls=client)
    d.wait_for_log("metrics served at")
    (url,) = [m[1] for line in d.log if (m := re.search(r"metrics served at (\S+)", line))]
    assert url.startswith("https://127.0.0.1:") and url.endswith("/metrics")

    def scrape(cert: str | None, key: str | None = None) -> str:
        context = ssl.create_default_context(cafile=pki.ca)
        if cert:
            context.load_cert_chain(cert, key)
        with urllib.request.urlopen(url, timeout=10, context=context) as reply:
            return reply.read().decode()

    with d.connect() as c:
        c.repository("default").put_object(b"counted")
    host, port = url.removeprefix("https://").removesuffix("/metrics").rsplit(":", 1)
    silent = socket.create_connection((host, int(port)))  # never starts its handshake
    families = {
        f.name for f in text_string_to_metric_families(scrape(pki.client_cert, pki.client_key))
    }
    assert {"hoard_rpcs", "hoard_repository_objects"} <= families
    for cert, key in [(None, None), (pki.other_client_cert, pki.other_client_key)]:
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            scrape(cert, key)
    with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
        urllib.request.urlopen(url.replace("https:", "http:"), timeout=10).read()
    assert "hoard_rpcs_total" in scrape(pki.client_cert, pki.client_key)  # still served
    silent.close()
    assert d.running


def test_metrics_tls_needs_the_daemons_certificate(tmp_path: Path) -> None:
    serve = [sys.executable, "-m", "hoard_server", "serve", "--data-dir", str(tmp_path / "d")]
    done = subprocess.run(
        [*serve, "--metrics-listen", "127.0.0.1:0", "--metrics-tls"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "metrics_tls" in done.stderr, done.stderr


def test_renewed_certificate_files_are_served_without_a_restart(
    daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    live = tmp_path / "live"
    live.mkdir()
    first = write_pki(tmp_path / "first")
    cert, key = str(live / "cert.pem"), str(live / "key.pem")
    Path(cert).write_bytes(Path(first.server_cert).read_bytes())
    Path(key).write_bytes(Path(first.server_key).read_bytes())
    daemon = daemon_factory(None, "--tls-cert", cert, "--tls-key", key, tls=ClientTLS(first.ca))
    with daemon.connect() as client:
        assert not _ask(client)
    renewed = write_pki(tmp_path / "renewed")
    Path(key).write_bytes(Path(renewed.server_key).read_bytes())  # half-way: key is new,
    with daemon.connect(tls_ca=first.ca) as client:  # the certificate old: not taken
        assert not _ask(client)
    Path(cert).write_bytes(Path(renewed.server_cert).read_bytes())
    with daemon.connect(tls_ca=renewed.ca) as client:
        assert not _ask(client)
    with daemon.connect(tls_ca=first.ca, retries=0) as client, pytest.raises(errors.TLSError):
        _ask(client)
    assert any("not usable, keeping the old ones" in line for line in daemon.log)


# -- tokens with TLS ----------------------------------------------------------------------------


def test_a_token_over_tls(daemon_factory: DaemonFactory, pki: Pki, tmp_path: Path) -> None:
    tokens = str(tmp_path / "tokens.toml")
    secret = add_token(tokens, "alice", {"default": Role.WRITE})
    reader = add_token(tokens, "bob", {"default": Role.READ})
    daemon = daemon_factory(None, *pki.serve_args(), "--tokens-file", tokens, tls=ClientTLS(pki.ca))
    with daemon.connect(token=secret) as client:
        _round_trip(client)
    with daemon.connect() as client, pytest.raises(errors.AuthenticationError) as missing:
        _ask(client)
    assert daemon.target in str(missing.value) and "HOARD_TOKEN" in str(missing.value)
    unknown = "hoard_" + "x" * 43
    with (
        daemon.connect(token=unknown) as client,
        pytest.raises(errors.AuthenticationError, match="does not know the token"),
    ):
        _ask(client)
    with (
        daemon.connect(token=reader) as client,
        pytest.raises(errors.AccessDeniedError) as denied,
    ):
        client.repository("default").put_object(b"not for bob")
    for words in ("'bob'", "'default'", "write role", daemon.target):
        assert words in str(denied.value)


# -- keepalive and restarts ---------------------------------------------------------------------


def test_the_daemon_welcomes_the_sdks_keepalive_pings() -> None:
    server = dict(grpc_options(Config()))
    client = dict(channel_options(retries=5))
    assert server["grpc.keepalive_permit_without_calls"] == 1
    assert server["grpc.http2.min_ping_interval_without_data_ms"] == MIN_CLIENT_PING_INTERVAL_MS
    # the SDK pings idle connections, and no more often than the daemon accepts
    assert client["grpc.keepalive_permit_without_calls"] == 1
    assert client["grpc.http2.max_pings_without_data"] == 0
    assert client["grpc.keepalive_time_ms"] == KEEPALIVE_TIME_MS >= MIN_CLIENT_PING_INTERVAL_MS


def test_a_client_keeps_working_across_a_daemon_restart(
    daemon_factory: DaemonFactory, pki: Pki
) -> None:
    """A client calling ``has`` in a loop while its daemon stops and starts again (on the same
    port) sees every call succeed: one in flight while no daemon ran waited for the new one."""
    daemon = daemon_factory(None, *pki.serve_args(), tls=ClientTLS(pki.ca))
    done = threading.Event()
    calling: list[float] = []  # when the call in progress started
    outcomes: list[tuple[float, float, object]] = []  # (started, ended, result)
    with daemon.connect(timeout=60) as client:
        repo = client.repository("default")
        key = repo.put_object(b"still here")

        def keep_calling() -> None:
            while not done.is_set():
                started = time.monotonic()
                calling[:] = [started]
                try:
                    result: object = repo.has_object(key)
                except Exception as exc:  # recorded, and asserted below
                    result = exc
                calling.clear()
                outcomes.append((started, time.monotonic(), result))

        caller = threading.Thread(target=keep_calling, daemon=True)
        caller.start()
        daemon.stop()
        while not calling:  # between two calls: let the next one start without a daemon
            time.sleep(0.01)
        gap = time.monotonic()  # no daemon runs now, and a call is in flight
        daemon.start()
        after = len(outcomes)
        while len(outcomes) < after + 5 and caller.is_alive():
            time.sleep(0.05)
        done.set()
        caller.join(60)
    assert all(result is True for _, _, result in outcomes), outcomes
    assert any(started < gap < ended for started, ended, _ in outcomes), "no call spanned the gap"
