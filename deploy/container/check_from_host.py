"""Check a hoard daemon from outside its container, with the host's SDK.

Used by build-and-check.sh. ``secrets SERVER_DIR CLIENT_DIR`` makes what the image's config
expects in /run/secrets/hoard (a tokens file with one write token, a server certificate for
localhost from a throwaway CA) and what a client then needs (the CA, the token).
``check TARGET`` waits until grpc.health.v1 says SERVING, puts an object and reads it back
byte for byte, and, given ``--metrics URL``, scrapes the Prometheus endpoint; with
``--secrets CLIENT_DIR`` it speaks TLS with that token, and checks that a call without a
token is refused. Exit status 0 when every check passed; each prints what it saw.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

import hoard

SERVER_NAME = "localhost"  # the name in the throwaway certificate


def make_secrets(server_dir: Path, client_dir: Path) -> None:
    """tokens.toml, tls.crt and tls.key for the daemon; ca.pem and token for the client."""
    import trustme

    from hoard_server.auth.tokens import Role, add_token

    ca = trustme.CA()
    server = ca.issue_cert(SERVER_NAME, "127.0.0.1")
    server.private_key_pem.write_to_path(str(server_dir / "tls.key"))
    (server_dir / "tls.crt").write_bytes(b"".join(b.bytes() for b in server.cert_chain_pems))
    token = add_token(str(server_dir / "tokens.toml"), "check", {"*": Role.WRITE})
    ca.cert_pem.write_to_path(str(client_dir / "ca.pem"))
    (client_dir / "token").write_text(token)


def channel_to(target: str, secrets: Path | None) -> grpc.Channel:
    if secrets is None:
        return grpc.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials((secrets / "ca.pem").read_bytes())
    options = [("grpc.ssl_target_name_override", SERVER_NAME)]
    return grpc.secure_channel(target, credentials, options=options)


def connect(target: str, secrets: Path | None, *, token: bool = True) -> hoard.Client:
    if secrets is None:
        return hoard.connect(target)
    tls: dict[str, Any] = {"tls_ca": str(secrets / "ca.pem"), "tls_server_name": SERVER_NAME}
    if token:
        tls["token_file"] = str(secrets / "token")
    return hoard.connect(target, **tls)


def wait_serving(target: str, secrets: Path | None, seconds: float) -> str:
    """Poll Health/Check until SERVING; SystemExit naming the last answer after ``seconds``."""
    deadline = time.monotonic() + seconds
    last = "no answer"
    with channel_to(target, secrets) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return "SERVING"
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
            time.sleep(0.5)
    raise SystemExit(f"hoard at {target} is not SERVING after {seconds:.0f} s: {last}")


def put_and_get(target: str, secrets: Path | None) -> int:
    """Store 3 MiB of random bytes (several frames) and one small object, read both back;
    the number of bytes stored."""
    large, small = os.urandom(3 << 20), b"hello from the host"
    with connect(target, secrets) as client:
        repo = client.repository("default")
        keys = [repo.put_object_from_filelike(io.BytesIO(data)) for data in (large, small)]
        for key, data in zip(keys, (large, small), strict=True):
            if key != hashlib.sha256(data).hexdigest():
                raise SystemExit(f"put returned key {key}, not the SHA-256 of the content")
            back = repo.get_object_content(key)
            if back != data:
                raise SystemExit(f"object {key}: read back {len(back)} bytes that differ")
    return len(large) + len(small)


def scrape(url: str, stored: int) -> str:
    """GET the metrics page, parse it as the Prometheus text format, and find at least the
    ``stored`` bytes in what the daemon counts as received."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    ours = [name for name in families if name.startswith("hoard_")]
    received = families.get("hoard_rpc_received_bytes")
    if received is None:
        raise SystemExit(f"{url} has no hoard_rpc_received_bytes among {sorted(ours)}")
    total = sum(s.value for s in received.samples if s.name.endswith("_total"))
    if total < stored:
        raise SystemExit(f"{url}: hoard_rpc_received_bytes is {total:.0f}, below {stored}")
    return f"{len(ours)} hoard_* metric families, {total:.0f} bytes received"


def refused_without_token(target: str, secrets: Path) -> str:
    """A call with TLS but no token must be refused (UNAUTHENTICATED)."""
    with connect(target, secrets, token=False) as client:
        try:
            client.list_repositories()
        except PermissionError as exc:
            return f"refused: {type(exc).__name__}"
    raise SystemExit("a call without a token was answered: the daemon does not check tokens")


def lap(started: float) -> str:
    return f"{time.monotonic() - started:.1f} s"


def check(args: argparse.Namespace) -> None:
    secrets = args.secrets
    started = time.monotonic()
    health = wait_serving(args.target, secrets, args.wait)
    print(f"  health from the host: {health} ({lap(started)})")
    started = time.monotonic()
    stored = put_and_get(args.target, secrets)
    tls = " over TLS with a token" if secrets else ""
    print(f"  put and get from the host{tls}: {stored} bytes round-tripped ({lap(started)})")
    if secrets:
        started = time.monotonic()
        outcome = refused_without_token(args.target, secrets)
        print(f"  a call without a token: {outcome} ({lap(started)})")
    if args.metrics:
        started = time.monotonic()
        print(f"  metrics from the host: {scrape(args.metrics, stored)} ({lap(started)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("secrets", help="make the daemon's and the client's secrets")
    p.add_argument("server_dir", type=Path)
    p.add_argument("client_dir", type=Path)
    p = commands.add_parser("check", help="health, put and get (and metrics) from here")
    p.add_argument("target", help="host:port of the daemon")
    p.add_argument("--wait", type=float, default=120.0, help="seconds to wait for health")
    p.add_argument("--metrics", metavar="URL", help="scrape this Prometheus endpoint too")
    p.add_argument("--secrets", metavar="CLIENT_DIR", type=Path, help="TLS CA and token")
    args = parser.parse_args()
    if args.command == "secrets":
        make_secrets(args.server_dir, args.client_dir)
    else:
        check(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
