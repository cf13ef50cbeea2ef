"""Objects benchmark (issue 2): hoard against disk-objectstore 1.5, side by side, in one run.

    python -m tests.benchmarks.bench_objects [--objects 100000] [--large-mib 1024]
        [--work-dir ./bench-work] [--markdown docs/benchmarks.md] [--quick] [--peer-only]

hoard is the real daemon, started as a subprocess and driven through the SDK; the peer is
disk-objectstore (``pip install -e '.[bench]'``) in-process, on the same data and the same
disk. Every figure is taken once: absolute numbers drift 20-40% between runs on shared
machines, the ratios are what matter. This module is never part of the pytest suite.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import importlib.metadata
import os
import platform
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from tests.harness.daemon import DaemonProcess, DaemonStartError

KiB = 1 << 10
MiB = 1 << 20
SEED = 20261101
SECTION = "## Objects (issue 2)"
RAW_SERVICE = "bench.RawBytes"
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", 64 * MiB),
    ("grpc.max_receive_message_length", 64 * MiB),
]


# -- data ---------------------------------------------------------------------------------------


class TextGenerator:
    """Deterministic text like simulation output, logs and input files.

    Lines are a phrase of 1-6 pseudo-words (drawn Zipf-like from a vocabulary of a few
    thousand), sometimes ``=``, then 0-3 numbers (integers, fixed and scientific floats),
    built from pools of phrases and numbers so that a line costs a handful of numpy
    operations. zstd level 3 compresses a long stream of it ~3.3x, single 1 KiB pieces ~1.6x
    (~2.7x with a trained dictionary); zlib level 1 ~2.4x and ~1.7x.
    """

    def __init__(
        self, seed: int = SEED, vocabulary: int = 3000, phrases: int = 40_000, numbers: int = 60_000
    ) -> None:
        rng = np.random.default_rng(seed)
        onsets = [*"bcdfghklmnprstvz", "ch", "st", "tr", "pl", "gr", "th"]
        nuclei = [*"aeiou", "io", "ea", "ou"]
        codas = ["", "", "", "n", "r", "s", "t", "l", "x", "m"]

        def syllable() -> str:
            return (
                onsets[rng.integers(len(onsets))]
                + nuclei[rng.integers(len(nuclei))]
                + codas[rng.integers(len(codas))]
            )

        found: set[str] = set()
        while len(found) < vocabulary:
            word = "".join(syllable() for _ in range(int(rng.integers(1, 4))))
            if rng.random() < 0.15:
                word += "_" + syllable()
            found.add(word)
        words = sorted(found)
        rng.shuffle(words)
        word_p = 1.0 / (np.arange(1, len(words) + 1) + 3.0)
        word_cdf = np.cumsum(word_p / word_p.sum())
        lengths = rng.integers(1, 7, size=phrases)
        picks = np.searchsorted(word_cdf, rng.random(int(lengths.sum())))
        picks = np.minimum(picks, len(words) - 1)
        pieces: list[bytes] = []
        at = 0
        for k in lengths.tolist():
            pieces.append(" ".join(words[i] for i in picks[at : at + k].tolist()).encode() + b" ")
            at += k
        self.number0 = len(pieces)
        self.numbers = numbers
        for _ in range(numbers):
            r = rng.random()
            if r < 0.35:
                text = str(int(rng.integers(0, 100_000)))
            elif r < 0.75:
                text = f"{rng.normal(0, 50):.{int(rng.integers(2, 7))}f}"
            else:
                sign = 1 if rng.random() < 0.7 else -1
                text = f"{sign * rng.lognormal(0, 4):.{int(rng.integers(3, 7))}e}"
            pieces.append(text.encode() + b" ")
        self.EQ = len(pieces)
        pieces.append(b"= ")
        self.NL = len(pieces)
        pieces.append(b"\n")
        self.EMPTY = len(pieces)
        pieces.append(b"")
        self.tok_len = np.array([len(p) for p in pieces], dtype=np.int64)
        self.tok_start = np.concatenate([[0], np.cumsum(self.tok_len)[:-1]]).astype(np.int64)
        self.tok_buf = np.frombuffer(b"".join(pieces), dtype=np.uint8)
        phrase_p = 1.0 / (np.arange(1, phrases + 1) + 20.0)
        counts = np.floor(phrase_p / phrase_p.sum() * (1 << 18)).astype(np.int64)
        counts[0] += (1 << 18) - counts.sum()
        self.phrase_table = np.repeat(np.arange(phrases), counts)
        self.rng = np.random.default_rng(seed + 1)

    def lines(self, n: int) -> bytes:
        """``n`` lines of text (about 51 bytes each)."""
        rng = self.rng
        slots = np.empty((n, 6), dtype=np.int64)
        slots[:, 0] = self.phrase_table[rng.integers(0, len(self.phrase_table), size=n)]
        r = rng.integers(0, 8, size=n)
        count = np.minimum(r, 3)
        slots[:, 1] = np.where((count > 0) & (r % 2 == 1), self.EQ, self.EMPTY)
        nums = self.number0 + rng.integers(0, self.numbers, size=(n, 3))
        nums[np.arange(3)[None, :] >= count[:, None]] = self.EMPTY
        slots[:, 2:5] = nums
        slots[:, 5] = self.NL
        ids = slots.ravel()
        lens = self.tok_len[ids]
        ends = np.cumsum(lens)
        idx = np.repeat(self.tok_start[ids] - (ends - lens), lens)
        idx += np.arange(int(ends[-1]))
        return self.tok_buf[idx].tobytes()

    def blocks(self) -> Iterator[bytes]:
        """An endless stream of ~1 MiB blocks."""
        while True:
            yield self.lines(20_000)


def make_objects(n: int, seed: int = SEED) -> list[bytes]:
    """``n`` distinct text objects of 800-1300 bytes, cut from one generated stream."""
    sizes = np.random.default_rng(seed + 2).integers(800, 1301, size=n).tolist()
    blocks = TextGenerator(seed).blocks()
    buf = b""
    at = 0
    objects: list[bytes] = []
    for size in sizes:
        if len(buf) - at < size:
            buf = buf[at:] + next(blocks)
            at = 0
        objects.append(buf[at : at + size])
        at += size
    if len(set(objects)) != n:
        raise RuntimeError("the generator produced duplicate objects")
    return objects


def write_large_file(path: str, size: int, seed: int = SEED) -> str:
    """Write ``size`` bytes of generated text to ``path`` block by block; return its SHA-256."""
    digest = hashlib.sha256()
    left = size
    with open(path, "wb") as fh:
        for block in TextGenerator(seed + 7).blocks():
            piece = block[:left]
            fh.write(piece)
            digest.update(piece)
            left -= len(piece)
            if not left:
                break
        fh.flush()
        os.fsync(fh.fileno())
    return digest.hexdigest()


# -- measuring helpers ----------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    hoard: str
    peer: str
    ratio: str
    target: str
    met: bool | None  # None: no target, or not measured


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def fmt_rate(count: float, seconds: float, unit: str) -> str:
    rate = count / seconds
    if rate >= 1e6:
        return f"{rate / 1e6:.2f} M {unit}/s"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f} k {unit}/s"
    return f"{rate:.0f} {unit}/s"


def fmt_bytes(n: float) -> str:
    if n >= MiB:
        return f"{n / MiB:.1f} MiB"
    return f"{n / KiB:.1f} KiB"


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3f} ms" if ms < 1 else f"{ms:.2f} ms" if ms < 100 else f"{ms:.0f} ms"


def speedup_row(
    scenario: str,
    hoard_s: float | None,
    peer_s: float,
    work: float,
    unit: str,
    target: float,
    hoard_note: str = "",
    peer_note: str = "",
) -> Row:
    """A row comparing two durations for the same ``work``; ratio = how many times faster."""

    def cell(seconds: float, note: str) -> str:
        if unit == "MiB":
            text = f"{work / MiB / seconds:.0f} MiB/s ({seconds:.2f} s)"
        else:
            text = f"{fmt_rate(work, seconds, unit)} ({seconds:.2f} s)"
        return f"{text}{note}"

    peer_cell = cell(peer_s, peer_note)
    if hoard_s is None:
        return Row(scenario, "-", peer_cell, "-", f">= {target:g}x", None)
    ratio = peer_s / hoard_s
    return Row(
        scenario,
        cell(hoard_s, hoard_note),
        peer_cell,
        f"{ratio:.2f}x",
        f">= {target:g}x",
        ratio >= target,
    )


def disk_usage(path: str) -> tuple[int, int]:
    """(allocated bytes = sum of st_blocks * 512, apparent bytes = sum of st_size) under path."""
    allocated = apparent = 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            st = os.lstat(os.path.join(root, name))
            allocated += st.st_blocks * 512
            if name in files:
                apparent += st.st_size
    return allocated, apparent


def disk_usage_by_entry(path: str) -> dict[str, tuple[int, int]]:
    """disk_usage of each top-level entry of ``path`` (a diagnosis of where the bytes go)."""
    out = {}
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isdir(full):
            out[name + "/"] = disk_usage(full)
        else:
            st = os.lstat(full)
            out[name] = (st.st_blocks * 512, st.st_size)
    return out


def filesystem_of(path: str) -> tuple[str, str]:
    """(mount point, file system type) holding ``path``, from /proc/mounts."""
    path = os.path.realpath(path)
    best = ("/", "unknown")
    with contextlib.suppress(OSError), open("/proc/mounts") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) < 3:
                continue
            mount = parts[1].replace("\\040", " ")
            inside = path == mount or path.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best[0]):
                best = (mount, parts[2])
    return best


def percentiles(samples: list[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.array(samples), [50, 99])
    return float(p50), float(p99)


# -- the hoard daemon -----------------------------------------------------------------------------


class HoardDaemon(DaemonProcess):
    """The test harness's daemon with its log also in a file (kept with the run's files)."""

    def __init__(self, data_dir: str, log_path: str, env: dict[str, str] | None = None) -> None:
        super().__init__(data_dir, env=env, log_path=log_path)

    def start(self, timeout: float = 60.0, attempts: int = 3) -> HoardDaemon:
        super().start(timeout, attempts)
        return self

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM and wait; None (with a warning) if it had to be killed."""
        try:
            return super().stop(timeout)
        except DaemonStartError as exc:
            print(f"warning: {exc}")
            return None


