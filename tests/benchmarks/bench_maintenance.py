"""Maintenance benchmark (issue 3): reclaiming deleted space, hoard against disk-objectstore 1.5.

    python -m tests.benchmarks.bench_maintenance [--objects 100000] [--work-dir ./bench-work]
        [--markdown docs/benchmarks.md] [--quick]

Both stores get the same data (small text objects and a few large text objects, compression
on, packs of the same target size), then the same half of the keys (every other one) is
deleted and the space is reclaimed: hoard with a live ``maintain`` through the daemon, while a
reader thread keeps reading; disk-objectstore with its offline ``Container.repack()``, which
rewrites every pack and VACUUMs its SQLite index. The store directory's size is sampled every
~20 ms during the operation for the peak extra disk. Every figure is taken once: absolute
numbers drift 20-40% between runs on shared machines, compare the ratios. This module is never
part of the pytest suite.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import inspect
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from tests.benchmarks import bench_objects
from tests.benchmarks.bench_objects import (
    SEED,
    HoardDaemon,
    MiB,
    Row,
    disk_usage,
    disk_usage_by_entry,
    finish_run,
    fmt_bytes,
    fmt_ms,
    fmt_rate,
    make_objects,
    percentiles,
    prepare_run,
    run_header,
    table_markdown,
    table_text,
    timed,
    update_markdown,
    write_large_file,
)

SECTION = "## Maintenance (issue 3)"
DEAD_FRACTION = 1e-9  # compact every pack that holds any dead bytes
SAMPLE_EVERY = 0.020  # seconds between two samples of the store directory's size


# -- measuring helpers ----------------------------------------------------------------------------


class DiskSampler:
    """Samples ``disk_usage(path)`` every ~20 ms in a thread, with the time of each sample."""

    def __init__(self, path: str, every: float = SAMPLE_EVERY) -> None:
        self.path = path
        self.every = every
        self.samples: list[tuple[float, int, int]] = []  # (perf_counter, allocated, apparent)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="disk-sampler", daemon=True)

    def sample(self) -> None:
        for _ in range(5):  # files vanish between listing and lstat while packs are retired
            try:
                allocated, apparent = disk_usage(self.path)
            except FileNotFoundError:
                continue
            self.samples.append((time.perf_counter(), allocated, apparent))
            return

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)

    def __enter__(self) -> DiskSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def peak_since(self, start: float) -> tuple[int, int, int]:
        """(peak allocated, peak apparent, number of samples) of the samples taken since
        ``start`` (perf_counter)."""
        window = [s for s in self.samples if s[0] >= start]
        if not window:
            return 0, 0, 0
        return max(s[1] for s in window), max(s[2] for s in window), len(window)


class Reader:
    """A thread with its own SDK connection that reads random live small objects one at a
    time (``get_object_content``), checks each against its key, and files every latency under
    the current ``phase``."""

    def __init__(self, target: str, repository: str, keys: list[str], seed: int) -> None:
        self.target = target
        self.repository = repository
        self.keys = keys
        self.rnd = random.Random(seed)
        self.phase = "idle"
        self.latencies: dict[str, list[float]] = {}
        self.started: dict[str, list[float]] = {}  # perf_counter at the start of each read
        self.failures: dict[str, list[str]] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reader", daemon=True)

    def _run(self) -> None:
        import hoard

        with hoard.connect(self.target, timeout=60) as client:
            repo = client.repository(self.repository)
            repo.get_object_content(self.keys[0])  # open the channel before timing anything
            self._ready.set()
            while not self._stop.is_set():
                key = self.rnd.choice(self.keys)
                phase = self.phase
                t0 = time.perf_counter()
                try:
                    data = repo.get_object_content(key)
                except Exception as exc:  # a failed read is a finding, not a crash
                    self.failures.setdefault(phase, []).append(f"{key}: {exc!r}")
                    continue
                elapsed = time.perf_counter() - t0
                self.latencies.setdefault(phase, []).append(elapsed)
                self.started.setdefault(phase, []).append(t0)
                if hashlib.sha256(data).hexdigest() != key:
                    self.failures.setdefault(phase, []).append(f"{key}: wrong content")

    def __enter__(self) -> Reader:
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("the reader thread could not read its first object in 60 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(120)


def hoard_maintain(
    client: Any, repo: Any, timeline: list[tuple[float, dict[str, Any]]]
) -> dict[str, Any]:
    """``repo.maintain(dry_run=False, live=True, dead_fraction=1e-9)``; with an SDK whose
    ``maintain`` has no ``dead_fraction`` parameter yet (an older one accepts and ignores
    unknown keyword arguments), the raw Maintain stream with the same request. Every progress
    report goes into ``timeline`` with the time it arrived."""

    def progress(report: dict[str, Any]) -> None:
        timeline.append((time.perf_counter(), report))

    if "dead_fraction" in inspect.signature(repo.maintain).parameters:
        return repo.maintain(
            dry_run=False, live=True, dead_fraction=DEAD_FRACTION, progress=progress
        )
    from hoard.v1 import objects_pb2 as pb

    request = pb.MaintainRequest(repository=repo.name, live=True, dead_fraction=DEAD_FRACTION)
    last: dict[str, Any] = {}
    for message in client.objects_stub.Maintain(request):
        last = {f.name: v for f, v in message.ListFields()}
        progress(last)
    return last


def peer_dead_bytes(container: Any) -> int:
    """Bytes in disk-objectstore's pack files that no index row points at."""
    sizes = container.get_total_size()
    return int(sizes["total_size_packfiles_on_disk"] - sizes["total_size_packed_on_disk"])


