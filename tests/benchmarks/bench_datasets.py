"""Datasets benchmark: hoard's datasets face against TVB's tvb-storage, local h5py and HSDS.

    python -m tests.benchmarks.bench_datasets [--samples 20000] [--processes 8] [--bulk-mib 1024]
        [--work-dir ./bench-work] [--markdown docs/benchmarks.md] [--quick] [--peer-only]
        [--no-hsds]

hoard is the real daemon, started as a subprocess and driven through the SDK
(``client.datasets(repo)``, its appender, its h5py-like view, ``follow``, and the ``hoard.tvb``
facade); the peers run on the same data and the same disk in the same run: tvb-storage's
``HDF5StorageManager`` and h5py on local files in this process, HSDS over unix sockets
(``peers/``). Every figure is taken once: absolute numbers drift 20-40% between runs on shared
machines, the ratios are what matter. This module is never part of the pytest suite.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from unittest import mock

import numpy as np

from tests.benchmarks import bench_objects
from tests.benchmarks.bench_objects import (
    SEED,
    HoardDaemon,
    MiB,
    Row,
    filesystem_of,
    finish_run,
    fmt_ms,
    fmt_rate,
    machine_info,
    package_version,
    percentiles,
    run_header,
    timed,
    update_markdown,
)

SECTION = "## Datasets"
REPOSITORY = "default"
DATASET = "data"
CHANNELS = 76  # TVB's 76-region connectivity: one sample is a (1, 76) float64 row
BLOCK_ROWS = 1000  # the bulk append's block
READ_ROWS = 8192  # the full read-back's slice (~4.8 MiB)
PATTERN_BLOCKS = 16  # the bulk data cycles through this many distinct blocks
DEFAULT_CHUNK_ROWS = 1024  # the peers' chunks when hoard's are not known (--peer-only)
ROUNDS = 3  # scenario 1 runs this many times per side, interleaved; the median counts
PACE = 0.002  # seconds between two appends of the live-visibility scenario
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class BulkTarget(Protocol):
    """What each side of the bulk and slice scenarios offers (hoard and every peer)."""

    name: str

    def bulk_write(self, blocks: Iterator[np.ndarray], chunk_rows: int | None) -> int: ...
    def open(self) -> None: ...
    def pieces(self, rows: int) -> Iterator[np.ndarray]: ...
    def read(self, selection: tuple[slice | int, ...]) -> np.ndarray: ...
    def close(self) -> None: ...


# -- data -----------------------------------------------------------------------------------------


def samples(n: int, seed: int) -> np.ndarray:
    """``n`` time steps of ``CHANNELS`` float64 values (a simulation's raw monitor output)."""
    return np.random.default_rng(seed).standard_normal((n, CHANNELS))


class BulkData:
    """``blocks`` blocks of ``BLOCK_ROWS`` rows cycling through ``PATTERN_BLOCKS`` distinct ones,
    so that generating them costs nothing inside a timed loop, with an order-free checksum
    (the wrapping sum of the values' bits) to check a read-back against."""

    def __init__(self, total_bytes: int, seed: int) -> None:
        block_bytes = BLOCK_ROWS * CHANNELS * 8
        self.blocks = max(1, round(total_bytes / block_bytes))
        self.rows = self.blocks * BLOCK_ROWS
        self.nbytes = self.rows * CHANNELS * 8
        base = samples(BLOCK_ROWS * PATTERN_BLOCKS, seed + 11)
        self.pattern = [
            np.ascontiguousarray(base[i * BLOCK_ROWS : (i + 1) * BLOCK_ROWS])
            for i in range(PATTERN_BLOCKS)
        ]
        sums = [checksum(b) for b in self.pattern]
        self.checksum = sum(sums[k % PATTERN_BLOCKS] for k in range(self.blocks)) % (1 << 64)

    def __iter__(self) -> Iterator[np.ndarray]:
        for k in range(self.blocks):
            yield self.pattern[k % PATTERN_BLOCKS]

    def expected(self, selection: tuple[slice, slice]) -> np.ndarray:
        rows, cols = selection
        index = np.arange(self.rows)[rows] % (BLOCK_ROWS * PATTERN_BLOCKS)
        base = np.concatenate(self.pattern)
        return base[index][:, cols]


def checksum(a: np.ndarray) -> int:
    return int(np.ascontiguousarray(a).view(np.uint64).sum(dtype=np.uint64))


# -- hoard's side ---------------------------------------------------------------------------------


class HoardDataset:
    """hoard's bulk side: the SDK's appender to write, its h5py-like view to read."""

    name = "hoard"

    def __init__(self, ds: Any, path: str, dataset: str = DATASET) -> None:
        self.ds = ds
        self.path = path
        self.dataset = dataset
        self._view: Any = None

    def bulk_write(self, blocks: Iterator[np.ndarray], chunk_rows: int | None) -> int:
        """Every block through one appender (hoard chooses its chunks: ``chunk_rows`` is the
        peers' concern); returns once every row is acknowledged, i.e. durable."""
        rows = 0
        with self.ds.appender(self.path, self.dataset, grow_dimension=0) as app:
            for block in blocks:
                app.append(block)
                rows += len(block)
            app.flush()
            if app.acknowledged != rows:
                raise RuntimeError(f"hoard acknowledged {app.acknowledged} of {rows} rows")
        return rows

    def chunk_rows(self) -> int | None:
        chunks = self.ds.open(self.path)[self.dataset].chunks
        return int(chunks[0]) if chunks else None

    def open(self) -> None:
        self._view = self.ds.open(self.path)[self.dataset]

    def read(self, selection: tuple[slice | int, ...]) -> np.ndarray:
        return np.asarray(self._view[selection])

    def pieces(self, rows: int) -> Iterator[np.ndarray]:
        """The whole dataset on one call (``read_data``): one block through shared memory
        when the daemon is on this host and allows it, else the daemon's streamed blocks."""
        for _offset, block, _shape in self.ds.read_data(self.path, self.dataset):
            yield block

    def close(self) -> None:
        self._view = None


def hoard_appender_samples(ds: Any, path: str, data: np.ndarray) -> int:
    """TVB's pattern through the SDK: one ``append`` per (1, CHANNELS) sample, then ``flush``."""
    with ds.appender(path, DATASET, grow_dimension=0) as app:
        for i in range(len(data)):
            app.append(data[i : i + 1])
        app.flush()
        if app.acknowledged != len(data):
            raise RuntimeError(f"hoard acknowledged {app.acknowledged} of {len(data)} rows")
    return len(data)


def hoard_facade_samples(client: Any, path: str, data: np.ndarray) -> int:
    """TVB's pattern through ``hoard.tvb.HDF5StorageManager``, the same calls TVB code makes."""
    from hoard.tvb import HDF5StorageManager

    m = HDF5StorageManager(path, client=client, repository=REPOSITORY)
    for i in range(len(data)):
        m.append_data(data[i : i + 1], DATASET, grow_dimension=0, close_file=False)
    m.close_file()
    return len(data)


# -- worker processes (scenario 2) -----------------------------------------------------------------

WORKER_KINDS = ("tvb", "hoard-appender", "hoard-tvb")
WORKER_SAYS = "@worker "  # marks the worker's own lines among whatever its libraries print


def worker_line(proc: subprocess.Popen[str]) -> str | None:
    """The worker's next line of its own (None once its output ends)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(WORKER_SAYS):
            return line[len(WORKER_SAYS) :].strip()
    return None


def run_worker(kind: str, path: str, n: int, seed: int, target: str | None) -> int:
    """One of the concurrent writers: get ready, say so, wait for "go" on stdin, append ``n``
    samples the way ``kind`` does, print when it started and ended (wall clock, JSON)."""
    data = samples(n, seed)
    client = None
    if kind == "tvb":
        from tests.benchmarks.peers import tvb_storage

        tvb_storage.manager(path)  # import tvb-storage before the clock starts

        def work() -> int:
            return tvb_storage.append_samples(path, data)
    else:
        import hoard

        assert target is not None
        client = hoard.connect(target, timeout=120)
        ds = client.datasets(REPOSITORY)
        if kind == "hoard-appender":

            def work() -> int:
                return hoard_appender_samples(ds, path, data)
        else:

            def work() -> int:
                return hoard_facade_samples(client, path, data)

    print(f"{WORKER_SAYS}ready", flush=True)
    sys.stdin.readline()
    start = time.time()
    rows = work()
    end = time.time()
    print(WORKER_SAYS + json.dumps({"start": start, "end": end, "rows": rows}), flush=True)
    if client is not None:
        client.close()
    return 0


def concurrent_writers(
    kind: str, paths: list[str], n: int, seed: int, target: str | None
) -> tuple[float, int]:
    """``len(paths)`` worker processes appending at once, one file each, started together.
    Returns (seconds from the first start to the last end, rows written in all)."""
    procs = []
    for k, path in enumerate(paths):
        cmd = [
            sys.executable, "-m", "tests.benchmarks.bench_datasets",
            "--worker", kind, "--worker-file", path, "--samples", str(n),
            "--seed", str(seed + 100 + k),
        ]  # fmt: skip
        if target:
            cmd += ["--worker-target", target]
        procs.append(
            subprocess.Popen(
                cmd, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
        )
    try:
        for p in procs:
            if worker_line(p) != "ready":
                raise RuntimeError(f"a {kind} worker failed to start")
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            line = worker_line(p)
            if p.wait(600) != 0 or not line:
                raise RuntimeError(f"a {kind} worker failed (exit {p.returncode})")
            results.append(json.loads(line))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    span = max(r["end"] for r in results) - min(r["start"] for r in results)
    return span, sum(r["rows"] for r in results)


# -- scenarios ------------------------------------------------------------------------------------


@dataclass
class Settings:
    samples: int
    processes: int
    bulk_mib: int
    slices: int
    follows: int
    peer_only: bool
    hsds: bool
    seed: int


def ratio_row(
    scenario: str,
    hoard_s: float | None,
    peer_s: float | None,
    work: float,
    unit: str,
    target: float | None,
    peer_label: str,
    share: bool = False,
) -> Row:
    """hoard against a peer on the same ``work`` (rows, or bytes when unit is "MiB"): the ratio
    is how many times faster hoard is, or (``share``) hoard's throughput as a share of the
    peer's."""

    def cell(seconds: float | None) -> str:
        if seconds is None:
            return "-"
        if unit == "MiB":
            return f"{work / MiB / seconds:.0f} MiB/s ({seconds:.2f} s)"
        return f"{fmt_rate(work, seconds, unit)} ({seconds:.2f} s)"

    peer_cell = f"{peer_label}: {cell(peer_s)}"
    goal = "" if target is None else f">= {target:.0%}" if share else f">= {target:g}x"
    if hoard_s is None or peer_s is None:
        return Row(scenario, cell(hoard_s), peer_cell, "-", goal, None)
    r = peer_s / hoard_s
    text = f"{r:.0%}" if share else f"{r:.2f}x"
    return Row(
        scenario, cell(hoard_s), peer_cell, text, goal, None if target is None else r >= target
    )


def bulk_write_read(
    target: BulkTarget, data: BulkData, chunk_rows: int | None
) -> tuple[float, list[float]]:
    """Seconds to append every block, and to read the whole dataset back the side's own way
    (``pieces``) in each of ROUNDS rounds; only the reads are timed, and what they return is
    checked."""
    write_s, rows = timed(lambda: target.bulk_write(iter(data), chunk_rows))
    if rows != data.rows:
        raise RuntimeError(f"{target.name} wrote {rows} rows of {data.rows}")
    return write_s, read_rounds(target, data)


def read_rounds(target: BulkTarget, data: BulkData) -> list[float]:
    """Seconds of each of ROUNDS full reads (the first after the write, then again: a fresh
    array's pages cost more the first time a process, or a VM, touches that much memory)."""
    times = []
    for _ in range(ROUNDS):
        target.open()
        try:
            times.append(timed_read(target.name, target.pieces(READ_ROWS), data))
        finally:
            target.close()
    return times


def timed_read(name: str, pieces: Iterator[np.ndarray], data: BulkData) -> float:
    """Seconds spent fetching every piece (checking them is not timed)."""
    spent = 0.0
    total = 0
    while True:
        t0 = time.perf_counter()
        piece = next(pieces, None)
        spent += time.perf_counter() - t0
        if piece is None:
            break
        total = (total + checksum(piece)) % (1 << 64)
    if total != data.checksum:
        raise RuntimeError(f"{name}'s read-back differs from what was written")
    return spent


def sliced(
    read: Callable[[tuple[slice, slice]], np.ndarray], rows: int, total: int
) -> Iterator[np.ndarray]:
    """A dataset of ``total`` rows read in slices of ``rows`` rows."""
    for start in range(0, total, rows):
        yield read((slice(start, min(start + rows, total)), slice(None)))


def slice_latencies(
    read: Callable[[tuple[slice, slice]], np.ndarray],
    positions: list[tuple[int, int]],
    data: BulkData,
) -> list[float]:
    """Latency of each 10 x 10 read at ``positions`` (a few checked against the data)."""
    out = []
    for k, (r, c) in enumerate(positions):
        sel = (slice(r, r + 10), slice(c, c + 10))
        t0 = time.perf_counter()
        got = read(sel)
        out.append(time.perf_counter() - t0)
        if k % 97 == 0 and not np.array_equal(got, data.expected(sel)):
            raise RuntimeError(f"a 10 x 10 slice at {(r, c)} came back wrong")
    return out


def follow_latencies(
    target: str, ds: Any, path: str, data: np.ndarray
) -> tuple[list[float], list[float]]:
    """Live visibility: one sample appended and flushed every PACE seconds while a subscriber
    on its own connection follows the dataset. Returns, per sample, (append -> acknowledged)
    and (acknowledged -> received by the subscriber; 0 when it came before the ack)."""
    import hoard

    received: dict[int, float] = {}
    got_all = threading.Event()
    failure: list[BaseException] = []
    follower = hoard.connect(target, timeout=120)

    def follow() -> None:
        row = 0
        try:
            for block in follower.datasets(REPOSITORY).follow(
                path, DATASET, from_row=0, grow_dimension=0
            ):
                now = time.perf_counter()
                for _ in range(len(block)):
                    received[row] = now
                    row += 1
                if row >= len(data):
                    break
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)
        finally:
            got_all.set()

    acked: dict[int, float] = {}
    ack_lat: list[float] = []
    with ds.appender(path, DATASET, grow_dimension=0) as app:
        app.append(data[0:1])
        app.flush()
        acked[0] = time.perf_counter()
        thread = threading.Thread(target=follow, name="follower", daemon=True)
        thread.start()
        while 0 not in received and not got_all.is_set():
            time.sleep(0.001)
        for i in range(1, len(data)):
            t0 = time.perf_counter()
            app.append(data[i : i + 1])
            app.flush()
            acked[i] = time.perf_counter()
            ack_lat.append(acked[i] - t0)
            time.sleep(PACE)
    got_all.wait(60)
    follower.close()
    if failure:
        raise RuntimeError(f"the follower failed: {failure[0]!r}")
    if len(received) < len(data):
        raise RuntimeError(f"the follower received {len(received)} of {len(data)} rows")
    visible = [max(0.0, received[i] - acked[i]) for i in range(1, len(data))]
    return ack_lat, visible