# -- raw gRPC loopback baseline -------------------------------------------------------------------


def _raw_up(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    total = 0
    for message in requests:
        total += len(message)
    return total.to_bytes(8, "big")


def _raw_down(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    total = int.from_bytes(request, "big")
    chunk = bytes(MiB)
    sent = 0
    while sent < total:
        message = chunk if total - sent >= MiB else chunk[: total - sent]
        sent += len(message)
        yield message


def serve_raw_grpc() -> int:
    """The baseline server (run in its own process, as hoard's daemon is): bytes passthrough."""
    from concurrent.futures import ThreadPoolExecutor

    handler = grpc.method_handlers_generic_handler(
        RAW_SERVICE,
        {
            "Up": grpc.stream_unary_rpc_method_handler(_raw_up),
            "Down": grpc.unary_stream_rpc_method_handler(_raw_down),
        },
    )
    server = grpc.server(ThreadPoolExecutor(max_workers=4), options=GRPC_OPTIONS)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    sys.stdin.read()  # run until the parent closes our stdin
    server.stop(0).wait()
    return 0


def raw_grpc_transfer(path: str, size: int) -> tuple[float, float, list[float]]:
    """Seconds to stream ``path`` up in 1 MiB messages and ``size`` bytes down, and the
    latencies of 1,000 sequential 4 KiB reads (a unary-stream call each, as a ranged read)."""
    proc = subprocess.Popen(  # as a module, so that it imports what this one does
        [sys.executable, "-m", "tests.benchmarks.bench_objects", "--raw-grpc-server"],
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            up = channel.stream_unary(f"/{RAW_SERVICE}/Up")
            down = channel.unary_stream(f"/{RAW_SERVICE}/Down")

            def chunks() -> Iterator[bytes]:
                with open(path, "rb") as fh:
                    while chunk := fh.read(MiB):
                        yield chunk

            up_s, reply = timed(lambda: up(chunks()))
            if int.from_bytes(reply, "big") != size:
                raise RuntimeError("raw gRPC upload lost bytes")

            def pull() -> int:
                return sum(len(m) for m in down(size.to_bytes(8, "big")))

            down_s, got = timed(pull)
            if got != size:
                raise RuntimeError("raw gRPC download lost bytes")
            small = (4 * KiB).to_bytes(8, "big")
            latencies = []
            for _ in range(1000):
                t0 = time.perf_counter()
                got = sum(len(m) for m in down(small))
                latencies.append(time.perf_counter() - t0)
        return up_s, down_s, latencies
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(30)


# -- scenarios ------------------------------------------------------------------------------------


@dataclass
class Settings:
    objects: int
    large_mib: int
    loose_subset: int
    seek_budget: float
    peer_only: bool
    seed: int


def read_all(fh: Any) -> int:
    total = 0
    while chunk := fh.read(MiB):
        total += len(chunk)
    return total


def run(cfg: Settings, work: str, log: Callable[[str], None]) -> tuple[list[Row], dict[str, Any]]:
    from disk_objectstore import Container

    rows: list[Row] = []
    facts: dict[str, Any] = {}
    n = cfg.objects

    log(f"generating {n:,} text objects of 800-1300 bytes ...")
    gen_s, objects = timed(lambda: make_objects(n, cfg.seed))
    raw_bytes = sum(map(len, objects))
    log(f"  {fmt_bytes(raw_bytes)} in {gen_s:.1f} s")
    large_size = cfg.large_mib * MiB
    large_path = os.path.join(work, "large.txt")
    log(f"writing the {cfg.large_mib} MiB text file ...")
    gen_s, large_key = timed(lambda: write_large_file(large_path, large_size, cfg.seed))
    log(f"  done in {gen_s:.1f} s (sha256 {large_key[:12]}...)")

    daemon = None
    client = repo = large_repo = None
    if not cfg.peer_only:
        import hoard

        daemon = HoardDaemon(os.path.join(work, "hoard-data"), os.path.join(work, "hoard.log"))
        log(f"starting the hoard daemon on {daemon.target} ...")
        daemon.start()
        client = hoard.connect(daemon.target, timeout=60)
        repo = client.repository("bench")
        repo.initialise()
        large_repo = client.repository("bench-large")
        large_repo.initialise()
    try:
        # 1. batched put of the small objects -------------------------------------------------
        hoard_put_s = None
        hoard_keys: list[str] = []
        if repo is not None:
            log("1. hoard put_objects ...")
            hoard_put_s, hoard_keys = timed(lambda: repo.put_objects(objects))
            if len(hoard_keys) != n or len(set(hoard_keys)) != n:
                raise RuntimeError(f"hoard returned {len(set(hoard_keys))} distinct keys for {n}")
        log("1. disk-objectstore add_objects_to_pack(compress=True) ...")
        packed = Container(os.path.join(work, "dos-packed"))
        packed.init_container()
        peer_put_s, peer_keys = timed(lambda: packed.add_objects_to_pack(objects, compress=True))
        if hoard_keys and hoard_keys != peer_keys:
            raise RuntimeError("hoard and disk-objectstore disagree on the keys")
        rows.append(
            speedup_row(
                "1. put small objects, packed+compressed", hoard_put_s, peer_put_s, n, "obj", 2
            )
        )
        subset = min(cfg.loose_subset, n)
        log(f"1. disk-objectstore add_object one by one (loose), {subset:,} objects ...")
        loose = Container(os.path.join(work, "dos-loose"))
        loose.init_container()

        def loose_writes() -> None:
            for content in objects[:subset]:
                loose.add_object(content)

        loose_s, _ = timed(loose_writes)
        loose.close()
        loose_extrapolated = loose_s * n / subset
        note = f", {subset:,} subset, extrapolated" if subset < n else ""
        rows.append(
            speedup_row(
                "1. put small objects vs loose add_object",
                hoard_put_s,
                loose_extrapolated,
                n,
                "obj",
                20,
                peer_note=note,
            )
        )

        # 2. bulk read --------------------------------------------------------------------------
        hoard_read_s = None
        if repo is not None:
            log("2. hoard iter_object_streams ...")

            def hoard_bulk() -> int:
                total = 0
                for _key, fh in repo.iter_object_streams(hoard_keys):
                    total += len(fh.read())
                return total

            hoard_read_s, got = timed(hoard_bulk)
            if got != raw_bytes:
                raise RuntimeError(f"hoard bulk read returned {got} bytes, expected {raw_bytes}")
        log("2. disk-objectstore get_objects_stream_and_meta ...")

        def peer_bulk() -> int:
            total = 0
            with packed.get_objects_stream_and_meta(peer_keys) as triplets:
                for _key, stream, _meta in triplets:
                    total += len(stream.read())
            return total

        peer_read_s, got = timed(peer_bulk)
        if got != raw_bytes:
            raise RuntimeError(f"peer bulk read returned {got} bytes, expected {raw_bytes}")
        rows.append(
            speedup_row("2. bulk read all small objects", hoard_read_s, peer_read_s, n, "obj", 1)
        )

        # 3. has, half missing ------------------------------------------------------------------
        rnd = random.Random(cfg.seed + 3)
        half = n // 2
        probe = rnd.sample(peer_keys, half) + [rnd.randbytes(32).hex() for _ in range(n - half)]
        rnd.shuffle(probe)
        hoard_has_s = None
        if repo is not None:
            log("3. hoard has_objects ...")
            hoard_has_s, flags = timed(lambda: repo.has_objects(probe))
            if sum(flags) != half or len(flags) != n:
                raise RuntimeError(f"hoard has_objects found {sum(flags)} of {half}")
        log("3. disk-objectstore has_objects ...")
        peer_has_s, flags = timed(lambda: packed.has_objects(probe))
        if sum(flags) != half:
            raise RuntimeError(f"peer has_objects found {sum(flags)} of {half}")
        rows.append(
            speedup_row("3. has, half of the keys missing", hoard_has_s, peer_has_s, n, "keys", 1)
        )

        # 6. bytes on disk (measured now, before anything else touches these stores) ----------
        # Closing the container checkpoints SQLite's write-ahead log into packs.idx and removes
        # it; measured open, the log would be counted twice.
        packed.close()
        peer_alloc, peer_apparent = disk_usage(packed.get_folder())
        facts["peer_breakdown"] = disk_usage_by_entry(packed.get_folder())
        if repo is not None and daemon is not None:
            info = repo.get_info()
            hoard_alloc, hoard_apparent = disk_usage(
                os.path.join(daemon.data_dir, "repositories", "bench")
            )
            facts["hoard_breakdown"] = disk_usage_by_entry(
                os.path.join(daemon.data_dir, "repositories", "bench")
            )
            facts["hoard_info"] = {
                k: info.get(k) for k in ("objects", "raw_bytes", "stored_bytes", "on_disk_bytes")
            }
        else:
            info = {}
            hoard_alloc = hoard_apparent = None

        def size_row(label: str, hoard_b: int | None, peer_b: int) -> Row:
            peer_cell = f"{fmt_bytes(peer_b)} ({peer_b / raw_bytes:.0%} of raw)"
            if hoard_b is None:
                return Row(label, "-", peer_cell, "-", "<= 1.00", None)
            return Row(
                label,
                f"{fmt_bytes(hoard_b)} ({hoard_b / raw_bytes:.0%} of raw)",
                peer_cell,
                f"{hoard_b / peer_b:.2f}",
                "<= 1.00",
                hoard_b <= peer_b,
            )

        rows.append(
            Row(
                f"6. raw size of the {n:,} objects",
                fmt_bytes(raw_bytes),
                fmt_bytes(raw_bytes),
                "",
                "",
                None,
            )
        )
        rows.append(size_row("6. on disk, allocated (st_blocks*512)", hoard_alloc, peer_alloc))
        rows.append(size_row("6. on disk, apparent (st_size)", hoard_apparent, peer_apparent))
        if info:
            on_disk = int(info["on_disk_bytes"])
            rows.append(
                Row(
                    "6. hoard get_info() on_disk_bytes",
                    f"{fmt_bytes(on_disk)} ({on_disk / raw_bytes:.0%} of raw)",
                    "",
                    "",
                    "",
                    None,
                )
            )

        # 4. one large object, streamed in and out ------------------------------------------------
        hoard_in_s = hoard_out_s = hoard_chunks_s = None
        if large_repo is not None:
            log(f"4. hoard put_object_from_file ({cfg.large_mib} MiB) ...")
            hoard_in_s, key = timed(lambda: large_repo.put_object_from_file(large_path))
            if key != large_key:
                raise RuntimeError(f"hoard stored the large object as {key}, not {large_key}")
            log("4. hoard repo.open + 1 MiB reads ...")

            def hoard_open_read() -> int:
                with large_repo.open(large_key) as fh:
                    return read_all(fh)

            hoard_out_s, got = timed(hoard_open_read)
            if got != large_size:
                raise RuntimeError(f"hoard read back {got} bytes of {large_size}")
            iter_name = next(
                (name for name in ("iter_read", "iter_chunks") if hasattr(large_repo, name)), None
            )
            if iter_name:
                log(f"4. hoard {iter_name} ...")
                streamer = getattr(large_repo, iter_name)
                hoard_chunks_s, got = timed(lambda: sum(len(c) for c in streamer(large_key)))
                if got != large_size:
                    raise RuntimeError(f"hoard {iter_name} returned {got} bytes of {large_size}")
        log("4. disk-objectstore add_streamed_object_to_pack(compress=True) ...")
        big = Container(os.path.join(work, "dos-large"))
        big.init_container()

        def peer_stream_in() -> str:
            with open(large_path, "rb") as fh:
                return big.add_streamed_object_to_pack(fh, compress=True)

        peer_in_s, key = timed(peer_stream_in)
        if key != large_key:
            raise RuntimeError(f"peer stored the large object as {key}, not {large_key}")
        log("4. disk-objectstore get_object_stream + 1 MiB reads ...")

        def peer_stream_out() -> int:
            with big.get_object_stream(large_key) as fh:
                return read_all(fh)

        peer_out_s, got = timed(peer_stream_out)
        if got != large_size:
            raise RuntimeError(f"peer read back {got} bytes of {large_size}")
        mib = f"{cfg.large_mib} MiB"
        rows.append(
            speedup_row(
                f"4. stream one {mib} object in", hoard_in_s, peer_in_s, large_size, "MiB", 3
            )
        )
        rows.append(
            speedup_row(
                "4. stream it out (open + 1 MiB reads)",
                hoard_out_s,
                peer_out_s,
                large_size,
                "MiB",
                3,
            )
        )
        if hoard_chunks_s is not None:
            rows.append(
                speedup_row(
                    f"4. stream it out ({iter_name})",
                    hoard_chunks_s,
                    peer_out_s,
                    large_size,
                    "MiB",
                    3,
                )
            )
        log("4. raw gRPC loopback, 1 MiB messages, up and down ...")
        raw_up_s, raw_down_s, raw_lat = raw_grpc_transfer(large_path, large_size)

        def share_row(label: str, hoard_s: float | None, raw_s: float) -> Row:
            raw_cell = f"raw gRPC {large_size / MiB / raw_s:.0f} MiB/s"
            if hoard_s is None:
                return Row(label, "-", raw_cell, "-", ">= 40% of raw gRPC", None)
            share = raw_s / hoard_s
            return Row(
                label,
                f"{large_size / MiB / hoard_s:.0f} MiB/s",
                raw_cell,
                f"{share:.0%}",
                ">= 40% of raw gRPC",
                share >= 0.4,
            )

        rows.append(share_row("4. stream in vs raw gRPC upload", hoard_in_s, raw_up_s))
        rows.append(share_row("4. stream out vs raw gRPC download", hoard_out_s, raw_down_s))
        if hoard_chunks_s is not None:
            rows.append(
                share_row(
                    f"4. stream out ({iter_name}) vs raw gRPC download", hoard_chunks_s, raw_down_s
                )
            )

        # 5. 4 KiB reads at random offsets of the large object -----------------------------
        offsets = (
            np.random.default_rng(cfg.seed + 5)
            .integers(0, large_size - 4 * KiB, size=1000)
            .tolist()
        )
        hoard_lat: list[float] = []
        if large_repo is not None:
            log("5. hoard repo.open + seek + read(4096) x 1000 ...")
            with large_repo.open(large_key) as fh:
                for off in offsets:
                    t0 = time.perf_counter()
                    fh.seek(off)
                    data = fh.read(4 * KiB)
                    hoard_lat.append(time.perf_counter() - t0)
                    if len(data) != 4 * KiB:
                        raise RuntimeError(f"hoard short read at {off}")
        log(f"5. disk-objectstore get_object_stream + seek + read (budget {cfg.seek_budget:.0f} s)")
        peer_lat: list[float] = []
        with big.get_object_stream(large_key) as fh:
            deadline = time.perf_counter() + cfg.seek_budget
            for off in offsets:
                t0 = time.perf_counter()
                fh.seek(off)
                data = fh.read(4 * KiB)
                peer_lat.append(time.perf_counter() - t0)
                if len(data) != 4 * KiB:
                    raise RuntimeError(f"peer short read at {off}")
                if time.perf_counter() > deadline:
                    break
        log("5. disk-objectstore after seek(0, 2), which writes an uncompressed loose copy ...")
        loose_lat: list[float] = []
        with big.get_object_stream(large_key) as fh:
            materialise_s, _ = timed(lambda: fh.seek(0, 2))
            for off in offsets:
                t0 = time.perf_counter()
                fh.seek(off)
                data = fh.read(4 * KiB)
                loose_lat.append(time.perf_counter() - t0)
        big.close()
        peer_p50, peer_p99 = percentiles(peer_lat)
        loose_p50, loose_p99 = percentiles(loose_lat)
        peer_n = "" if len(peer_lat) == len(offsets) else f", {len(peer_lat)} of 1000 in budget"
        if hoard_lat:
            h50, h99 = percentiles(hoard_lat)
            rows.append(
                Row(
                    "5. random 4 KiB read, p50",
                    fmt_ms(h50),
                    f"{fmt_ms(peer_p50)} (compressed{peer_n})",
                    f"{peer_p50 / h50:.0f}x",
                    "hoard p50 <= 2 ms",
                    h50 <= 0.002,
                )
            )
            rows.append(
                Row(
                    "5. random 4 KiB read, p99",
                    fmt_ms(h99),
                    f"{fmt_ms(peer_p99)} (compressed{peer_n})",
                    f"{peer_p99 / h99:.0f}x",
                    "",
                    None,
                )
            )
        else:
            rows.append(
                Row(
                    "5. random 4 KiB read, p50",
                    "-",
                    f"{fmt_ms(peer_p50)} (compressed{peer_n})",
                    "-",
                    "hoard p50 <= 2 ms",
                    None,
                )
            )
            rows.append(
                Row(
                    "5. random 4 KiB read, p99",
                    "-",
                    f"{fmt_ms(peer_p99)} (compressed{peer_n})",
                    "-",
                    "",
                    None,
                )
            )
        rows.append(
            Row(
                "5. (reference) peer after seek(0, 2): p50 / p99",
                "",
                f"{fmt_ms(loose_p50)} / {fmt_ms(loose_p99)} (the seek wrote a loose copy: "
                f"{materialise_s:.1f} s)",
                "",
                "",
                None,
            )
        )
        raw_p50, raw_p99 = percentiles(raw_lat)
        rows.append(
            Row(
                "5. (reference) raw gRPC 4 KiB read call: p50 / p99",
                "",
                f"{fmt_ms(raw_p50)} / {fmt_ms(raw_p99)} (the floor for one ranged read RPC)",
                "",
                "",
                None,
            )
        )
        facts["raw_bytes"] = raw_bytes
        rows.sort(key=lambda r: int(r.scenario.split(".", 1)[0]))  # stable: run order within
        return rows, facts
    finally:
        if client is not None:
            client.close()
        if daemon is not None:
            code = daemon.stop()
            if code not in (0, None):
                log(f"warning: the hoard daemon exited with {code}:\n{daemon.log_tail()}")


# -- reporting ------------------------------------------------------------------------------------

HEADER = ("scenario", "hoard", "disk-objectstore", "ratio", "target", "met?")


def met_text(met: bool | None) -> str:
    return "" if met is None else "yes" if met else "NO"


def table_text(rows: list[Row]) -> str:
    cells = [HEADER] + [
        (r.scenario, r.hoard, r.peer, r.ratio, r.target, met_text(r.met)) for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def table_markdown(rows: list[Row]) -> str:
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        cells = (r.scenario, r.hoard, r.peer, r.ratio, r.target, met_text(r.met))
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out)


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info(work: str) -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mount, fstype = filesystem_of(work)
    packages = ", ".join(
        f"{p} {package_version(p)}"
        for p in ("hoard", "disk-objectstore", "grpcio", "zstandard", "lmdb")
    )
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "packages": packages,
        "disk": f"{fstype} at {mount}",
    }


def run_header(date: str, command: str, info: dict[str, str]) -> list[str]:
    """The lines every benchmark section opens with: when, how, and on what machine."""
    return [
        f"Run on {date} with `{command}`.",
        "",
        f"Machine: {info['nproc']} cores ({info['cpu']}), Python {info['python']}, "
        f"{info['disk']}; {info['packages']}. 1-minute load average {info['load']}.",
    ]


NOTES = """\
Ratios are hoard over disk-objectstore: how many times faster hoard is (rows 1-5), or hoard's
size over the peer's (row 6: below 1.00 means hoard uses less), or hoard's throughput as a share
of raw gRPC loopback streaming with 1 MiB messages (rows "vs raw gRPC"). Each figure is taken
once; absolute numbers drift 20-40% between runs on shared machines, the ratios are what matter.
hoard runs as its own daemon process and is reached over loopback gRPC through the SDK;
disk-objectstore runs in-process, on the same data and the same disk; reads come from a warm
page cache on both sides. Loose writes are timed on a subset in a fresh container and
extrapolated per object. disk-objectstore's compressed random reads re-decompress from the
start of the object at every backward seek, so they are sampled within a time budget."""


def markdown_section(
    rows: list[Row], info: dict[str, str], command: str, cfg: Settings, raw_bytes: int
) -> str:
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    return "\n".join(
        [
            SECTION,
            "",
            *run_header(date, command, info),
            "",
            f"Data: {cfg.objects:,} distinct text-like objects of 800-1300 bytes "
            f"({fmt_bytes(raw_bytes)} raw) and one {cfg.large_mib} MiB text-like object, "
            "compression on in both stores.",
            "",
            table_markdown(rows),
            "",
            NOTES,
            "",
        ]
    )


def update_markdown(path: str, section: str) -> None:
    """Replace the section (up to the next ``## `` heading) in ``path``, or append it."""
    try:
        with open(path) as fh:
            text = fh.read()
    except FileNotFoundError:
        text = "# Benchmarks\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == SECTION), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        before = "\n".join(lines[:start]).rstrip("\n")
        after = "\n".join(lines[end:])
        new = (before + "\n\n" if before else "") + section + ("\n" + after if after else "")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(new.rstrip("\n") + "\n")


def prepare_run(
    args: argparse.Namespace, argv: list[str], module: str
) -> tuple[str, bool, str, dict[str, str]] | None:
    """Check the peer is installed and the work dir is on a real disk; make this run's
    folder. Returns (run folder, whether the work dir was created, command, machine info),
    or None after printing why not."""
    try:
        import disk_objectstore  # noqa: F401
    except ImportError:
        print("disk-objectstore is missing: pip install -e '.[bench]'", file=sys.stderr)
        return None
    made_root = not os.path.exists(args.work_dir)
    os.makedirs(args.work_dir, exist_ok=True)
    mount, fstype = filesystem_of(args.work_dir)
    if fstype in ("tmpfs", "ramfs") and not args.allow_tmpfs:
        print(
            f"{args.work_dir} is on {fstype} ({mount}): use --work-dir on a real disk",
            file=sys.stderr,
        )
        return None
    work = tempfile.mkdtemp(prefix="run-", dir=args.work_dir)
    command = shlex.join(["python", "-m", module, *argv])
    info = machine_info(work)
    print(f"{command}\nwork dir {work} ({info['disk']})", flush=True)
    return work, made_root, command, info


def finish_run(args: argparse.Namespace, work: str, made_root: bool) -> None:
    """Remove this run's folder (and the work dir if the run made it), unless --keep."""
    if args.keep:
        print(f"kept {work}")
        return
    shutil.rmtree(work, ignore_errors=True)
    if made_root:
        with contextlib.suppress(OSError):
            os.rmdir(args.work_dir)


# -- command line ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.bench_objects",
        description="hoard's objects against disk-objectstore, side by side (issue 2).",
    )
    p.add_argument("--objects", type=int, help="small objects (default 100000; 10000 with --quick)")
    p.add_argument("--large-mib", type=int, help="large object size (default 1024; 128 --quick)")
    p.add_argument(
        "--work-dir",
        default="./bench-work",
        help="where both stores live; must be a real disk, not tmpfs",
    )
    p.add_argument(
        "--markdown",
        metavar="PATH",
        help="write/update the '## Objects (issue 2)' section of this file",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 10k objects, 128 MiB")
    p.add_argument(
        "--peer-only",
        action="store_true",
        help="measure disk-objectstore and raw gRPC only (no hoard daemon)",
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    p.add_argument(
        "--loose-subset",
        type=int,
        default=10_000,
        help="objects written loose one by one (extrapolated; default 10000)",
    )
    p.add_argument(
        "--seek-budget",
        type=float,
        default=20.0,
        help="seconds for disk-objectstore's compressed random reads (default 20)",
    )
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--allow-tmpfs", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--raw-grpc-server", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.raw_grpc_server:
        return serve_raw_grpc()
    cfg = Settings(
        objects=args.objects or (10_000 if args.quick else 100_000),
        large_mib=args.large_mib or (128 if args.quick else 1024),
        loose_subset=args.loose_subset,
        seek_budget=args.seek_budget,
        peer_only=args.peer_only,
        seed=args.seed,
    )
    if cfg.objects < 2 or cfg.large_mib < 1:
        print("need at least 2 objects and 1 MiB", file=sys.stderr)
        return 2
    prepared = prepare_run(args, argv, "tests.benchmarks.bench_objects")
    if prepared is None:
        return 2
    work, made_root, command, info = prepared

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
    print(
        f"machine: {info['nproc']} cores, {info['cpu']}, Python {info['python']}; "
        f"{info['packages']}"
    )
    if "hoard_info" in facts:
        print(f"hoard get_info() of the small-object repository: {facts['hoard_info']}")
    for side in ("hoard", "peer"):
        if f"{side}_breakdown" in facts:
            parts = ", ".join(
                f"{name} {fmt_bytes(a)} ({fmt_bytes(b)} apparent)"
                for name, (a, b) in facts[f"{side}_breakdown"].items()
            )
            print(f"on disk, {side}: {parts}")
    info["load"] = f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    print(f"1-minute load average: {info['load']}")
    print(
        f"total {time.perf_counter() - started:.0f} s. Each figure is taken once; absolute "
        "numbers drift 20-40% between runs, the ratios are what matter."
    )
    if args.markdown:
        update_markdown(
            args.markdown, markdown_section(rows, info, command, cfg, facts["raw_bytes"])
        )
        print(f"updated {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
