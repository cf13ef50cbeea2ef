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


def put_and_get(target: str) -> str:
    """Store 3 MiB of random bytes (several frames) and one small object, read both back."""
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
        return f"{len(keys)} objects ({len(large) + len(small)} bytes) round-tripped"


def scrape(url: str) -> str:
    """GET the metrics page and parse it as the Prometheus text format."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    names = [family.name for family in text_string_to_metric_families(text)]
    ours = [name for name in names if name.startswith("hoard_")]
    if not ours:
        raise SystemExit(f"{url} serves {len(names)} metric families, none named hoard_*")
    return f"{len(ours)} hoard_* metric families"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="host:port of the daemon")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for health")
    parser.add_argument("--metrics", metavar="URL", help="scrape this Prometheus endpoint too")
    args = parser.parse_args()

    steps = [
        ("health", lambda: wait_serving(args.target, args.wait)),
        ("put and get", lambda: put_and_get(args.target)),
    ]
    if args.metrics:
        steps.append(("metrics", lambda: scrape(args.metrics)))
    for name, step in steps:
        started = time.monotonic()
        outcome = step()
        print(f"  {name} from the host: {outcome} ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