def tvb_lock_probe(path: str) -> str:
    """What a reader in another process gets while a TVB writer holds ``path`` open."""
    code = "import sys, h5py; h5py.File(sys.argv[1], 'r'); print('opened')"
    proc = subprocess.run(
        [sys.executable, "-c", code, path], capture_output=True, text=True, timeout=60
    )
    if proc.returncode == 0:
        return "a reader could open it"
    if "unable to lock file" in proc.stderr:
        return "a reader in another process: unable to lock file"
    return "a reader in another process: " + proc.stderr.strip().splitlines()[-1]


def run(cfg: Settings, work: str, log: Callable[[str], None]) -> tuple[list[Row], dict[str, Any]]:
    from tests.benchmarks.peers import hsds, tvb_storage
    from tests.benchmarks.peers.local_h5py import LocalH5py

    rows: list[Row] = []
    facts: dict[str, Any] = {}
    n = cfg.samples
    data = samples(n, cfg.seed)
    local = os.path.join(work, "local")
    os.makedirs(local, exist_ok=True)

    daemon = client = ds = None
    if not cfg.peer_only:
        import hoard

        daemon = HoardDaemon(os.path.join(work, "hoard-data"), os.path.join(work, "hoard.log"))
        log(f"starting the hoard daemon on {daemon.target} ...")
        daemon.start()
        client = hoard.connect(daemon.target, timeout=120)
        ds = client.datasets(REPOSITORY)
    try:
        # 1. TVB's pattern: one (1, 76) sample per call ---------------------------------------
        # Each side ROUNDS times, interleaved, each round into a fresh file; the median counts
        # (one round takes ~0.1 s on hoard's side: one scheduling hiccup would move it).
        tvb_times: list[float] = []
        app_times: list[float] = []
        facade_times: list[float] = []
        for r in range(ROUNDS):
            log(
                f"1. round {r + 1}/{ROUNDS}: tvb-storage append_data(close_file=False), "
                f"hoard appender, hoard.tvb facade; {n:,} samples each ..."
            )
            path = os.path.join(local, f"tvb_pattern{r}.h5")
            tvb_times.append(timed(lambda path=path: tvb_storage.append_samples(path, data))[0])
            if not np.array_equal(tvb_storage.read(path, (slice(None), slice(None))), data):
                raise RuntimeError("tvb-storage read back other data")
            if ds is None:
                continue
            path = f"tvb/appender{r}.h5"
            app_times.append(timed(lambda path=path: hoard_appender_samples(ds, path, data))[0])
            if not np.array_equal(ds.open(path)[DATASET][:], data):
                raise RuntimeError("hoard's appender file reads back other data")
            path = f"tvb/facade{r}.h5"
            facade_times.append(
                timed(lambda path=path: hoard_facade_samples(client, path, data))[0]
            )
            if not np.array_equal(ds.open(path)[DATASET][:], data):
                raise RuntimeError("hoard's facade file reads back other data")
        tvb_file = os.path.join(local, "tvb_pattern0.h5")
        hoard_file = "tvb/appender0.h5"
        tvb_s = float(np.median(tvb_times))
        app_s = float(np.median(app_times)) if app_times else None
        facade_s = float(np.median(facade_times)) if facade_times else None
        probe = tvb_storage.manager(os.path.join(local, "tvb_locked.h5"))
        probe.append_data(data[0:1], DATASET, grow_dimension=0, close_file=False)  # type: ignore[attr-defined]
        facts["tvb_lock"] = tvb_lock_probe(os.path.join(local, "tvb_locked.h5"))
        probe.close_file()  # type: ignore[attr-defined]
        label = "tvb-storage"
        rows.append(
            ratio_row(
                f"1. {n:,} appends of one sample, SDK appender (median of {ROUNDS})",
                app_s,
                tvb_s,
                n,
                "rows",
                10,
                label,
            )
        )
        rows.append(
            ratio_row(
                f"1. {n:,} appends of one sample, hoard.tvb facade (median of {ROUNDS})",
                facade_s,
                tvb_s,
                n,
                "rows",
                10,
                label,
            )
        )

        # 2. the same in N processes at once, one file each ------------------------------------
        p = cfg.processes
        log(f"2. {p} tvb-storage processes at once ...")
        tvb_span, tvb_rows = concurrent_writers(
            "tvb", [os.path.join(local, f"tvb_proc{k}.h5") for k in range(p)], n, cfg.seed, None
        )
        conc: dict[str, tuple[float, int] | None] = {"hoard-appender": None, "hoard-tvb": None}
        if daemon is not None:
            for kind in conc:
                log(f"2. {p} {kind} processes at once ...")
                conc[kind] = concurrent_writers(
                    kind, [f"procs/{kind}-{k}.h5" for k in range(p)], n, cfg.seed, daemon.target
                )
        for kind, what in (("hoard-appender", "SDK appender"), ("hoard-tvb", "hoard.tvb facade")):
            got = conc[kind]
            rows.append(
                ratio_row(
                    f"2. {p} processes x {n:,} one-sample appends, {what}",
                    got[0] if got else None,
                    tvb_span,
                    tvb_rows,
                    "rows",
                    None,
                    f"tvb-storage, {p} processes",
                )
            )

        # 3. bulk append in 1,000-row blocks and a full read back -------------------------------
        bulk = BulkData(cfg.bulk_mib * MiB, cfg.seed)
        log(
            f"3. bulk data: {bulk.blocks:,} blocks of {BLOCK_ROWS} x {CHANNELS} float64 "
            f"({bulk.nbytes / MiB:.0f} MiB)"
        )
        hoard_bulk = HoardDataset(ds, "bulk/bulk.h5") if ds is not None else None
        hoard_w = hoard_r = None
        chunk_rows = DEFAULT_CHUNK_ROWS
        hoard_sliced = hoard_streamed = None
        if hoard_bulk is not None:
            log("3. hoard appender, then read_data (shared memory, the stream) and view slices ...")
            hoard_w, reads = bulk_write_read(hoard_bulk, bulk, chunk_rows)
            hoard_r = float(np.median(reads))
            facts["hoard_reads"] = reads
            log(f"   hoard read_data: {', '.join(f'{t:.2f} s' for t in reads)}")
            chunk_rows = hoard_bulk.chunk_rows() or chunk_rows
            assert client is not None
            streamed = HoardDataset(
                client.datasets(REPOSITORY, shared_memory=False), hoard_bulk.path
            )
            reads = read_rounds(streamed, bulk)
            hoard_streamed = float(np.median(reads))
            facts["hoard_streamed_reads"] = reads
            log(f"   hoard streamed: {', '.join(f'{t:.2f} s' for t in reads)}")
            hoard_bulk.open()
            try:
                hoard_sliced = timed_read(
                    "hoard", sliced(hoard_bulk.read, READ_ROWS, bulk.rows), bulk
                )
            finally:
                hoard_bulk.close()
        facts["chunk_rows"] = chunk_rows
        h5 = LocalH5py(os.path.join(local, "bulk.h5"))
        log(f"3. local h5py (chunks of {chunk_rows} rows) ...")
        h5_w, reads = bulk_write_read(h5, bulk, chunk_rows)
        h5_r = float(np.median(reads))
        facts["h5py_reads"] = reads
        log(f"   local h5py: {', '.join(f'{t:.3f} s' for t in reads)}")
        size = bulk.nbytes
        rows.append(
            ratio_row(
                f"3. bulk append {size / MiB:.0f} MiB in {BLOCK_ROWS}-row blocks",
                hoard_w,
                h5_w,
                size,
                "MiB",
                0.4,
                "local h5py",
                share=True,
            )
        )
        rows.append(
            ratio_row(
                f"3. full read back (median of {ROUNDS})",
                hoard_r,
                h5_r,
                size,
                "MiB",
                0.4,
                "local h5py",
                share=True,
            )
        )
        if hoard_streamed is not None:
            rows.append(
                Row(
                    f"3. (reference) hoard's full read by the stream (shared memory off, median "
                    f"of {ROUNDS})",
                    f"{size / MiB / hoard_streamed:.0f} MiB/s ({hoard_streamed:.2f} s)",
                    "",
                    f"{h5_r / hoard_streamed:.0%} of local h5py",
                    "",
                    None,
                )
            )
        if hoard_sliced is not None:
            rows.append(
                Row(
                    f"3. (reference) hoard's full read in the peers' {READ_ROWS}-row slices",
                    f"{size / MiB / hoard_sliced:.0f} MiB/s ({hoard_sliced:.2f} s)",
                    "",
                    f"{h5_r / hoard_sliced:.0%} of local h5py",
                    "",
                    None,
                )
            )
        if hoard_w is not None and hoard_streamed is not None:
            log("3. raw gRPC loopback (a passthrough server, 1 MiB messages), the same bytes ...")
            raw_size = os.path.getsize(h5.path)
            raw_up, raw_down, _ = bench_objects.raw_grpc_transfer(h5.path, raw_size)
            up_rate, down_rate = raw_size / raw_up, raw_size / raw_down
            rows.append(
                Row(
                    "3. (reference) raw gRPC loopback streaming: up / down (the stream)",
                    f"{size / hoard_w / up_rate:.0%} / {size / hoard_streamed / down_rate:.0%} "
                    "of it",
                    f"{up_rate / MiB:.0f} / {down_rate / MiB:.0f} MiB/s",
                    "",
                    "",
                    None,
                )
            )
        service = None
        why_not = hsds.available() if cfg.hsds else "not run (--no-hsds)"
        facts["hsds"] = why_not
        if why_not is None:
            log("3. starting HSDS on unix sockets ...")
            service = hsds.HsdsService(os.path.join(work, "hsds-data")).start()
        hs = hsds.HsdsDataset(service, "/bulk.h5") if service is not None else None
        try:
            if hs is not None:
                log("3. HSDS through h5pyd ...")
                hs_w, reads = bulk_write_read(hs, bulk, None)  # HSDS picks its own chunks
                hs_r = float(np.median(reads))
                facts["hsds_chunks"] = hs.chunks()
                rows.append(
                    ratio_row(
                        "3. bulk append (as above)",
                        hoard_w,
                        hs_w,
                        size,
                        "MiB",
                        3,
                        "HSDS over unix sockets",
                    )
                )
                rows.append(
                    ratio_row(
                        f"3. full read back (median of {ROUNDS})",
                        hoard_r,
                        hs_r,
                        size,
                        "MiB",
                        3,
                        "HSDS over unix sockets",
                    )
                )

            # 4. small slices and one channel's trace ------------------------------------------
            rng = np.random.default_rng(cfg.seed + 4)
            positions = list(
                zip(
                    rng.integers(0, bulk.rows - 10, cfg.slices).tolist(),
                    rng.integers(0, CHANNELS - 10, cfg.slices).tolist(),
                    strict=True,
                )
            )
            lat: dict[str, list[float]] = {}
            for target_ in [t for t in (hoard_bulk, h5, hs) if t is not None]:
                log(f"4. {cfg.slices} reads of 10 x 10 slices: {target_.name} ...")
                target_.open()
                try:
                    lat[target_.name] = slice_latencies(target_.read, positions, bulk)
                finally:
                    target_.close()
            log(f"4. {cfg.slices} reads of 10 x 10 slices: tvb-storage get_data ...")
            lat["tvb-storage"] = slice_latencies(
                lambda sel: tvb_storage.read(h5.path, sel), positions, bulk
            )
        finally:
            if service is not None:
                service.stop()
        peer_name = "HSDS (h5pyd)" if "HSDS (h5pyd)" in lat else "local h5py"
        h_lat = lat.get("hoard")
        for q, name in ((0, "p50"), (1, "p99")):
            peer_q = percentiles(lat[peer_name])[q]
            if h_lat is None:
                rows.append(
                    Row(
                        f"4. 10 x 10 slice read, {name}",
                        "-",
                        f"{peer_name}: {fmt_ms(peer_q)}",
                        "-",
                        "hoard p50 <= 1 ms" if q == 0 else "",
                        None,
                    )
                )
                continue
            hq = percentiles(h_lat)[q]
            rows.append(
                Row(
                    f"4. 10 x 10 slice read, {name}",
                    fmt_ms(hq),
                    f"{peer_name}: {fmt_ms(peer_q)}",
                    f"{peer_q / hq:.1f}x",
                    "hoard p50 <= 1 ms" if q == 0 else "",
                    hq <= 0.001 if q == 0 else None,
                )
            )
        others = [k for k in lat if k not in ("hoard", peer_name)]
        rows.append(
            Row(
                "4. (reference) 10 x 10 slice, p50 / p99",
                "",
                "; ".join(
                    f"{k}: {fmt_ms(percentiles(lat[k])[0])} / {fmt_ms(percentiles(lat[k])[1])}"
                    for k in others
                ),
                "",
                "",
                None,
            )
        )

        channels = [3, 17, 38, 59, 75]
        log("4. one channel's whole trace: tvb-storage get_data on its own file ...")
        tvb_trace = []
        for ch in channels:
            t, got = timed(lambda ch=ch: tvb_storage.read(tvb_file, (slice(None), ch)))
            if not np.array_equal(got, data[:, ch]):
                raise RuntimeError("tvb-storage returned another trace")
            tvb_trace.append(t)
        hoard_trace = None
        if ds is not None:
            log("4. one channel's whole trace: hoard view on the appender's file ...")
            view = ds.open(hoard_file)[DATASET]
            hoard_trace = []
            for ch in channels:
                t, got = timed(lambda ch=ch: np.asarray(view[:, ch]))
                if not np.array_equal(got, data[:, ch]):
                    raise RuntimeError("hoard returned another trace")
                hoard_trace.append(t)
        h_med = float(np.median(hoard_trace)) if hoard_trace else None
        t_med = float(np.median(tvb_trace))
        rows.append(
            Row(
                f"4. one channel's trace ({n:,} samples written one per call), median",
                fmt_ms(h_med) if h_med else "-",
                f"tvb-storage on its own file: {fmt_ms(t_med)}",
                f"{t_med / h_med:.1f}x" if h_med else "-",
                ">= 10x",
                t_med / h_med >= 10 if h_med else None,
            )
        )

        # 5. live visibility -------------------------------------------------------------------
        if ds is not None and daemon is not None:
            m = cfg.follows
            log(f"5. {m} samples appended one by one while a subscriber follows ...")
            ack, vis = follow_latencies(daemon.target, ds, "live/follow.h5", data[:m])
            a50, a99 = percentiles(ack)
            v50, v99 = percentiles(vis)
            rows.append(
                Row(
                    "5. append -> acknowledged, one sample, p50 / p99",
                    f"{fmt_ms(a50)} / {fmt_ms(a99)}",
                    "",
                    "",
                    "",
                    None,
                )
            )
            rows.append(
                Row(
                    "5. acknowledged -> a follower has it, p50 / p99",
                    f"{fmt_ms(v50)} / {fmt_ms(v99)}",
                    f"tvb-storage: none ({facts['tvb_lock']})",
                    "",
                    "",
                    None,
                )
            )
        else:
            rows.append(
                Row(
                    "5. acknowledged -> a follower has it",
                    "-",
                    f"tvb-storage: none ({facts['tvb_lock']})",
                    "",
                    "",
                    None,
                )
            )
        return rows, facts
    finally:
        if client is not None:
            client.close()
        if daemon is not None:
            code = daemon.stop()
            if code not in (0, None):
                log(f"warning: the hoard daemon exited with {code}:\n{daemon.log_tail()}")


