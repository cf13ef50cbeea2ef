"""Durability and concurrency against the real daemon: many processes, restarts, kill -9."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hoard

sys.path.insert(0, str(Path(__file__).parent))
from harness import wait_until
from workers import content, pool_sizes

WORKERS = str(Path(__file__).parent / "workers.py")


def spawn(mode: str, target: str, seed: int, ack: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            WORKERS,
            mode,
            "--target",
            target,
            "--seed",
            str(seed),
            "--ack",
            str(ack),
            *extra,
        ]
    )


def test_eight_processes_put_overlapping_sets(hoard_daemon, tmp_path):
    procs = [spawn("overlap", hoard_daemon.target, s, tmp_path / f"ack{s}") for s in range(8)]
    assert [p.wait(300) for p in procs] == [0] * 8
    sizes = pool_sizes(600)
    acked = set()
    for s in range(8):
        acked |= set((tmp_path / f"ack{s}").read_text().split())
    expected = {
        hashlib.sha256(content(i, sizes[i])).hexdigest(): content(i, sizes[i]) for i in range(600)
    }
    with hoard.connect(hoard_daemon.target) as client:
        repo = client.repository()
        stored = set(repo.list_objects())
        assert stored == acked
        for key, data in repo.get_objects_content(sorted(stored)).items():
            assert data == expected[key]
        info = repo.get_info()
        # each distinct object stored exactly once
        assert info["objects"] == len(stored)
        assert info["raw_bytes"] == sum(len(expected[k]) for k in stored)


def test_objects_survive_a_graceful_restart(hoard_daemon):
    data = [content(i, 10_000 + i) for i in range(50)] + [content(99, 9 << 20)]
    with hoard.connect(hoard_daemon.target) as client:
        repo = client.repository()
        keys = repo.put_objects(data)
        uuid = repo.uuid
    assert hoard_daemon.stop() == 0
    assert "stopped" in "".join(hoard_daemon.log)
    hoard_daemon.start()
    with hoard.connect(hoard_daemon.target) as client:
        repo = client.repository()
        assert repo.uuid == uuid
        assert repo.has_objects(keys) == [True] * len(keys)
        for key, d in zip(keys, data, strict=True):
            assert repo.get_object_content(key) == d


def _acked(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


@pytest.mark.parametrize("acks", [200])
def test_kill_9_during_concurrent_puts_loses_nothing_acknowledged(daemon_factory, tmp_path, acks):
    daemon = daemon_factory()
    procs = [
        spawn("hammer", daemon.target, s, tmp_path / f"ack{s}", "--seconds", "120")
        for s in range(1, 5)
    ]
    paths = [tmp_path / f"ack{s}" for s in range(1, 5)]
    # every worker has had writes acknowledged, so all four are mid-traffic at the kill
    wait_until(
        lambda: all(_acked(p) for p in paths) and sum(map(_acked, paths)) >= acks,
        timeout=90,
        what=f"{acks} acknowledged writes from every worker",
    )
    daemon.kill()  # SIGKILL mid-stream: no flush, no shutdown
    for p in procs:
        p.kill()
        p.wait(30)
    acked = set()
    for s in range(1, 5):
        path = tmp_path / f"ack{s}"
        if path.exists():
            acked |= set(path.read_text().split())
    assert len(acked) > 50, "the workers should have got writes acknowledged before the kill"
    daemon.start()
    with hoard.connect(daemon.target) as client:
        repo = client.repository()
        stored = list(repo.list_objects())
        # nothing acknowledged is missing ...
        assert acked <= set(stored)
        assert all(repo.has_objects(sorted(acked)))
        # ... and nothing visible is partial: every object hashes to its key
        for key in stored:
            h = hashlib.sha256()
            for chunk in repo.iter_chunks(key):
                h.update(chunk)
            assert h.hexdigest() == key
        info = repo.get_info()
        assert info["objects"] == len(stored)
        # a crash leaves no staged uploads behind once restarted
        staging = Path(daemon.data_dir, "repositories", "default", "staging")
        assert os.listdir(staging) == []
        # and the store takes writes again
        k = repo.put_object(b"after the crash")
        assert repo.get_object_content(k) == b"after the crash"


@pytest.fixture
def small_filesystem(tmp_path):
    """A 48 MiB tmpfs, so that the disk really fills up (skipped where we may not mount)."""
    mnt = tmp_path / "small-fs"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_is_resource_exhausted_and_damages_nothing(daemon_factory, small_filesystem):
    filler = small_filesystem / "filler"
    filler.write_bytes(os.urandom(12 << 20))
    daemon = daemon_factory(small_filesystem / "data")
    stored: dict[str, bytes] = {}
    with hoard.connect(daemon.target, timeout=30) as client:
        repo = client.repository()
        with pytest.raises(hoard.StorageFullError) as exc:
            for _ in range(200):
                batch = [os.urandom(100_000) for _ in range(8)]  # incompressible
                keys = repo.put_objects(batch)
                stored.update(zip(keys, batch, strict=True))
                big = os.urandom(5 << 20)
                stored[repo.put_object(big)] = big
        assert exc.value.code.name == "RESOURCE_EXHAUSTED"
        assert "no space left" in str(exc.value)
        assert len(stored) > 10
        # everything acknowledged before the disk filled is intact
        for key, data in stored.items():
            assert repo.get_object_content(key) == data
        # free space: writes succeed again
        filler.unlink()
        again = os.urandom(1 << 20)
        key = repo.put_object(again)
        assert repo.get_object_content(key) == again
        assert repo.get_info()["objects"] == len(stored) + 1
    # and a restart finds the same store
    daemon.stop()
    daemon.start()
    with hoard.connect(daemon.target) as client:
        repo = client.repository()
        assert all(repo.has_objects(list(stored)))


def _pack_bytes(data_dir: str, repository: str = "default") -> int:
    d = Path(data_dir, "repositories", repository, "packs")
    return sum(f.stat().st_size for f in d.iterdir())


def test_kill_9_during_compaction_loses_nothing_and_leaks_at_most_a_pack(daemon_factory):
    import grpc

    from hoard.v1 import objects_pb2 as pb
    from hoard.v1 import objects_pb2_grpc

    pack_max = 1 << 20
    daemon = daemon_factory(None, "--pack-max-bytes", str(pack_max))
    objs = [content(i, 3000 + i % 5000) for i in range(3000)]
    with hoard.connect(daemon.target) as client:
        repo = client.repository()
        keys = repo.put_objects(objs)
        repo.delete_objects(keys[::2])
    live = dict(zip(keys[1::2], objs[1::2], strict=True))
    before = _pack_bytes(daemon.data_dir)

    channel = grpc.insecure_channel(daemon.target)
    stub = objects_pb2_grpc.ObjectsStub(channel)
    stream = stub.Maintain(pb.MaintainRequest(repository="default", dead_fraction=1e-9))
    plan = next(stream)
    assert plan.total >= 3
    next(stream)  # the first pack is done: kill in the middle of the run
    daemon.kill()
    channel.close()

    daemon.start()
    assert _pack_bytes(daemon.data_dir) <= before + pack_max
    with hoard.connect(daemon.target) as client:
        repo = client.repository()
        assert not any(repo.has_objects(keys[::2]))
        for key, data in repo.get_objects_content(list(live)).items():
            assert data == live[key]
        assert repo.get_info()["reclaimable_bytes"] > 0, "the kill should have cut the run short"
        # a second run finishes the job
        repo.maintain()
        info = repo.get_info()
        assert info["objects"] == len(live)
        assert info["reclaimable_bytes"] < pack_max
        assert _pack_bytes(daemon.data_dir) < before * 0.75
        for key, data in repo.get_objects_content(list(live)).items():
            assert data == live[key]


def test_pack_removed_or_damaged_under_the_daemon(daemon_factory):
    import grpc

    from hoard.v1 import objects_pb2 as pb
    from hoard.v1 import objects_pb2_grpc

    daemon = daemon_factory(None, "--pack-max-bytes", str(1 << 20))
    objs = [os.urandom(50_000) for _ in range(60)]  # incompressible: ~3 packs
    with hoard.connect(daemon.target) as client:
        repo = client.repository()
        keys = repo.put_objects(objs)
        stats = {k: repo.stat(k) for k in keys}
    packs = sorted({s.pack_id for s in stats.values()})
    assert len(packs) >= 3
    removed, truncated = packs[0], packs[1]
    pack_dir = Path(daemon.data_dir, "repositories", "default", "packs")
    (pack_dir / f"{removed:08d}.pack").unlink()
    t = pack_dir / f"{truncated:08d}.pack"
    os.truncate(t, t.stat().st_size // 2)

    channel = grpc.insecure_channel(daemon.target)
    stub = objects_pb2_grpc.ObjectsStub(channel)
    reports = list(stub.Verify(pb.VerifyRequest(repository="default")))
    problems = [p for r in reports for p in r.problems]
    assert reports[-1].done and reports[-1].problem_count == len(problems)
    bad = {p.key for p in problems if p.key}
    assert {k for k, s in stats.items() if s.pack_id == removed} <= bad
    assert any(stats[k].pack_id == truncated for k in bad)
    assert {p.pack_id for p in problems if not p.key} == {removed, truncated}
    with hoard.connect(daemon.target) as client:
        repo = client.repository()
        for key, data in zip(keys, objs, strict=True):
            if key in bad:
                with pytest.raises(hoard.DataCorruptionError):
                    repo.get_object_content(key)
            else:
                assert repo.get_object_content(key) == data
        assert repo.get_info()["last_verification_errors"] == len(problems)
        repo.put_object(b"still writable")
    channel.close()


def test_full_disk_recovers_through_delete_and_compaction(daemon_factory, small_filesystem):
    daemon = daemon_factory(small_filesystem / "data", "--pack-max-bytes", str(4 << 20))
    big: dict[str, bytes] = {}
    small: dict[str, bytes] = {}
    with hoard.connect(daemon.target, timeout=30) as client:
        repo = client.repository()
        with pytest.raises(hoard.StorageFullError):
            for _i in range(100):
                data = os.urandom(9 << 20)  # past the in-memory limit: a pack of its own
                big[repo.put_object(data)] = data
                batch = [os.urandom(20_000) for _ in range(20)]
                small.update(zip(repo.put_objects(batch), batch, strict=True))
        with pytest.raises(hoard.StorageFullError):  # still full
            repo.put_object(os.urandom(9 << 20))
        repo.delete_objects(list(big))  # logical: frees nothing yet
        with pytest.raises(hoard.StorageFullError):
            repo.put_object(os.urandom(9 << 20))
        report = repo.maintain()  # whole dead packs go first and need no room
        assert report["reclaimed_bytes"] >= 9 << 20
        data = os.urandom(9 << 20)
        key = repo.put_object(data)
        assert repo.get_object_content(key) == data
        for k, v in small.items():
            assert repo.get_object_content(k) == v
        assert repo.verify()["ok"]


def test_cancelled_compaction_leaves_a_whole_store_and_resumes(daemon_factory):
    import grpc

    from hoard.v1 import objects_pb2 as pb
    from hoard.v1 import objects_pb2_grpc

    daemon = daemon_factory(None, "--pack-max-bytes", str(1 << 20))
    objs = [content(i, 2000 + i % 3000) for i in range(3000)]
    with hoard.connect(daemon.target) as client:
        repo = client.repository()
        keys = repo.put_objects(objs)
        repo.delete_objects(keys[::2])
        channel = grpc.insecure_channel(daemon.target)
        stream = objects_pb2_grpc.ObjectsStub(channel).Maintain(
            pb.MaintainRequest(repository="default", dead_fraction=1e-9)
        )
        total = next(stream).total
        next(stream)
        stream.cancel()  # the client walks away mid-run
        channel.close()

        def maintain_again() -> dict | None:
            try:
                return repo.maintain(dead_fraction=1e-9)
            except hoard.FailedPreconditionError:  # the cancelled run is still finishing a pack
                return None

        # the daemon notices the cancel and lets go of the repository
        second = wait_until(maintain_again, timeout=30, what="the cancelled run to let go")
        assert 0 < second["done"] < total
        assert repo.get_info()["reclaimable_bytes"] == 0
        live = dict(zip(keys[1::2], objs[1::2], strict=True))
        assert repo.get_objects_content(list(live)) == live
        assert not any(repo.has_objects(keys[::2]))
        assert repo.verify()["ok"]


def _fill(path: Path) -> None:
    """Write ``path`` until the filesystem has no byte left."""
    with open(path, "ab", buffering=0) as fh:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    fh.write(b"\0" * size)
            except OSError:
                pass


def test_full_disk_in_the_index_is_resource_exhausted_for_puts_and_deletes(
    daemon_factory, small_filesystem
):
    """LMDB reports a full disk as ENOSPC or, after a short page write, EIO: both are
    RESOURCE_EXHAUSTED for PutBatch and Delete, never INTERNAL, and nothing is lost."""
    daemon = daemon_factory(small_filesystem / "data")
    stored: dict[str, bytes] = {}
    with hoard.connect(daemon.target, timeout=30) as client:
        repo = client.repository()
        for i in range(12):  # a large index: a delete has many pages to rewrite
            batch = [b"%d-%d" % (i, j) + bytes(40) for j in range(2000)]
            stored.update(zip(repo.put_objects(batch), batch, strict=True))
        _fill(small_filesystem / "filler")
        keys = list(stored)
        codes = []
        for n in range(6):
            for call in (
                lambda n=n: repo.put_objects(
                    [b"new %d %d" % (n, j) + bytes(60) for j in range(500)]
                ),
                lambda n=n: repo.delete_objects(keys[n * 2000 : (n + 1) * 2000]),
            ):
                try:
                    call()
                    codes.append("OK")
                except hoard.HoardError as exc:
                    codes.append(exc.code.name if exc.code else type(exc).__name__)
                    assert isinstance(exc, hoard.StorageFullError), str(exc)
                    assert "no space left" in str(exc), str(exc)
        assert "RESOURCE_EXHAUSTED" in codes
        (small_filesystem / "filler").unlink()
        deleted = set(keys) - {k for k, h in zip(keys, repo.has_objects(keys), strict=True) if h}
        for key, data in stored.items():
            if key not in deleted:
                assert repo.get_object_content(key) == data
        repo.delete_objects(keys[-100:])  # and deletes work again
        assert not any(repo.has_objects(keys[-100:]))
    assert not any("Traceback" in line for line in daemon.log), "".join(daemon.log)[-3000:]
