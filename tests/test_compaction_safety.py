"""Compaction never destroys a readable object and never copies damage as if it were fine.

Damage is made in the pack files with the daemon stopped, then the daemon is restarted, a
neighbour of the damaged record is deleted and ``maintain`` selects the pack. The damaged
record must stay where it is (its pack kept) and be reported in the maintain result.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

import hoard
from hoard_server.storage.pack import HEADER_SIZE, scan_records

PACK_MAX = 256 << 10

# byte offsets of the header fields: b"HR" encoding:u8 digest:32s raw_size:u64 body_size:u64
_FIELD = {"encoding": 2, "digest": 3 + 17, "raw_size": 35, "body_size": 43}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def text(i: int, size: int = 3000) -> bytes:
    """Compressible, distinct: stored as one zstd frame."""
    rng = random.Random(i)
    words = [b"alpha", b"beta", b"gamma", b"delta", b"%d" % i]
    return b" ".join(rng.choice(words) for _ in range(size // 4))[:size]


def packs_dir(daemon) -> Path:
    return Path(daemon.data_dir, "repositories", "default", "packs")


def pack_path(daemon, pack_id: int) -> Path:
    return packs_dir(daemon) / f"{pack_id:08d}.pack"


def record_offsets(path: Path) -> dict[str, tuple[int, int]]:
    """key -> (record offset, body size), from the pack's own headers (undamaged)."""
    data = path.read_bytes()
    out = {}
    for off, header, _ in scan_records(lambda o, n: data[o : o + n], len(data)):
        out[header.digest.hex()] = (off, header.body_size)
    return out


def xor_byte(path: Path, offset: int, mask: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ mask]))


def setup_store(daemon_factory, n: int = 40):
    """A daemon with ``n`` small objects; returns (daemon, {key: content}, key -> pack id)."""
    daemon = daemon_factory(None, "--pack-max-bytes", str(PACK_MAX))
    objs = [text(i) for i in range(n)]
    with hoard.connect(daemon.target, timeout=60) as client:
        repo = client.repository("default")
        keys = repo.put_objects(objs)
        pack_of = {k: repo.stat(k).pack_id for k in keys}
    return daemon, dict(zip(keys, objs, strict=True)), pack_of