# -- reporting ------------------------------------------------------------------------------------

HEADER = ("scenario", "hoard", "peer", "ratio", "target", "met?")


def cells(r: Row) -> tuple[str, ...]:
    met = "" if r.met is None else "yes" if r.met else "NO"
    return (r.scenario, r.hoard, r.peer, r.ratio, r.target, met)


def table_text(rows: list[Row]) -> str:
    table = [HEADER] + [cells(r) for r in rows]
    widths = [max(len(c[i]) for c in table) for i in range(len(HEADER))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def table_markdown(rows: list[Row]) -> str:
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells(r)) + " |")
    return "\n".join(out)


NOTES = """\
Ratios: how many times faster hoard is than the peer named in the row, or, against local
h5py in row 3, hoard's throughput as a share of h5py's (target >= 40%). hoard runs as its own
daemon process, reached over loopback gRPC through the SDK, and acknowledges a write only once
the file is flushed and fsynced; tvb-storage and h5py run in the benchmark's process on local
files (h5py's bulk write is flushed and fsynced once at the end; tvb-storage never fsyncs);
HSDS runs as its own processes (one service node, two data nodes) on unix sockets with POSIX
storage on the same disk. Local h5py's bulk dataset has hoard's chunk shape; HSDS lays out its
own (its default). Full reads: hoard reads the whole dataset on one call (`read_data`): the
daemon writes it into /dev/shm segments of 16 MiB the SDK maps (the same-host fast path; a
block is mapped lazily, so its pages are faulted in by the untimed check), with the stream
(shared memory off) as a reference row; the peers read it in slices (HSDS limits a
request's size); a reference row gives hoard in the same slices. Only the reads are timed,
and every read-back is checked against what was written.
Row 1 is the median of three rounds per side, interleaved, each into a fresh file; each full
read is the median of three reads of the same data.
The 10 x 10 slices are read at the same random positions of the bulk dataset by each side
(tvb-storage's get_data opens and closes the file at each call, as TVB's readers do). Every
other figure is taken once; absolute numbers drift 20-40% between runs on shared machines, the
ratios are what matter."""