def sha256_of_stream(chunks: Iterator[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def file_chunks(fh: Any) -> Iterator[bytes]:
    while chunk := fh.read(MiB):
        yield chunk


# -- the scenario ---------------------------------------------------------------------------------


@dataclass
class Settings:
    objects: int
    large_count: int
    large_mib: int
    pack_mib: int
    idle_window: float
    seed: int


@dataclass
class Side:
    """What one store did; sizes are (allocated, apparent) of the whole store directory."""

    delete_s: float = 0.0
    reclaim_s: float = 0.0
    after_put: tuple[int, int] = (0, 0)
    before: tuple[int, int] = (0, 0)
    after: tuple[int, int] = (0, 0)
    peak: tuple[int, int] = (0, 0)
    samples: int = 0
    dead_before: int = 0
    dead_after: int = 0
    packs_before: int = 0
    packs_after: int = 0
    live_ok: int = 0
    live_total: int = 0
    gone_ok: int = 0
    gone_total: int = 0
    notes: dict[str, Any] = field(default_factory=dict)


def run(cfg: Settings, work: str, log: Callable[[str], None]) -> tuple[Side, Side, dict[str, Any]]:
    from disk_objectstore import Container

    import hoard

    facts: dict[str, Any] = {}
    pack_bytes = cfg.pack_mib * MiB
    log(f"generating {cfg.objects:,} text objects of 800-1300 bytes ...")
    gen_s, smalls = timed(lambda: make_objects(cfg.objects, cfg.seed))
    facts["small_raw"] = sum(map(len, smalls))
    log(f"  {fmt_bytes(facts['small_raw'])} in {gen_s:.1f} s")
    large_paths: list[str] = []
    large_keys: list[str] = []
    log(f"writing {cfg.large_count} text files of {cfg.large_mib} MiB ...")
    started = time.perf_counter()
    for i in range(cfg.large_count):
        path = os.path.join(work, f"large-{i}.txt")
        large_keys.append(write_large_file(path, cfg.large_mib * MiB, cfg.seed + 1000 + i))
        large_paths.append(path)
    log(f"  done in {time.perf_counter() - started:.1f} s")
    small_keys = [hashlib.sha256(b).hexdigest() for b in smalls]
    all_keys = small_keys + large_keys
    deleted = all_keys[1::2]  # every other key, the same on both sides
    live = all_keys[0::2]
    live_small = small_keys[0::2]
    live_large = set(large_keys) & set(live)
    facts["deleted"] = len(deleted)
    facts["live"] = len(live)
    facts["deleted_large"] = len(set(large_keys) - live_large)

    hoard_side, peer_side = Side(), Side()
    env = {"HOARD_PACK_MAX_BYTES": str(pack_bytes), "HOARD_MAINTENANCE_INTERVAL": "0"}
    daemon = HoardDaemon(os.path.join(work, "hoard-data"), os.path.join(work, "hoard.log"), env=env)
    client = None
    try:
        # -- hoard -----------------------------------------------------------------------------
        log(f"starting the hoard daemon on {daemon.target}, packs of {cfg.pack_mib} MiB ...")
        daemon.start()  # settings through HOARD_* in its environment
        client = hoard.connect(daemon.target, timeout=120)
        repo = client.repository("bench")
        repo.initialise()
        log("hoard: put_objects + put_object_from_file ...")
        put_s, keys = timed(lambda: repo.put_objects(smalls))
        if keys != small_keys:
            raise RuntimeError("hoard returned other keys than the SHA-256 of the objects")
        for path, key in zip(large_paths, large_keys, strict=True):
            if repo.put_object_from_file(path) != key:
                raise RuntimeError(f"hoard stored {path} under another key")
        facts["hoard_put_s"] = put_s
        hoard_side.after_put = disk_usage(daemon.data_dir)
        log(f"hoard: delete_objects ({len(deleted):,} keys) ...")
        hoard_side.delete_s, gone = timed(lambda: repo.delete_objects(deleted))
        if len(gone) != len(deleted):
            raise RuntimeError(f"hoard deleted {len(gone)} of {len(deleted)} keys")
        info = repo.get_info()
        hoard_side.dead_before = int(info["reclaimable_bytes"])
        hoard_side.packs_before = int(info["packs"])
        hoard_side.before = disk_usage(daemon.data_dir)

        log(f"hoard: reading alone for {cfg.idle_window:g} s, then during maintain(live=True) ...")
        with (
            Reader(daemon.target, "bench", live_small, cfg.seed + 11) as reader,
            DiskSampler(daemon.data_dir) as sampler,
        ):
            time.sleep(cfg.idle_window)
            reader.phase = "compaction"
            timeline: list[tuple[float, dict[str, Any]]] = []
            start = time.perf_counter()
            report = hoard_maintain(client, repo, timeline)
            hoard_side.reclaim_s = time.perf_counter() - start
            reader.phase = "after"
            sampler.sample()
        peak_alloc, peak_apparent, hoard_side.samples = sampler.peak_since(start)
        hoard_side.peak = (peak_alloc, peak_apparent)
        hoard_side.after = disk_usage(daemon.data_dir)
        info = repo.get_info()
        hoard_side.dead_after = int(info["reclaimable_bytes"])
        hoard_side.packs_after = int(info["packs"])
        hoard_side.notes["maintain report"] = report
        hoard_side.notes["latencies"] = reader.latencies
        hoard_side.notes["slowest"] = sorted(
            (
                (elapsed, t0 - start)
                for elapsed, t0 in zip(
                    reader.latencies.get("compaction", []),
                    reader.started.get("compaction", []),
                    strict=True,
                )
            ),
            reverse=True,
        )[:5]
        hoard_side.notes["timeline"] = [
            (t - start, r.get("stage", ""), r.get("done", 0), r.get("total", 0))
            for t, r in timeline
        ]
        hoard_side.notes["failures"] = reader.failures
        facts["hoard_breakdown"] = disk_usage_by_entry(
            os.path.join(daemon.data_dir, "repositories", "bench")
        )
        log(f"  {hoard_side.reclaim_s:.2f} s; {report.get('message', '')}")

        log("hoard: checking every live key and every deleted key ...")
        got = 0
        for key, fh in repo.iter_object_streams(live_small):
            got += hashlib.sha256(fh.read()).hexdigest() == key
        for key in live_large:
            got += sha256_of_stream(repo.iter_chunks(key)) == key
        hoard_side.live_ok, hoard_side.live_total = got, len(live)
        hoard_side.gone_ok = sum(not f for f in repo.has_objects(deleted))
        hoard_side.gone_total = len(deleted)
        if hasattr(repo, "verify"):
            log("hoard: verify() ...")
            verify_s, result = timed(repo.verify)
            hoard_side.notes["verify"] = result
            hoard_side.notes["verify_s"] = verify_s
        client.close()
        client = None
        code = daemon.stop()
        if code not in (0, None):
            log(f"warning: the hoard daemon exited with {code}:\n{daemon.log_tail()}")

        # -- disk-objectstore --------------------------------------------------------------------
        folder = os.path.join(work, "dos")
        log("disk-objectstore: add_objects_to_pack + add_streamed_object_to_pack ...")
        container = Container(folder)
        container.init_container(pack_size_target=pack_bytes)
        put_s, keys = timed(lambda: container.add_objects_to_pack(smalls, compress=True))
        if keys != small_keys:
            raise RuntimeError("disk-objectstore returned other keys than hoard")
        for path, key in zip(large_paths, large_keys, strict=True):
            with open(path, "rb") as fh:
                if container.add_streamed_object_to_pack(fh, compress=True) != key:
                    raise RuntimeError(f"disk-objectstore stored {path} under another key")
        facts["peer_put_s"] = put_s
        # Closing checkpoints SQLite's write-ahead log into packs.idx and removes it;
        # measured open, the log would be counted on top.
        container.close()
        peer_side.after_put = disk_usage(folder)
        log(f"disk-objectstore: delete_objects ({len(deleted):,} keys) ...")
        peer_side.delete_s, gone = timed(lambda: container.delete_objects(deleted))
        if len(gone) != len(deleted):
            raise RuntimeError(f"disk-objectstore deleted {len(gone)} of {len(deleted)} keys")
        peer_side.dead_before = peer_dead_bytes(container)
        peer_side.packs_before = len(list(container._list_packs()))
        container.close()
        peer_side.before = disk_usage(folder)
        log("disk-objectstore: repack() (offline: nothing else may use the container) ...")
        with DiskSampler(folder) as sampler:
            start = time.perf_counter()
            container.repack()
            container.close()  # the checkpoint of the write-ahead log is part of the job
            peer_side.reclaim_s = time.perf_counter() - start
            sampler.sample()
        peak_alloc, peak_apparent, peer_side.samples = sampler.peak_since(start)
        peer_side.peak = (peak_alloc, peak_apparent)
        peer_side.after = disk_usage(folder)
        peer_side.dead_after = peer_dead_bytes(container)
        peer_side.packs_after = len(list(container._list_packs()))
        container.close()
        facts["peer_breakdown"] = disk_usage_by_entry(folder)
        log(f"  {peer_side.reclaim_s:.2f} s")

        log("disk-objectstore: checking every live key and every deleted key ...")
        got = 0
        with container.get_objects_stream_and_meta(live_small) as triplets:
            for key, stream, _meta in triplets:
                got += hashlib.sha256(stream.read()).hexdigest() == key
        for key in live_large:
            with container.get_object_stream(key) as fh:
                got += sha256_of_stream(file_chunks(fh)) == key
        peer_side.live_ok, peer_side.live_total = got, len(live)
        peer_side.gone_ok = sum(not f for f in container.has_objects(deleted))
        peer_side.gone_total = len(deleted)
        container.close()
        return hoard_side, peer_side, facts
    finally:
        if client is not None:
            client.close()
        code = daemon.stop()
        if code not in (0, None):
            log(f"warning: the hoard daemon exited with {code}:\n{daemon.log_tail()}")


# -- the table ------------------------------------------------------------------------------------


def build_rows(cfg: Settings, h: Side, p: Side, facts: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    n = facts["deleted"]

    def faster(label: str, hs: float, ps: float, work: int, unit: str, peer_note: str = "") -> Row:
        return Row(
            label,
            f"{hs:.2f} s ({fmt_rate(work, hs, unit)})",
            f"{ps:.2f} s ({fmt_rate(work, ps, unit)}){peer_note}",
            f"{ps / hs:.1f}x",
            "",
            None,
        )

    def size_row(label: str, hb: int, pb: int, target: str = "", met: bool | None = None) -> Row:
        ratio = f"{hb / pb:.2f}" if pb > 0 else "-"
        return Row(label, fmt_bytes(hb), fmt_bytes(pb), ratio, target, met)

    rows.append(faster(f"delete every other key ({n:,})", h.delete_s, p.delete_s, n, "keys"))
    moved = h.notes["maintain report"].get("moved_bytes", 0)
    rows.append(
        Row(
            "reclaim: time",
            f"{h.reclaim_s:.2f} s (live maintain, moved {fmt_bytes(moved)})",
            f"{p.reclaim_s:.2f} s (offline repack)",
            f"{p.reclaim_s / h.reclaim_s:.1f}x",
            "",
            None,
        )
    )
    for i, kind in enumerate(("allocated", "apparent")):
        rows.append(
            size_row(
                f"reclaimed, {kind} (store dir before - after)",
                h.before[i] - h.after[i],
                p.before[i] - p.after[i],
            )
        )
    rows.append(
        Row(
            "dead bytes in packs: before -> after",
            f"{fmt_bytes(h.dead_before)} -> {fmt_bytes(h.dead_after)}",
            f"{fmt_bytes(p.dead_before)} -> {fmt_bytes(p.dead_after)}",
            "",
            "",
            None,
        )
    )
    rows.append(
        Row(
            "packs: before -> after",
            f"{h.packs_before} -> {h.packs_after}",
            f"{p.packs_before} -> {p.packs_after}",
            "",
            "",
            None,
        )
    )
    for i, kind in enumerate(("allocated", "apparent")):
        rows.append(
            Row(
                f"on disk, {kind}: after puts -> after reclaim",
                f"{fmt_bytes(h.after_put[i])} -> {fmt_bytes(h.after[i])}",
                f"{fmt_bytes(p.after_put[i])} -> {fmt_bytes(p.after[i])}",
                f"{h.after[i] / p.after[i]:.2f}",
                "",
                None,
            )
        )
    pack = cfg.pack_mib * MiB
    for i, kind in enumerate(("allocated", "apparent")):
        hx = max(0, h.peak[i] - h.before[i])
        px = max(0, p.peak[i] - p.before[i])
        rows.append(
            Row(
                f"peak extra disk during reclaim, {kind}",
                f"{fmt_bytes(hx)} ({h.samples} samples)",
                f"{fmt_bytes(px)} ({p.samples} samples)",
                f"{hx / px:.2f}" if px else "-",
                f"hoard <= one pack ({cfg.pack_mib} MiB)",
                hx <= pack,
            )
        )

    lat = h.notes["latencies"]
    idle, busy = lat.get("idle", []), lat.get("compaction", [])
    offline = "- (repack is offline)"
    if idle and busy:
        i50, i99 = percentiles(idle)
        b50, b99 = percentiles(busy)
        rows.append(
            Row(
                "small reads without maintenance: p50 / p99",
                f"{fmt_ms(i50)} / {fmt_ms(i99)} ({len(idle):,} reads)",
                offline,
                "",
                "",
                None,
            )
        )
        rows.append(
            Row(
                "small reads during reclaim: p50 / p99",
                f"{fmt_ms(b50)} / {fmt_ms(b99)} ({len(busy):,} reads)",
                offline,
                f"p99 {b99 / i99:.2f}x",
                "p99 during < 2x without",
                b99 < 2 * i99,
            )
        )
    else:
        rows.append(
            Row(
                "small reads during reclaim",
                f"too few reads ({len(idle)} without, {len(busy)} during)",
                offline,
                "",
                "p99 during < 2x without",
                None,
            )
        )
    failures = sum(len(v) for v in h.notes["failures"].values())
    rows.append(Row("reads failed or wrong", str(failures), "-", "", "0", failures == 0))

    def check(ok: int, total: int) -> str:
        return f"{ok:,} of {total:,}"

    rows.append(
        Row(
            "live keys read back, SHA-256 checked",
            check(h.live_ok, h.live_total),
            check(p.live_ok, p.live_total),
            "",
            "all",
            h.live_ok == h.live_total and p.live_ok == p.live_total,
        )
    )
    rows.append(
        Row(
            "deleted keys gone (has_objects)",
            check(h.gone_ok, h.gone_total),
            check(p.gone_ok, p.gone_total),
            "",
            "all",
            h.gone_ok == h.gone_total and p.gone_ok == p.gone_total,
        )
    )
    result = h.notes.get("verify")
    if result is not None:
        rows.append(
            Row(
                "hoard verify() after reclaim",
                f"{'ok' if result['ok'] else 'PROBLEMS'}: {result['checked_objects']:,} objects, "
                f"{result['problem_count']} problems ({h.notes['verify_s']:.1f} s)",
                "-",
                "",
                "ok",
                bool(result["ok"]),
            )
        )
    return rows


NOTES = """\
hoard compacts live through its daemon (`repo.maintain(dry_run=False, live=True,
dead_fraction=1e-9)`: every pack holding dead bytes has its live records copied, as stored,
into the pack being written, then is deleted; a pack still being written is sealed first; the
index file is then swapped for a compacted copy when it is mostly free pages; compaction backs
off while clients are active), while a reader thread with its own connection reads random live
small objects one at a time.
disk-objectstore reclaims with `Container.repack()`, its offline operation: every pack is
rewritten without its deleted objects into a temporary pack that replaces it, then the SQLite
index is VACUUMed; nothing else may use the container meanwhile. Ratios: for times, how many
times faster hoard is; for bytes, hoard's over the peer's. Sizes are of the whole store
directory (hoard's data directory, the peer's container folder, SQLite's write-ahead log
checkpointed), allocated (st_blocks*512) and apparent (st_size); the peak extra disk is the
largest of the sizes sampled every ~20 ms during the operation minus the size before it. The
"dead bytes" are hoard's `reclaimable_bytes` and, for the peer, pack files' size minus the
packed objects' lengths. Each figure is taken once; absolute numbers drift 20-40% between runs
on shared machines."""


def data_line(cfg: Settings, facts: dict[str, Any]) -> str:
    return (
        f"{cfg.objects:,} text objects of 800-1300 bytes ({fmt_bytes(facts['small_raw'])} raw) "
        f"and {cfg.large_count} text objects of {cfg.large_mib} MiB, compression on, packs of "
        f"{cfg.pack_mib} MiB on both sides; then every other key deleted "
        f"({facts['deleted']:,}, {facts['deleted_large']} of them large), the same on both sides"
    )


def markdown_section(
    rows: list[Row], info: dict[str, str], command: str, cfg: Settings, facts: dict[str, Any]
) -> str:
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    return "\n".join(
        [
            SECTION,
            "",
            *run_header(date, command, info),
            "",
            f"Data: {data_line(cfg, facts)}.",
            "",
            table_markdown(rows),
            "",
            NOTES,
            "",
        ]
    )


def write_section(path: str, section: str) -> None:
    """bench_objects.update_markdown, for this module's heading (it reads its module's
    SECTION when called)."""
    with mock.patch.object(bench_objects, "SECTION", SECTION):
        update_markdown(path, section)


# -- command line ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.bench_maintenance",
        description="Reclaiming deleted space: hoard against disk-objectstore (issue 3).",
    )
    p.add_argument("--objects", type=int, help="small objects (default 100000; 10000 --quick)")
    p.add_argument("--large", type=int, help="large objects (default 8; 2 with --quick)")
    p.add_argument("--large-mib", type=int, default=16, help="size of each large object")
    p.add_argument(
        "--pack-mib",
        type=int,
        help="pack size target on both sides (default 8; 1 with --quick): small enough that "
        "the small objects fill several packs",
    )
    p.add_argument(
        "--idle-window",
        type=float,
        default=5.0,
        help="seconds of reads without maintenance, the baseline (default 5)",
    )
    p.add_argument(
        "--work-dir",
        default="./bench-work",
        help="where both stores live; must be a real disk, not tmpfs",
    )
    p.add_argument(
        "--markdown",
        metavar="PATH",
        help=f"write/update the '{SECTION[3:]}' section of this file",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 10k objects, 2 large")
    p.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--allow-tmpfs", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    cfg = Settings(
        objects=args.objects or (10_000 if args.quick else 100_000),
        large_count=(2 if args.quick else 8) if args.large is None else args.large,
        large_mib=args.large_mib,
        pack_mib=args.pack_mib or (1 if args.quick else 8),
        idle_window=args.idle_window,
        seed=args.seed,
    )
    if cfg.objects < 4 or cfg.large_count < 0 or cfg.large_mib < 1 or cfg.pack_mib < 1:
        print("need at least 4 objects, 1 MiB large objects and 1 MiB packs", file=sys.stderr)
        return 2
    prepared = prepare_run(args, argv, "tests.benchmarks.bench_maintenance")
    if prepared is None:
        return 2
    work, made_root, command, info = prepared

    def log(message: str) -> None:
        print(message, flush=True)

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    try:
        hoard_side, peer_side, facts = run(cfg, work, log)
    finally:
        finish_run(args, work, made_root)
    rows = build_rows(cfg, hoard_side, peer_side, facts)
    print()
    print(table_text(rows))
    print()
    print(f"data: {data_line(cfg, facts)}")
    print(
        f"machine: {info['nproc']} cores, {info['cpu']}, Python {info['python']}; "
        f"{info['packages']}"
    )
    print(f"hoard maintain report: {hoard_side.notes['maintain report']}")
    slowest = ", ".join(
        f"{fmt_ms(elapsed)} at +{at:.2f} s" for elapsed, at in hoard_side.notes["slowest"]
    )
    print(f"slowest reads during reclaim (start after maintain began): {slowest}")
    steps = ", ".join(
        f"+{at:.2f} s {stage} {done}/{total}"
        for at, stage, done, total in hoard_side.notes["timeline"]
    )
    print(f"maintain progress reports: {steps}")
    for phase, errors in hoard_side.notes["failures"].items():
        print(f"reader failures ({phase}): {len(errors)}, first: {errors[:3]}")
    for name, side in (("hoard", "hoard_breakdown"), ("disk-objectstore", "peer_breakdown")):
        parts = ", ".join(
            f"{entry} {fmt_bytes(a)} ({fmt_bytes(b)} apparent)"
            for entry, (a, b) in facts[side].items()
        )
        print(f"on disk after reclaim, {name}: {parts}")
    print(
        f"puts (context, not measured here): hoard {facts['hoard_put_s']:.1f} s, "
        f"disk-objectstore {facts['peer_put_s']:.1f} s"
    )
    info["load"] = f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    print(f"1-minute load average: {info['load']}")
    print(
        f"total {time.perf_counter() - started:.0f} s. Each figure is taken once; absolute "
        "numbers drift 20-40% between runs, the ratios are what matter."
    )
    if args.markdown:
        write_section(args.markdown, markdown_section(rows, info, command, cfg, facts))
        print(f"updated {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
