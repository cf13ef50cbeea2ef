"""Check a hoard daemon from outside its container, with the host's SDK.

Run by build-and-check.sh once the image's daemon is started: wait until grpc.health.v1
says SERVING, put an object and read it back byte for byte, and, given ``--metrics URL``,
scrape the Prometheus endpoint. Exit status 0 when every check passed; each step prints
what it saw and how long it took.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import time
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

import hoard


def wait_serving(target: str, seconds: float) -> str:
    """Poll Health/Check until SERVING; SystemExit naming the last answer after ``seconds``."""
    deadline = time.monotonic() + seconds
    last = "no answer"
    with grpc.insecure_channel(target) as channel:
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


def put_and_get(target: str) -> int:
    """Store 3 MiB of random bytes (several frames) and one small object, read both back;
    the number of bytes stored."""
    large, small = os.urandom(3 << 20), b"hello from the host"
    with hoard.connect(target) as client:
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


def lap(started: float) -> str:
    return f"{time.monotonic() - started:.1f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="host:port of the daemon")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for health")
    parser.add_argument("--metrics", metavar="URL", help="scrape this Prometheus endpoint too")
    args = parser.parse_args()

    started = time.monotonic()
    print(f"  health from the host: {wait_serving(args.target, args.wait)} ({lap(started)})")
    started = time.monotonic()
    stored = put_and_get(args.target)
    print(f"  put and get from the host: {stored} bytes round-tripped ({lap(started)})")
    if args.metrics:
        started = time.monotonic()
        print(f"  metrics from the host: {scrape(args.metrics, stored)} ({lap(started)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