def markdown_section(
    rows: list[Row], info: dict[str, str], command: str, cfg: Settings, facts: dict[str, Any]
) -> str:
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    hsds_note = "" if facts.get("hsds") is None else f" HSDS: {facts['hsds']}."
    return "\n".join(
        [
            SECTION,
            "",
            *run_header(date, command, info),
            "",
            f"Data: float64 samples of {CHANNELS} channels (TVB's 76-region connectivity); "
            f"{cfg.samples:,} samples per writer; bulk {cfg.bulk_mib} MiB in {BLOCK_ROWS}-row "
            f"blocks (chunks of {facts.get('chunk_rows')} rows for hoard and local h5py, "
            f"{facts.get('hsds_chunks')} for HSDS); {cfg.slices} slices; {cfg.follows} "
            f"followed samples.{hsds_note}",
            "",
            table_markdown(rows),
            "",
            NOTES,
            "",
        ]
    )


# -- command line ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.bench_datasets",
        description="hoard's datasets against tvb-storage, local h5py and HSDS, side by side.",
    )
    p.add_argument(
        "--samples", type=int, help="one-sample appends per writer (20000; 2000 --quick)"
    )
    p.add_argument("--processes", type=int, help="concurrent writer processes (8; 2 --quick)")
    p.add_argument("--bulk-mib", type=int, help="bulk append size (1024; 64 --quick)")
    p.add_argument("--slices", type=int, help="10 x 10 slice reads (1000; 200 --quick)")
    p.add_argument("--follows", type=int, help="samples followed live (1000; 200 --quick)")
    p.add_argument(
        "--work-dir",
        default="./bench-work",
        help="where every side's files live; must be a real disk, not tmpfs",
    )
    p.add_argument(
        "--markdown", metavar="PATH", help=f"write/update the '{SECTION[3:]}' section of this file"
    )
    p.add_argument("--quick", action="store_true", help="smoke run, well under a minute")
    p.add_argument("--peer-only", action="store_true", help="measure the peers only (no daemon)")
    p.add_argument("--no-hsds", action="store_true", help="leave HSDS out")
    p.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--allow-tmpfs", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=WORKER_KINDS, help=argparse.SUPPRESS)
    p.add_argument("--worker-file", help=argparse.SUPPRESS)
    p.add_argument("--worker-target", help=argparse.SUPPRESS)
    return p


