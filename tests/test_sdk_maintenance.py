"""Maintenance through the SDK and the CLI against a real daemon: live compaction (dry run,
reclaiming, limits, concurrent traffic), verification (healthy, one pack, a sample, a
damaged pack), backups (incremental, outside the roots, no root) and offline restore."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from pathlib import Path

import pytest

import hoard
from hoard import cli

MiB = 1 << 20
PACK_MAX = 256 << 10  # small packs, so that compaction has sealed packs to work on
N_OBJECTS = 2_000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_objects(n: int, seed: int) -> list[bytes]:
    """``n`` distinct objects of 0.5 to 3 KiB, half random (stored raw), half compressible;
    deleting every other one deletes as many of either kind."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        size = rng.randint(512, 3072)
        if i % 4 < 2:
            out.append(rng.randbytes(size))
        else:
            out.append((f"object {seed}:{i} ".encode() * (size // 12 + 1))[:size])
    return out


def start(daemon_factory, data_dir: Path, *extra: str):
    return daemon_factory(data_dir, "--pack-max-bytes", str(PACK_MAX), *extra)


@pytest.fixture
def roots(tmp_path) -> Path:
    root = tmp_path / "backups"
    root.mkdir()
    return root


@pytest.fixture
def daemon(daemon_factory, tmp_path, roots):
    """A daemon with small packs and one backup root."""
    return start(daemon_factory, tmp_path / "data", "--backup-root", str(roots))


@pytest.fixture
def mrepo(daemon):
    with hoard.connect(daemon.target, timeout=60) as client:
        repo = client.repository("default")
        repo.initialise()
        yield repo


@pytest.fixture
def half_deleted(mrepo):
    """2,000 objects stored, every other one deleted: ``(kept {key: content}, deleted keys)``."""
    contents = make_objects(N_OBJECTS, seed=1)
    keys = mrepo.put_objects(contents)
    assert keys == [sha(c) for c in contents]
    deleted = keys[::2]
    assert sorted(mrepo.delete_objects(deleted)) == sorted(deleted)
    kept = {k: c for k, c in zip(keys, contents, strict=True) if k not in set(deleted)}
    return kept, deleted


def _same_within(a: int, b: int, slack: int = 16 << 10) -> bool:
    return abs(a - b) <= slack


# -- maintain --------------------------------------------------------------------------------


def test_dry_run_reports_reclaimable_space_and_changes_nothing(mrepo, half_deleted):
    kept, _deleted = half_deleted
    before = mrepo.get_info()
    stats_before = mrepo.stat_many(kept)
    assert before["objects"] == N_OBJECTS // 2 and before["reclaimable_bytes"] > 0
    assert before["last_maintenance"] is None

    reports: list[dict] = []
    last = mrepo.maintain(dry_run=True, progress=reports.append)

    assert reports and last == reports[-1]
    assert last["dry_run"] is True and last["stage"] == "done"
    assert last["reclaimable_bytes"] > 0 and last["total"] >= 1
    assert last["reclaimed_bytes"] == 0 and last["moved_objects"] == 0
    assert {"stage", "message", "done", "total", "moved_bytes"} <= set(last)
    after = mrepo.get_info()
    assert after["objects"] == before["objects"]
    assert after["packs"] == before["packs"]
    assert after["reclaimable_bytes"] == before["reclaimable_bytes"]
    assert _same_within(after["on_disk_bytes"], before["on_disk_bytes"])
    assert mrepo.stat_many(kept) == stats_before  # no object moved


def test_maintain_reclaims_space_and_keeps_every_live_object(mrepo, half_deleted):
    kept, deleted = half_deleted
    before = mrepo.get_info()
    reports: list[dict] = []
    last = mrepo.maintain(progress=reports.append)

    assert last == reports[-1] and last["stage"] == "done" and last["dry_run"] is False
    assert {r["stage"] for r in reports} <= {"plan", "compact", "done"}
    assert last["total"] >= 1 and last["done"] == last["total"]
    assert last["reclaimed_bytes"] > 0 and last["moved_objects"] > 0
    after = mrepo.get_info()
    assert after["objects"] == len(kept)
    assert after["on_disk_bytes"] < before["on_disk_bytes"] - last["reclaimed_bytes"] // 2
    assert after["reclaimable_bytes"] < before["reclaimable_bytes"]
    assert after["last_maintenance"] is not None
    assert abs(after["last_maintenance"] - time.time()) < 300

    assert mrepo.get_objects_content(kept) == kept
    assert all(mrepo.get_object_hash(k) == k for k in list(kept)[:50])
    assert not any(mrepo.has_objects(deleted))
    assert list(mrepo.list_objects()) == sorted(kept)
    for key in deleted[:5]:
        with pytest.raises(FileNotFoundError):
            mrepo.get_object_content(key)
    assert mrepo.verify()["ok"]


def test_dead_fraction_and_max_packs_bound_the_work(mrepo, half_deleted):
    kept, _ = half_deleted
    assert mrepo.maintain(dry_run=True, dead_fraction=1.0)["total"] == 0  # packs are ~half dead
    eligible = mrepo.maintain(dry_run=True)["total"]
    assert eligible >= 2
    assert mrepo.maintain(dry_run=True, dead_fraction=1e-9)["total"] >= eligible

    first = mrepo.maintain(max_packs=1)
    assert first["done"] == 1
    # a later call continues (live copies may have diluted the pack being written below the
    # threshold, so at most eligible - 1 remain)
    remaining = mrepo.maintain(dry_run=True)["total"]
    assert 1 <= remaining <= eligible - 1
    rest = mrepo.maintain()
    assert rest["done"] == remaining
    assert mrepo.maintain(dry_run=True)["total"] == 0
    assert mrepo.get_objects_content(kept) == kept


def test_maintain_live_with_aiida_arguments_while_clients_work(mrepo, half_deleted):
    kept, _ = half_deleted
    stop = threading.Event()
    errors: list[BaseException] = []
    written: dict[str, bytes] = {}
    keys = list(kept)

    def traffic() -> None:
        rng = random.Random(7)
        i = 0
        try:
            while not stop.is_set():
                key = rng.choice(keys)
                assert mrepo.get_object_content(key) == kept[key]
                data = f"written during maintenance {i}".encode() * 20
                written[mrepo.put_object(data)] = data
                i += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=traffic) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        last = mrepo.maintain(
            dry_run=False, live=True, compress=True, do_repack=True, clean_storage=True
        )
    finally:
        stop.set()
        for w in workers:
            w.join(60)
    assert not errors, errors
    assert last["stage"] == "done" and last["reclaimed_bytes"] > 0
    assert written
    assert mrepo.get_objects_content(kept) == kept
    assert mrepo.get_objects_content(written) == written
    result = mrepo.verify()
    assert result["ok"] and result["checked_objects"] == len(kept) + len(written)


def test_maintain_on_an_empty_repository_has_nothing_to_do(mrepo):
    last = mrepo.maintain(live=True)
    assert last["stage"] == "done" and last["total"] == 0 and last["reclaimed_bytes"] == 0


# -- verify ----------------------------------------------------------------------------------


def test_verify_a_healthy_repository(mrepo, half_deleted):
    info = mrepo.get_info()
    assert info["last_verification"] is None
    reports: list[dict] = []
    result = mrepo.verify(progress=reports.append)
    assert result == {
        "checked_objects": info["objects"],
        "total_objects": info["objects"],
        "checked_bytes": result["checked_bytes"],
        "problem_count": 0,
        "problems": [],
        "ok": True,
    }
    assert result["checked_bytes"] > 0
    assert reports and reports[-1]["done"] is True
    assert all(r["problems"] == [] for r in reports)
    after = mrepo.get_info()
    assert after["last_verification"] is not None
    assert abs(after["last_verification"] - time.time()) < 300
    assert after["last_verification_errors"] == 0


def test_verify_one_pack_or_a_sample(mrepo, half_deleted):
    kept, _ = half_deleted
    per_pack: dict[int, int] = {}
    for st in mrepo.stat_many(kept):
        per_pack[st.pack_id] = per_pack.get(st.pack_id, 0) + 1
    pack_id, count = max(per_pack.items(), key=lambda item: item[1])
    one = mrepo.verify(pack_id=pack_id)
    assert one["ok"] and one["checked_objects"] == count

    sample = mrepo.verify(sample=0.1)
    assert sample["ok"] and 0 < sample["checked_objects"] < len(kept)


def test_verify_names_a_damaged_object(daemon_factory, tmp_path, capsys):
    data_dir = tmp_path / "damaged"
    d = start(daemon_factory, data_dir)
    rng = random.Random(3)
    contents = [rng.randbytes(4096) for _ in range(20)]  # random: stored raw, verbatim
    with hoard.connect(d.target, timeout=60) as client:
        keys = client.repository("default").put_objects(contents)
    d.stop()
    victim = 7
    packs = list((data_dir / "repositories" / "default" / "packs").glob("*.pack"))
    for pack in packs:
        raw = bytearray(pack.read_bytes())
        at = raw.find(contents[victim])
        if at >= 0:
            raw[at + 100] ^= 0xFF
            pack.write_bytes(bytes(raw))
            break
    else:
        pytest.fail("the object's bytes were not found in any pack")
    d.start()
    with hoard.connect(d.target, timeout=60) as client:
        repo = client.repository("default")
        result = repo.verify()
        assert not result["ok"] and result["problem_count"] >= 1
        assert keys[victim] in {p["key"] for p in result["problems"]}
        assert all(p["pack_id"] > 0 and p["problem"] for p in result["problems"])
        assert repo.get_info()["last_verification_errors"] >= 1

        capsys.readouterr()
        assert cli.main(["--target", d.target, "verify"]) == 1
        out = capsys.readouterr().out
        victim_pack = repo.stat(keys[victim]).pack_id
        assert f"{keys[victim]}  pack {victim_pack}: " in out
        assert "problem" in out.splitlines()[-1]


# -- backup and restore ----------------------------------------------------------------------


def _restore(backup: Path, data_dir: Path, *extra: str) -> int:
    return cli.main(["restore", str(backup), "--data-dir", str(data_dir), *extra])


def test_backup_restore_round_trip(mrepo, half_deleted, roots, tmp_path, daemon_factory, capsys):
    kept, deleted = half_deleted
    big = os.urandom(3 * MiB) + b"compressible tail " * 200_000  # several frames
    kept[mrepo.put_object(big)] = big
    info = mrepo.get_info()
    uuid = mrepo.uuid

    reports: list[dict] = []
    last = mrepo.backup(roots / "b1", progress=reports.append)
    assert last == reports[-1] and last["stage"] == "done"
    assert last["objects"] == info["objects"]
    assert last["packs_total"] >= 1 and last["packs_copied"] >= 1
    assert last["bytes_copied"] > 0
    assert {r["stage"] for r in reports} <= {"snapshot", "packs", "done"}

    capsys.readouterr()
    restored = tmp_path / "restored"
    assert _restore(roots / "b1", restored) == 0
    out = capsys.readouterr().out
    assert "default" in out and str(info["objects"]) in out

    d2 = daemon_factory(restored)
    with hoard.connect(d2.target, timeout=60) as client:
        repo = client.repository("default")
        assert repo.uuid == uuid
        assert repo.get_info()["objects"] == len(kept)
        assert sorted(repo.list_objects()) == sorted(kept)
        assert repo.get_objects_content(kept) == kept
        assert not any(repo.has_objects(deleted))
        result = repo.verify()
        assert result["ok"] and result["checked_objects"] == len(kept)


def test_second_backup_copies_only_what_is_new(mrepo, roots, tmp_path, daemon_factory):
    first_batch = make_objects(600, seed=11)
    mrepo.put_objects(first_batch)
    first = mrepo.backup(str(roots / "inc"))
    assert first["packs_copied"] >= 2 and first["packs_unchanged"] == 0

    second_batch = make_objects(300, seed=12)
    mrepo.put_objects(second_batch)
    second = mrepo.backup(roots / "inc")
    assert second["stage"] == "done" and second["packs_unchanged"] > 0
    assert second["objects"] == 900
    assert second["bytes_copied"] < second["bytes_total"]  # sealed packs are not copied again

    restored = tmp_path / "restored-inc"
    assert _restore(roots / "inc", restored, "--repository", "copy") == 0
    d2 = daemon_factory(restored)
    with hoard.connect(d2.target, timeout=60) as client:
        repo = client.repository("copy")
        expected = {sha(c): c for c in first_batch + second_batch}
        assert repo.get_objects_content(expected) == expected
        assert repo.verify()["ok"]


def test_backup_while_clients_write_is_consistent(mrepo, roots, tmp_path, daemon_factory):
    before = {sha(c): c for c in make_objects(800, seed=21)}
    mrepo.put_objects(before.values())
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        i = 0
        try:
            while not stop.is_set():
                mrepo.put_object(f"during backup {i} ".encode() * 50)
                i += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        last = mrepo.backup(roots / "live")
    finally:
        stop.set()
        thread.join(60)
    assert not errors, errors
    assert last["objects"] >= len(before)

    restored = tmp_path / "restored-live"
    assert _restore(roots / "live", restored) == 0
    d2 = daemon_factory(restored)
    with hoard.connect(d2.target, timeout=60) as client:
        repo = client.repository("default")
        assert repo.get_objects_content(before) == before
        result = repo.verify()
        assert result["ok"] and result["checked_objects"] == last["objects"]


def test_backup_outside_the_roots_is_refused(mrepo, roots, tmp_path):
    mrepo.put_object(b"x")
    outside = tmp_path / "elsewhere"
    with pytest.raises((hoard.PermissionDeniedError, hoard.InvalidArgumentError)):
        mrepo.backup(outside)
    with pytest.raises((hoard.PermissionDeniedError, hoard.InvalidArgumentError)):
        mrepo.backup(f"{roots}/../elsewhere")  # escapes the root
    assert not outside.exists()


def test_backup_without_a_configured_root_is_a_failed_precondition(repo, tmp_path):
    repo.put_object(b"x")
    with pytest.raises(hoard.FailedPreconditionError):
        repo.backup(tmp_path / "b")


def test_restore_reports_problems_without_a_traceback(tmp_path, capsys):
    assert _restore(tmp_path / "no-such-backup", tmp_path / "data") == 1
    err = capsys.readouterr().err
    assert err.startswith("hoard: ") and "Traceback" not in err


def test_restore_refuses_a_directory_that_is_not_a_backup(tmp_path, capsys):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "file").write_text("not a backup")
    assert _restore(junk, tmp_path / "data") == 1
    assert capsys.readouterr().err.startswith("hoard: ")


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_verify_exits_0_on_a_healthy_repository(daemon, mrepo, half_deleted, capsys):
    assert cli.main(["--target", daemon.target, "verify"]) == 0
    out = capsys.readouterr().out
    assert f"checked {N_OBJECTS // 2} of {N_OBJECTS // 2} objects" in out
    assert "no problems" in out
    assert cli.main(["--target", daemon.target, "verify", "--sample", "0.5"]) == 0


def test_cli_maintain_dry_run_then_for_real(daemon, mrepo, half_deleted, capsys):
    before = mrepo.get_info()
    assert cli.main(["--target", daemon.target, "maintain", "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "dry run:" in captured.out and "would be compacted" in captured.out
    assert "reclaimable" in captured.out and "nothing was changed" in captured.out
    assert "plan" in captured.err  # progress, one line per report when not on a terminal
    assert mrepo.get_info()["packs"] == before["packs"]

    assert cli.main(["--target", daemon.target, "maintain", "--dead-fraction", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "packs compacted:" in out and "bytes reclaimed:" in out and "moved:" in out
    assert mrepo.get_info()["on_disk_bytes"] < before["on_disk_bytes"]


def test_cli_info_shows_maintenance_and_verification(daemon, mrepo, capsys):
    mrepo.put_object(b"info")
    assert cli.main(["--target", daemon.target, "info"]) == 0
    out = capsys.readouterr().out
    assert "last maintenance:" in out and "never" in out
    assert "last verification errors:" in out
    mrepo.maintain()
    mrepo.verify()
    assert cli.main(["--target", daemon.target, "info"]) == 0
    out = capsys.readouterr().out
    year = time.strftime("%Y")
    lines = {line.split(":", 1)[0]: line for line in out.splitlines()}
    assert year in lines["last maintenance"] and "ago" in lines["last maintenance"]
    assert year in lines["last verification"]
    assert lines["last verification errors"].split()[-1] == "0"


def test_cli_backup_and_restore(
    daemon, mrepo, roots, tmp_path, daemon_factory, capsys, monkeypatch
):
    contents = make_objects(50, seed=31)
    mrepo.put_objects(contents)
    monkeypatch.chdir(roots)  # a relative destination is made absolute: the daemon is local
    assert cli.main(["--target", daemon.target, "backup", "rel"]) == 0
    out = capsys.readouterr().out
    assert f"backed up 50 objects to {roots / 'rel'}" in out
    assert (roots / "rel").is_dir()

    assert cli.main(["restore", str(roots / "rel"), "--data-dir", str(tmp_path / "r")]) == 0
    d2 = daemon_factory(tmp_path / "r")
    with hoard.connect(d2.target, timeout=60) as client:
        repo = client.repository("default")
        assert repo.get_objects_content([sha(c) for c in contents]) == {sha(c): c for c in contents}

    assert cli.main(["--target", daemon.target, "backup", str(tmp_path / "outside")]) == 1
    assert capsys.readouterr().err.startswith("hoard: ")
