"""A bounded load test: 64 clients on every face of one daemon, no errors, memory that
stops growing.

Four worker processes of 16 threads, each thread a client with a connection of its own,
run a mixed workload for ``HOARD_LOAD_SECONDS`` (default 60; the ``slow`` variant 600):
object put/get/has/list and deliberate misses, dataset appends, slices and follows,
metadata pushes, queries and counts, repository info (``load_clients``). Every call must
succeed (a miss must be NOT_FOUND) and every read must match what its client wrote.

The daemon's resident memory is sampled every two seconds. Over the last third of the
run it may grow by no more than the workload can explain (``allowed_growth``).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from harness import DaemonProcess
from load_clients import OBJECT_SIZES, Tally, run_worker

WORKERS = 4
THREADS = 16
CLIENTS = WORKERS * THREADS
SECONDS = float(os.environ.get("HOARD_LOAD_SECONDS", "60"))
SAMPLE_EVERY = 2.0


def mapped_bytes(data_dir: Path) -> int:
    """Bytes allocated to the LMDB files (object indexes, metadata caches): the daemon
    maps them, so every page the workload adds becomes resident memory."""
    return sum(p.stat().st_blocks * 512 for p in data_dir.rglob("*.mdb"))


def allowed_growth(mapped_growth: int) -> int:
    """How much the RSS may grow over the last third without a leak.

    A daemon in a steady state still holds, at any instant, the calls in flight: at most
    one per client, each with its request and its reply, each alive twice (the protobuf
    message and gRPC's buffer of its bytes). The largest message of the workload is an
    object of ``max(OBJECT_SIZES)`` (appends, pages, query answers and follow blocks are
    smaller). On top of that, the LMDB pages the workload added in that third are mapped
    into the daemon. Anything beyond grows with the number of calls: a leak.
    """
    in_flight = CLIENTS * 2 * 2 * max(OBJECT_SIZES)
    return in_flight + mapped_growth


def run_load(tmp_path: Path, seconds: float) -> None:
    data = tmp_path / "data"
    # A daemon sized for its clients: each may hold a stream of every kind at once, with
    # workers to spare (the refusals at the limits are tested in test_stream_limits,
    # test_client_limits and test_hostile_clients). The per-client stream limit keeps its
    # default: each client has a connection of its own, which on loopback is the client.
    daemon = DaemonProcess(
        str(data),
        "--workers",
        str(3 * CLIENTS),  # the read and upload slots below, and room for short calls
        "--max-read-streams",
        str(CLIENTS),  # the default, 3/8 of the workers, was fewer than the clients
        "--max-upload-streams",
        str(CLIENTS),
        "--follow-streams",
        str(CLIENTS),
        "--append-streams",
        str(CLIENTS),
    ).start()
    samples: list[tuple[float, int, int]] = []  # (seconds since start, RSS, mapped bytes)
    try:
        spawn = multiprocessing.get_context("spawn")  # no gRPC state crosses a fork
        with ProcessPoolExecutor(WORKERS, mp_context=spawn) as pool:
            start = time.monotonic()
            futures = [
                pool.submit(run_worker, daemon.target, w, THREADS, seconds) for w in range(WORKERS)
            ]
            while not all(f.done() for f in futures):
                samples.append((time.monotonic() - start, daemon.rss(), mapped_bytes(data)))
                time.sleep(SAMPLE_EVERY)
            tallies: list[Tally] = [f.result() for f in futures]
        assert daemon.running, daemon.log_tail()
    finally:
        daemon.stop()
    log = "".join(daemon.log)
    assert "Traceback" not in log, log[-4000:]

    calls: Counter[str] = Counter()
    for t in tallies:
        calls.update(t.calls)
    errors = [e for t in tallies for e in t.errors]
    error_count = sum(t.error_count for t in tallies)
    misses = sum(t.misses for t in tallies)
    total = sum(calls.values())
    print(
        f"\n{CLIENTS} clients, {seconds:g} s: {total} calls ({total / seconds:.0f}/s), "
        f"{misses} deliberate misses answered NOT_FOUND"
    )
    for face, n in sorted(calls.items()):
        print(f"  {face:18} {n:7}")
    assert error_count == 0, f"{error_count} errors; the first:\n" + "\n".join(errors[:5])
    assert set(calls) == set(tallies[0].calls) and all(n > 0 for n in calls.values())

    last = [s for s in samples if s[0] >= seconds * 2 / 3]
    assert len(last) >= 3, f"too few memory samples in the last third: {samples}"
    grown = max(rss for _, rss, _ in last) - last[0][1]
    allowed = allowed_growth(last[-1][2] - last[0][2])
    print(
        "  RSS MiB: "
        + " ".join(f"{rss >> 20}" for _, rss, _ in samples)
        + f"\n  last third grew {grown / 2**20:.1f} MiB (allowed {allowed / 2**20:.1f} MiB)"
    )
    assert grown <= allowed, (
        f"the daemon's RSS grew {grown >> 20} MiB over the last third of the run, more than "
        f"the {allowed >> 20} MiB the workload explains: samples {samples}"
    )


def test_64_clients_on_every_face(tmp_path):
    run_load(tmp_path, SECONDS)


@pytest.mark.slow
@pytest.mark.timeout(600 + 300)  # the suite's 600 s would end it before its clients do
def test_64_clients_on_every_face_for_ten_minutes(tmp_path):
    run_load(tmp_path, 600)