def prepare(args: argparse.Namespace, argv: list[str]) -> tuple[str, bool, str, dict[str, str]]:
    """Check tvb-storage is installed and the work dir is on a real disk; make this run's
    folder. Returns (run folder, whether the work dir was created, command, machine info)."""
    try:
        import tvb.storage  # noqa: F401
    except ImportError:
        raise SystemExit("tvb-storage is missing: pip install -e '.[dev,bench]'") from None
    made_root = not os.path.exists(args.work_dir)
    os.makedirs(args.work_dir, exist_ok=True)
    mount, fstype = filesystem_of(args.work_dir)
    if fstype in ("tmpfs", "ramfs") and not args.allow_tmpfs:
        raise SystemExit(f"{args.work_dir} is on {fstype} ({mount}): use --work-dir on a real disk")
    work = tempfile.mkdtemp(prefix="run-", dir=args.work_dir)
    command = shlex.join(["python", "-m", "tests.benchmarks.bench_datasets", *argv])
    info = machine_info(work)
    info["packages"] = ", ".join(
        f"{p} {package_version(p)}"
        for p in ("hoard", "h5py", "tvb-storage", "hsds", "h5pyd", "grpcio", "numpy")
    )
    print(f"{command}\nwork dir {work} ({info['disk']})", flush=True)
    return work, made_root, command, info


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.worker:
        return run_worker(
            args.worker, args.worker_file, args.samples, args.seed, args.worker_target
        )
    q = args.quick
    cfg = Settings(
        samples=args.samples or (2000 if q else 20_000),
        processes=args.processes or (2 if q else 8),
        bulk_mib=args.bulk_mib or (64 if q else 1024),
        slices=args.slices or (200 if q else 1000),
        follows=args.follows or (200 if q else 1000),
        peer_only=args.peer_only,
        hsds=not args.no_hsds,
        seed=args.seed,
    )
    work, made_root, command, info = prepare(args, argv)

    def log(message: str) -> None:
        print(message, flush=True)

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    try:
        rows, facts = run(cfg, work, log)
    finally:
        finish_run(args, work, made_root)
    print()
    print(table_text(rows))
    print()
    info["load"] = f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    print(
        f"machine: {info['nproc']} cores, {info['cpu']}, Python {info['python']}; "
        f"{info['packages']}; load {info['load']}"
    )
    if facts.get("hsds"):
        print(f"HSDS: {facts['hsds']}")
    print(
        f"total {time.perf_counter() - started:.0f} s. Each figure is taken once; absolute "
        "numbers drift 20-40% between runs, the ratios are what matter."
    )
    if args.markdown:
        with mock.patch.object(bench_objects, "SECTION", SECTION):
            update_markdown(args.markdown, markdown_section(rows, info, command, cfg, facts))
        print(f"updated {args.markdown}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
