"""Engine-level maintenance: live compaction, verification, online backup and restore."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import threading
import time

import pytest
from harness import wait_until

from hoard_server.errors import DataLoss, FailedPrecondition, InvalidArgument, PermissionDenied
from hoard_server.maintenance.backup import backup, check_destination, restore
from hoard_server.storage.layout import RepositoryLayout
from hoard_server.storage.pack import HEADER_SIZE, scan_records
from hoard_server.storage.registry import RepositoryRegistry
from hoard_server.storage.repository import StorageSettings

PACK = 1 << 20


def blob(i: int, size: int = 3000, compressible: bool = True) -> bytes:
    rng = random.Random(i)
    if compressible:
        words = [b"alpha", b"beta", b"gamma", b"delta", b"%d" % i]
        return b" ".join(rng.choice(words) for _ in range(size // 5))[:size]
    return rng.randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_all(repo, key: str) -> bytes:
    return b"".join(repo.read(key)[1])


def pack_bytes(repo) -> int:
    d = os.path.join(repo.path, "packs")
    total = 0
    for f in os.listdir(d):
        with contextlib.suppress(FileNotFoundError):  # compacted away meanwhile
            total += os.path.getsize(os.path.join(d, f))
    return total


@pytest.fixture
def registry(tmp_path):
    reg = RepositoryRegistry(
        str(tmp_path / "data"),
        StorageSettings(pack_max_bytes=PACK, train_dictionary=False),
    )
    yield reg
    reg.close()


@pytest.fixture
def filled(registry):
    """A repository of 1,500 objects over several packs, with every other one deleted."""
    repo = registry.create("r")[0]
    objs = {}
    for start in range(0, 1500, 100):
        batch = [
            blob(i, 2000 + i % 700, compressible=i % 3 != 0) for i in range(start, start + 100)
        ]
        for (k, _), o in zip(repo.put_many(batch), batch, strict=True):
            objs[k] = o
    big = blob(99_999, 3 << 20, compressible=False)
    ((big_key, _),) = repo.put_many([big])
    keys = list(objs)
    dead = keys[::2]
    repo.delete_many(dead)
    live = {k: objs[k] for k in keys[1::2]}
    live[big_key] = big
    return repo, live, dead


def test_dry_run_reports_and_changes_nothing(filled):
    repo, _live, _dead = filled
    before = (repo.info().pack_count, pack_bytes(repo), repo.info().reclaimable_bytes)
    steps = list(repo.maintain(dry_run=True))
    assert steps[0].stage == "plan" and steps[-1].stage == "done"
    assert steps[0].total >= 2 and steps[0].reclaimable_bytes > 0
    assert steps[-1].reclaimed_bytes == 0
    after = (repo.info().pack_count, pack_bytes(repo), repo.info().reclaimable_bytes)
    assert after == before


def test_compaction_reclaims_space_and_keeps_every_live_object(filled):
    repo, live, dead = filled
    before_disk = pack_bytes(repo)
    info = repo.info()
    steps = list(repo.maintain())
    assert steps[-1].stage == "done" and steps[-1].done == steps[0].total
    after = repo.info()
    assert after.object_count == info.object_count == len(live)
    assert after.raw_bytes == info.raw_bytes
    assert pack_bytes(repo) < before_disk - info.reclaimable_bytes // 2
    assert after.reclaimable_bytes < info.reclaimable_bytes // 4
    assert after.last_maintenance > 0
    for k, o in live.items():
        assert read_all(repo, k) == o
    assert not any(repo.has_many(dead))
    # nothing left to do: a second run plans no work
    assert next(iter(repo.maintain())).total == 0


def test_compaction_is_live_reads_writes_and_deletes_go_on(filled):
    repo, live, _dead = filled
    keys = list(live)
    errors: list[BaseException] = []
    stop = threading.Event()
    written: dict[str, bytes] = {}
    deleted_during: list[str] = []
    peak = [0]
    base = pack_bytes(repo)

    doomed, kept = keys[:50], keys[50:]

    reads = [0]

    def reader():  # only objects nobody deletes: every read must succeed, exactly
        rng = random.Random(1)
        while not stop.is_set():
            reads[0] += 1
            try:
                k = rng.choice(kept)
                assert read_all(repo, k) == live[k]
                for key, _size, data in repo.read_many(rng.sample(kept, 20)):
                    assert data == live[key]
            except BaseException as exc:
                errors.append(exc)
                return

    def writer():
        i = 0
        while not stop.is_set():
            batch = [blob(500_000 + i + j, 1500) for j in range(20)]
            i += 20
            for (k, _), o in zip(repo.put_many(batch), batch, strict=True):
                written[k] = o

    def deleter():
        for k in doomed:
            if stop.is_set():
                return
            repo.delete_many([k])
            deleted_during.append(k)
            time.sleep(0.002)

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], pack_bytes(repo))
            time.sleep(0.001)

    threads = [threading.Thread(target=f) for f in (reader, reader, writer, deleter, watch)]
    for t in threads:
        t.start()
    try:
        steps = list(repo.maintain(dead_fraction=1e-9))
    finally:
        done = reads[0]  # reads go on a while after the last move, from the new places
        wait_until(lambda: reads[0] >= done + 20 or errors, what="reads after compaction")
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert steps[-1].done >= 2
    for k, o in live.items():
        if k not in deleted_during:
            assert read_all(repo, k) == o
    assert not any(repo.has_many(deleted_during))
    for k, o in written.items():
        assert read_all(repo, k) == o
    # extra disk at any moment: within one pack (plus what the writer added meanwhile)
    new_data = sum(len(o) for o in written.values()) + 60 * len(written)
    assert peak[0] <= base + PACK + new_data + (64 << 10)
    assert list(repo.verify())[-1].problem_count == 0


def test_maintenance_runs_once_at_a_time(filled):
    repo, _live, _dead = filled
    first = repo.maintain()
    next(first)
    with pytest.raises(FailedPrecondition, match="already running") as caught:
        next(repo.maintain())
    assert caught.value.reason == "MAINTENANCE_RUNNING"
    list(first)


# -- verification --------------------------------------------------------------------------


def flip_byte(repo, key: str, where: float = 0.5) -> None:
    (st,) = repo.stat_many([key])
    path = RepositoryLayout(repo.path).pack_path(st.pack_id)
    with open(path, "rb") as fh:
        data = fh.read()
    ((record, header),) = [
        (off, h)
        for off, h, _ in scan_records(lambda o, n: data[o : o + n], len(data))
        if h.digest.hex() == key
    ]
    offset = record + HEADER_SIZE + int(header.body_size * where)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x40]))


def test_verify_healthy_repository(filled):
    repo, live, _ = filled
    steps = list(repo.verify())
    last = steps[-1]
    assert last.done and last.problem_count == 0
    assert last.checked_objects == len(live)
    assert repo.info().last_verification > 0


@pytest.mark.parametrize("compressible", [True, False])
def test_flipped_byte_is_reported_and_never_served(registry, compressible):
    repo = registry.create("v")[0]
    objs = [blob(i, 5000, compressible) for i in range(30)]
    big = blob(7, 3 << 20, compressible)
    keys = [k for k, _ in repo.put_many([*objs, big])]
    victim, big_key = keys[10], keys[-1]
    flip_byte(repo, victim)
    flip_byte(repo, big_key, 0.3)
    problems = [p for s in repo.verify() for p in s.problems]
    assert {p.key for p in problems} == {victim, big_key}
    with pytest.raises(DataLoss):
        read_all(repo, victim)
    with pytest.raises(DataLoss):
        list(repo.read_many([victim]))
    with pytest.raises(DataLoss):
        read_all(repo, big_key)
    # a range of the big object away from the damaged frame is still served
    assert b"".join(repo.read(big_key, 2 << 20, 4096)[1]) == big[2 << 20 : (2 << 20) + 4096]
    for k, o in zip(keys, [*objs, big], strict=True):
        if k not in (victim, big_key):
            assert read_all(repo, k) == o
    assert repo.info().last_verification_errors == 2


def test_truncated_and_missing_packs_are_reported(registry):
    repo = registry.create("t")[0]
    first = [blob(i, 4000, False) for i in range(300)]  # ~1.2 MiB: two packs
    keys = [k for k, _ in repo.put_many(first[:200])]
    keys += [k for k, _ in repo.put_many(first[200:])]
    big = blob(5, 9 << 20, False)
    big_key = repo.put_stream([big[i : i + PACK] for i in range(0, len(big), PACK)])[0]
    (big_stat,) = repo.stat_many([big_key])
    pack_of = {s.key: s.pack_id for s in repo.stat_many(keys)}
    first_pack = pack_of[keys[0]]
    path = repo.pack_path(first_pack)
    os.truncate(path, os.path.getsize(path) // 2)
    os.unlink(repo.pack_path(big_stat.pack_id))
    problems = [p for s in repo.verify() for p in s.problems]
    pack_problems = {p.pack_id: p.problem for p in problems if not p.key}
    assert "truncated" in pack_problems[first_pack]
    assert "missing" in pack_problems[big_stat.pack_id]
    bad_keys = {p.key for p in problems if p.key}
    assert big_key in bad_keys
    assert bad_keys & {k for k in keys if pack_of[k] == first_pack}
    # objects in untouched packs are served as before
    for k, o in zip(keys, first, strict=True):
        if k not in bad_keys:
            assert read_all(repo, k) == o


# -- backup and restore --------------------------------------------------------------------


def test_backup_destination_must_be_under_a_root(tmp_path):
    root = tmp_path / "backups"
    root.mkdir()
    with pytest.raises(FailedPrecondition, match="backup root"):
        check_destination(str(root / "x"), ())
    with pytest.raises(InvalidArgument, match="absolute"):
        check_destination("relative/x", (str(root),))
    with pytest.raises(PermissionDenied):
        check_destination(str(tmp_path / "elsewhere"), (str(root),))
    with pytest.raises(PermissionDenied):
        check_destination(str(root / ".." / "escape"), (str(root),))
    os.symlink(tmp_path, root / "link")
    with pytest.raises(PermissionDenied):
        check_destination(str(root / "link" / "x"), (str(root),))
    assert check_destination(str(root / "a" / "b"), (str(root),)) == str(root / "a" / "b")


def test_backup_is_consistent_incremental_and_restorable(filled, tmp_path):
    repo, live, dead = filled
    dest = str(tmp_path / "backup")
    stop = threading.Event()
    written: dict[str, bytes] = {}

    def writer():  # the daemon keeps serving writes while the backup runs
        i = 0
        while not stop.is_set():
            batch = [blob(900_000 + i + j, 1200) for j in range(10)]
            i += 10
            for (k, _), o in zip(repo.put_many(batch), batch, strict=True):
                written[k] = o

    t = threading.Thread(target=writer)
    t.start()
    try:
        first = list(backup(repo, dest))
    finally:
        stop.set()
        t.join()
    assert first[-1].stage == "done" and first[-1].packs_copied >= 2
    # second backup: sealed packs are not copied again
    repo.put_many([b"one more object"])
    second = list(backup(repo, dest))[-1]
    assert second.packs_unchanged >= 2 and second.packs_copied >= 1
    assert second.bytes_copied < first[-1].bytes_copied

    restored_dir = str(tmp_path / "restored")
    summary = restore(dest, restored_dir)
    assert summary["repository"] == "r" and summary["objects"] == repo.info().object_count
    reg2 = RepositoryRegistry(restored_dir)
    try:
        r2 = reg2.get("r")
        assert r2.uuid == repo.uuid
        assert list(r2.verify())[-1].problem_count == 0
        for k, o in {**live, **written}.items():
            assert read_all(r2, k) == o
        assert not any(r2.has_many(dead))
        with pytest.raises(FailedPrecondition, match="already exists"):
            restore(dest, restored_dir)
        assert restore(dest, restored_dir, "copy")["repository"] == "copy"
    finally:
        reg2.close()


def test_interrupted_backup_resumes(filled, tmp_path):
    repo, live, _ = filled
    dest = str(tmp_path / "backup")
    steps = backup(repo, dest)
    for s in steps:
        if s.stage == "packs":
            break  # the backup is interrupted after its first pack
    steps.close()
    assert not os.path.exists(os.path.join(dest, "backup.json"))
    # a half-copied pack, as a crash would leave it
    packs = sorted(os.listdir(os.path.join(dest, "packs")))
    with open(os.path.join(dest, "packs", packs[0]), "r+b") as fh:
        fh.truncate(os.path.getsize(fh.name) // 2)
    last = list(backup(repo, dest))[-1]
    assert last.stage == "done"
    out = str(tmp_path / "restored")
    restore(dest, out)
    reg2 = RepositoryRegistry(out)
    try:
        r2 = reg2.get("r")
        assert list(r2.verify())[-1].problem_count == 0
        assert all(read_all(r2, k) == o for k, o in live.items())
    finally:
        reg2.close()


def test_backup_after_compaction_drops_removed_packs(filled, tmp_path):
    repo, live, _ = filled
    dest = str(tmp_path / "backup")
    list(backup(repo, dest))
    list(repo.maintain())
    list(backup(repo, dest))
    backed = {int(f.removesuffix(".pack")) for f in os.listdir(os.path.join(dest, "packs"))}
    assert backed == {p.pack_id for p in repo.info().packs}
    out = str(tmp_path / "restored")
    restore(dest, out)
    reg2 = RepositoryRegistry(out)
    try:
        assert all(read_all(reg2.get("r"), k) == o for k, o in live.items())
    finally:
        reg2.close()


def test_the_pack_being_written_is_compacted_too(tmp_path):
    reg = RepositoryRegistry(str(tmp_path / "d"), StorageSettings(train_dictionary=False))
    try:
        repo = reg.create("one-pack")[0]  # 4 GiB packs: everything lands in one
        objs = [blob(i, 3000) for i in range(2000)]
        keys = [k for k, _ in repo.put_many(objs)]
        assert repo.info().pack_count == 1
        repo.delete_many(keys[::2])
        before = pack_bytes(repo)
        list(repo.maintain())
        assert pack_bytes(repo) < before * 0.7
        assert repo.info().reclaimable_bytes == 0
        for k, o in zip(keys[1::2], objs[1::2], strict=True):
            assert read_all(repo, k) == o
        # and writing goes on, into a new pack
        ((k, _),) = repo.put_many([b"after the seal"])
        assert read_all(repo, k) == b"after the seal"
    finally:
        reg.close()


def test_index_file_is_compacted_when_mostly_free(tmp_path):
    reg = RepositoryRegistry(str(tmp_path / "d"), StorageSettings(train_dictionary=False))
    try:
        repo = reg.create("idx")[0]
        objs = [blob(i, 200) for i in range(60_000)]
        keys = []
        for i in range(0, len(objs), 5000):
            keys += [k for k, _ in repo.put_many(objs[i : i + 5000])]
        repo.delete_many(keys[: len(keys) * 9 // 10])
        index_file = RepositoryLayout(repo.path).index_data
        size_before = os.path.getsize(index_file)
        steps = list(repo.maintain())
        assert any(s.stage == "index" for s in steps)
        size_after = os.path.getsize(index_file)
        assert size_after < size_before / 2
        kept = keys[len(keys) * 9 // 10 :]
        assert all(repo.has_many(kept)) and not any(repo.has_many(keys[:100]))
        assert read_all(repo, kept[0]) == objs[len(keys) * 9 // 10]
        ((k, _),) = repo.put_many([b"after the swap"])
        assert read_all(repo, k) == b"after the swap"
    finally:
        reg.close()
    reg = RepositoryRegistry(str(tmp_path / "d"))
    try:
        assert reg.get("idx").info().object_count == len(kept) + 1
    finally:
        reg.close()


@pytest.mark.parametrize("state", ["copying", "between renames", "after renames"])
def test_interrupted_index_swap_is_recovered(tmp_path, state):
    import shutil

    from hoard_server.storage.lmdb_env import LmdbEnvironment, recover_swap

    path = str(tmp_path / "index")
    env = LmdbEnvironment(path, 1 << 30, ("meta",))
    with env.write() as txn:
        txn.put(b"marker", b"kept", db=env.dbs["meta"])
    os.makedirs(path + ".compact")
    env.env.copy(path + ".compact", compact=True)
    env.close()
    if state == "copying":
        with open(os.path.join(path + ".compact", "data.mdb"), "r+b") as fh:
            fh.truncate(100)  # a half-made copy
    elif state == "between renames":
        os.rename(path, path + ".old")
    else:
        shutil.copytree(path, path + ".old")
        shutil.rmtree(path)
        os.rename(path + ".compact", path)
    recover_swap(path)
    assert sorted(os.listdir(tmp_path)) == ["index"]
    env = LmdbEnvironment(path, 1 << 30, ("meta",))
    with env.read() as txn:
        assert txn.get(b"marker", db=env.dbs["meta"]) == b"kept"
    env.close()


def test_a_pack_written_after_planning_loses_nothing(registry, monkeypatch):
    """Regression: the pack being written is planned, then written to, then compacted."""
    from hoard_server.maintenance.compactor import Compactor

    repo = registry.create("late")[0]
    first = [blob(i, 1000) for i in range(300)]
    keys = [k for k, _ in repo.put_many(first)]
    repo.delete_many(keys[::2])
    late = [blob(10_000 + i, 1000) for i in range(200)]
    late_keys: list[str] = []
    real_plan = Compactor.plan

    def plan_then_write(self, fraction=0.25):
        plan = real_plan(self, fraction)
        # writes arriving between planning and compacting land in the planned pack
        late_keys.extend(k for k, _ in repo.put_many(late))
        assert {s.pack_id for s in repo.stat_many(late_keys)} <= {p.pack_id for p in plan}
        return plan

    monkeypatch.setattr(Compactor, "plan", plan_then_write)
    list(repo.maintain(dead_fraction=1e-9))
    for k, o in [*zip(keys[1::2], first[1::2], strict=True), *zip(late_keys, late, strict=True)]:
        assert read_all(repo, k) == o
    assert list(repo.verify())[-1].problem_count == 0