def victim_and_neighbour(objs: dict[str, bytes], pack_of: dict[str, int]) -> tuple[str, str]:
    keys = list(objs)
    victim = keys[len(keys) // 2]
    neighbour = next(k for k in keys if k != victim and pack_of[k] == pack_of[victim])
    return victim, neighbour


def damage_then_compact(daemon, objs, pack_of, damage) -> tuple[str, dict, dict]:
    """Stop the daemon, ``damage(pack path, record offset, body size)`` the victim's record,
    restart, delete a neighbour in the same pack, compact every pack with dead bytes.
    Returns (victim key, maintain result, verify result)."""
    victim, neighbour = victim_and_neighbour(objs, pack_of)
    path = pack_path(daemon, pack_of[victim])
    daemon.stop()
    off, body_size = record_offsets(path)[victim]
    damage(path, off, body_size)
    daemon.start()
    with hoard.connect(daemon.target, timeout=60) as client:
        repo = client.repository("default")
        repo.delete_object(neighbour)
        del objs[neighbour]
        result = repo.maintain(dead_fraction=1e-9)
        checked = repo.verify()
    return victim, result, checked


def assert_kept_and_reported(daemon, result: dict, victim: str, pack_id: int) -> None:
    assert result["stage"] == "done"
    assert pack_path(daemon, pack_id).exists(), "the pack holding the damaged record was deleted"
    assert result["problem_count"] >= 1
    mine = [p for p in result["problems"] if p["key"] == victim]
    assert mine and all(p["pack_id"] == pack_id for p in mine), result["problems"]


@pytest.mark.parametrize("field", ["digest", "body_size", "encoding", "raw_size"])
def test_damaged_record_header_keeps_a_readable_object(daemon_factory, field):
    """The issue: a flipped header byte made compaction judge a live record dead (or copy
    it with wrong sizes/encoding), and the object read fine before was lost afterwards."""
    daemon, objs, pack_of = setup_store(daemon_factory)
    # encoding: zstd (1) <-> raw (0), a valid value that is wrong for this body
    mask = 0x01 if field == "encoding" else 0x10

    def damage(path: Path, off: int, _body_size: int) -> None:
        xor_byte(path, off + _FIELD[field], mask)

    victim, result, checked = damage_then_compact(daemon, objs, pack_of, damage)
    assert_kept_and_reported(daemon, result, victim, pack_of[victim])
    with hoard.connect(daemon.target, timeout=60) as client:
        repo = client.repository("default")
        assert repo.get_object_content(victim) == objs[victim]  # read fine before, and now
        assert repo.get_objects_content(list(objs)) == objs
        assert repo.stat(victim).pack_id == pack_of[victim]
    # verify still names the mismatching header; nothing else is wrong
    assert {p["key"] for p in checked["problems"]} == {victim}


def test_damaged_body_is_not_copied_as_if_fine(daemon_factory):
    daemon, objs, pack_of = setup_store(daemon_factory)

    def damage(path: Path, off: int, body_size: int) -> None:
        xor_byte(path, off + HEADER_SIZE + body_size // 2, 0x40)

    victim, result, _ = damage_then_compact(daemon, objs, pack_of, damage)
    assert_kept_and_reported(daemon, result, victim, pack_of[victim])
    with hoard.connect(daemon.target, timeout=60) as client:
        repo = client.repository("default")
        assert repo.stat(victim).pack_id == pack_of[victim]  # not moved into a new pack
        with pytest.raises(hoard.DataCorruptionError):
            repo.get_object_content(victim)
        rest = {k: v for k, v in objs.items() if k != victim}
        assert repo.get_objects_content(list(rest)) == rest


def test_damaged_frame_of_a_large_object_is_not_copied(daemon_factory):
    """A FRAMES body is checked frame by frame: a damaged frame keeps its pack."""
    daemon = daemon_factory(None, "--pack-max-bytes", str(8 << 20))  # all in one pack
    big = b"".join(text(1000 + i, 64 << 10) for i in range(24))  # 1.5 MiB: several frames
    small = [text(i) for i in range(10)]
    with hoard.connect(daemon.target, timeout=60) as client:
        repo = client.repository("default")
        big_key = repo.put_object(big)
        small_keys = repo.put_objects(small)
        pid = repo.stat(big_key).pack_id
        assert {repo.stat(k).pack_id for k in small_keys} == {pid}
    daemon.stop()
    path = pack_path(daemon, pid)
    off, body_size = record_offsets(path)[big_key]
    xor_byte(path, off + HEADER_SIZE + body_size // 3, 0x40)
    daemon.start()
    with hoard.connect(daemon.target, timeout=60) as client:
        repo = client.repository("default")
        repo.delete_object(small_keys[0])
        result = repo.maintain(dead_fraction=1e-9)
        assert_kept_and_reported(daemon, result, big_key, pid)
        assert repo.stat(big_key).pack_id == pid
        with pytest.raises(hoard.DataCorruptionError):
            repo.get_object_content(big_key)
        rest = dict(zip(small_keys[1:], small[1:], strict=True))
        assert repo.get_objects_content(list(rest)) == rest


def test_healthy_packs_are_compacted_away(daemon_factory):
    """Nothing damaged: compaction moves every live object (small, compressed, raw and a
    multi-frame one), reports no problem, and the old pack files disappear."""
    daemon = daemon_factory(None, "--pack-max-bytes", str(PACK_MAX))
    rng = random.Random(7)
    contents = [text(i) if i % 2 else rng.randbytes(2000) for i in range(300)]
    contents.append(b"".join(text(5000 + i, 64 << 10) for i in range(20)))  # FRAMES
    contents.append(b"")  # an empty object
    with hoard.connect(daemon.target, timeout=60) as client:
        repo = client.repository("default")
        keys = repo.put_objects(contents)
        objs = dict(zip(keys, contents, strict=True))
        old_packs = {repo.stat(k).pack_id for k in keys}
        deleted = keys[:300:2]
        repo.delete_objects(deleted)
        for k in deleted:
            del objs[k]
        before = sum(f.stat().st_size for f in packs_dir(daemon).iterdir())
        result = repo.maintain(dead_fraction=1e-9)
        assert result["stage"] == "done" and result["done"] == result["total"] >= 2
        assert result["problem_count"] == 0 and result["problems"] == []
        assert result["reclaimed_bytes"] > 0 and result["moved_objects"] > 0
        gone = {p for p in old_packs if not pack_path(daemon, p).exists()}
        assert gone and gone == {
            p for p in old_packs if p not in {repo.stat(k).pack_id for k in objs}
        }
        after = sum(f.stat().st_size for f in packs_dir(daemon).iterdir())
        assert after < before
        assert repo.get_objects_content(list(objs)) == objs
        assert not any(repo.has_objects(deleted))
        assert repo.verify()["ok"]
        assert repo.get_info()["reclaimable_bytes"] == 0


def test_issue_scenario_second_run_still_keeps_the_object(daemon_factory):
    """Re-running maintenance on a kept pack reports again and still loses nothing."""
    daemon, objs, pack_of = setup_store(daemon_factory)

    def damage(path: Path, off: int, _body_size: int) -> None:
        xor_byte(path, off + _FIELD["digest"], 0x10)

    victim, first, _ = damage_then_compact(daemon, objs, pack_of, damage)
    assert_kept_and_reported(daemon, first, victim, pack_of[victim])
    with hoard.connect(daemon.target, timeout=60) as client:
        repo = client.repository("default")
        second = repo.maintain(dead_fraction=1e-9)
        assert_kept_and_reported(daemon, second, victim, pack_of[victim])
        assert repo.get_objects_content(list(objs)) == objs


def test_more_live_entries_than_held_at_once_take_several_walks(tmp_path, monkeypatch):
    """Engine level: with a tiny entry budget, packs are collected over several index
    walks (whole packs deferred, one pack split by offset) and nothing is lost."""
    from hoard_server.maintenance import compactor
    from hoard_server.storage.registry import RepositoryRegistry
    from hoard_server.storage.repository import StorageSettings

    walks = []
    real_collect = compactor.Compactor._collect

    def counting(self, pending):
        walks.append([r.pid for r in pending])
        return real_collect(self, pending)

    monkeypatch.setattr(compactor, "_MAX_ENTRIES", 150)
    monkeypatch.setattr(compactor, "_BUCKET", 32 << 10)
    monkeypatch.setattr(compactor.Compactor, "_collect", counting)
    reg = RepositoryRegistry(
        str(tmp_path / "d"), StorageSettings(pack_max_bytes=1 << 20, train_dictionary=False)
    )
    try:
        repo = reg.create("r")[0]
        objs = [text(i, 1500) for i in range(2000)]
        keys = [k for k, _ in repo.put_many(objs)]
        repo.delete_many(keys[::3])
        live = {k: o for i, (k, o) in enumerate(zip(keys, objs, strict=True)) if i % 3}
        steps = list(repo.maintain(dead_fraction=1e-9))
        assert len(walks) > 2
        assert steps[-1].done == steps[0].total and steps[-1].problem_count == 0
        assert repo.info().reclaimable_bytes == 0
        assert all(b"".join(repo.read(k)[1]) == o for k, o in live.items())
        assert list(repo.verify())[-1].problem_count == 0
    finally:
        reg.close()


def test_cli_maintain_prints_kept_records_and_exits_1(daemon_factory, capsys):
    from hoard import cli

    daemon, objs, pack_of = setup_store(daemon_factory)
    victim, neighbour = victim_and_neighbour(objs, pack_of)
    path = pack_path(daemon, pack_of[victim])
    daemon.stop()
    off, _ = record_offsets(path)[victim]
    xor_byte(path, off + _FIELD["digest"], 0x01)
    daemon.start()
    with hoard.connect(daemon.target) as client:
        client.repository("default").delete_object(neighbour)
    code = cli.main(["--target", daemon.target, "maintain", "--dead-fraction", "1e-9"])
    out = capsys.readouterr()
    assert code == 1
    assert victim in out.out + out.err
    assert "packs were kept" in out.out
