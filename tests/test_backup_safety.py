"""Backups through a real daemon must never harm the live data or anything outside the
backup root: destinations in or around the data directory are refused, planted links are
never followed, concurrent backups to one directory are serialised, user mistakes get clear
statuses, and everything a backup or a restore creates is private by default."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from pathlib import Path

import grpc
import pytest

import hoard
from hoard import cli
from hoard.v1 import objects_pb2 as pb
from hoard.v1 import objects_pb2_grpc
from hoard_server.backup import restore
from hoard_server.errors import FailedPrecondition

PACK_MAX = 64 << 10  # small packs, so that a backup has several to copy


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def objects(n: int, tag: str) -> dict[str, bytes]:
    out = {}
    for i in range(n):
        data = (f"{tag} {i} ".encode() * 40) + os.urandom(200)
        out[sha(data)] = data
    return out


@pytest.fixture
def root(tmp_path) -> Path:
    r = tmp_path / "backups"
    r.mkdir()
    return r


@pytest.fixture
def outside(tmp_path) -> Path:
    """A directory outside the backup root holding a file that must never change."""
    o = tmp_path / "outside"
    o.mkdir()
    (o / "precious").write_bytes(b"precious bytes")
    return o


def start(daemon_factory, data_dir: Path, root: Path, **kw):
    return daemon_factory(
        data_dir, "--backup-root", str(root), "--pack-max-bytes", str(PACK_MAX), **kw
    )


def connect(d):
    client = hoard.connect(d.target, timeout=60)
    repo = client.repository("default")
    repo.initialise()
    return client, repo


# -- 1. the live data is never a destination ---------------------------------------------


def test_backup_into_or_around_the_data_dir_is_refused(daemon_factory, root):
    data = root / "data"  # the data dir lies inside the backup root
    d = start(daemon_factory, data, root)
    client, repo = connect(d)
    with client:
        stored = objects(100, "before")
        repo.put_objects(stored.values())
        repo_dir = data / "repositories" / "default"
        (root / "alias").symlink_to(repo_dir)  # a link inside the root to the repository
        for dest in (
            data,
            repo_dir,
            repo_dir / "packs",
            repo_dir / "index",
            repo_dir / "packs" / "new",
            root / "alias",
            root,  # contains the data dir
        ):
            with pytest.raises(hoard.FailedPreconditionError) as info:
                repo.backup(dest)
            assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
            assert "data" in str(info.value), str(info.value)
        after = objects(100, "after")
        repo.put_objects(after.values())
    d.restart()
    client, repo = connect(d)
    with client:
        everything = {**stored, **after}
        assert repo.get_objects_content(everything) == everything
        assert repo.verify()["ok"]


# -- 2. links are never followed -----------------------------------------------------------


def test_planted_links_are_refused_and_nothing_outside_changes(
    daemon_factory, root, outside, tmp_path
):
    d = start(daemon_factory, tmp_path / "data", root)
    client, repo = connect(d)
    precious = outside / "precious"
    manifest = outside / "manifest.json"
    with client:
        repo.put_objects(objects(50, "x").values())
        good = repo.backup(root / "template")  # a valid manifest to point a link at
        assert good["stage"] == "done"
        manifest.write_bytes((root / "template" / "backup.json").read_bytes())
        cases = {
            "packs": outside,
            "packs/00000001.pack": precious,
            "backup.json.tmp": precious,
            "backup.json": manifest,
            "index.partial": outside,
            "index": outside,
            "index.old": outside,
            "backup.lock": precious,
        }
        for i, (name, target) in enumerate(cases.items()):
            dest = root / f"case{i}"
            link = dest / name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target)
            before = {p.name: p.read_bytes() for p in outside.iterdir()}
            with pytest.raises(hoard.FailedPreconditionError) as info:
                repo.backup(dest)
            assert str(link) in str(info.value), (name, str(info.value))
            assert "link" in str(info.value)
            assert {p.name: p.read_bytes() for p in outside.iterdir()} == before, name
            assert link.is_symlink(), name
        # a second backup into a good destination still works
        assert repo.backup(root / "template")["stage"] == "done"


# -- 3. concurrent backups to one destination ---------------------------------------------


def test_concurrent_backups_to_one_destination(daemon_factory, root, tmp_path):
    d = start(daemon_factory, tmp_path / "data", root)
    client, repo = connect(d)
    with client:
        written = objects(1500, "base")
        repo.put_objects(written.values())
        dest = root / "shared"
        stop = threading.Event()
        results: list[dict] = []
        failures: list[BaseException] = []

        def writer() -> None:
            i = 0
            while not stop.is_set():
                batch = objects(20, f"live{i}")
                repo.put_objects(batch.values())
                written.update(batch)
                i += 1

        def backer() -> None:
            for _ in range(3):
                try:
                    results.append(repo.backup(dest))
                except hoard.FailedPreconditionError as exc:
                    assert "another backup is writing to" in str(exc)
                    failures.append(exc)
                except BaseException as exc:  # INTERNAL or anything else: the test fails
                    failures.append(exc)

        w = threading.Thread(target=writer)
        w.start()
        threads = [threading.Thread(target=backer) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        stop.set()
        w.join(60)
    bad = [f for f in failures if not isinstance(f, hoard.FailedPreconditionError)]
    assert not bad, bad
    assert results and all(r["stage"] == "done" for r in results)
    assert failures, "no backup ever met another one: the test did not exercise the lock"

    manifest = json.loads((dest / "backup.json").read_text())
    summary = restore(str(dest), str(tmp_path / "restored"))
    # the backup that finished last wrote the manifest; the restore holds what it counted
    assert summary["objects"] == manifest["objects"]
    assert summary["objects"] in {r["objects"] for r in results}
    d2 = daemon_factory(tmp_path / "restored")
    with hoard.connect(d2.target, timeout=60) as c2:
        r2 = c2.repository("default")
        keys = list(r2.list_objects())
        assert len(keys) == summary["objects"]
        contents = r2.get_objects_content(keys)
        assert all(written[k] == v for k, v in contents.items())
        assert r2.verify()["ok"]


# -- 4. user mistakes get clear statuses ----------------------------------------------------


def test_user_mistakes_get_clear_statuses(daemon_factory, root, tmp_path):
    d = start(daemon_factory, tmp_path / "data", root)
    client, repo = connect(d)
    with client:
        repo.put_objects(objects(10, "m").values())

        def refused(dest, cls, *words: str) -> None:
            with pytest.raises(cls) as info:
                repo.backup(dest)
            assert isinstance(info.value.code, grpc.StatusCode)
            for w in words:
                assert w in str(info.value), str(info.value)

        invalid = hoard.InvalidArgumentError
        failed = hoard.FailedPreconditionError
        refused(f"{root}/nul\0byte", invalid, "NUL")
        refused(root / ("n" * 300), invalid, "too long")
        refused(root.joinpath(*["d" * 200] * 30), invalid, "too long")
        (root / "file").write_text("a file")
        refused(root / "file", failed, str(root / "file"), "not a directory")
        refused(root / "file" / "below", failed, str(root / "file"), "not a directory")
        (root / "p").mkdir()
        (root / "p" / "packs").write_text("a file")
        refused(root / "p", failed, str(root / "p" / "packs"), "not a directory")
        for i, text in enumerate(["not json {", "[1, 2]", "{}", '{"uuid": 3}', '"text"']):
            (root / f"m{i}").mkdir()
            (root / f"m{i}" / "backup.json").write_text(text)
            refused(root / f"m{i}", failed, str(root / f"m{i}" / "backup.json"), "manifest")
        (root / "dirmanifest" / "backup.json").mkdir(parents=True)
        refused(root / "dirmanifest", failed, "backup.json", "not a regular file")
        assert repo.backup(root / "fine")["stage"] == "done"

        # a relative path reaches the daemon only through a raw call (the SDK makes it absolute)
        with grpc.insecure_channel(d.target) as channel:
            stub = objects_pb2_grpc.ObjectsStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                list(stub.Backup(pb.BackupRequest(repository="default", destination="rel/x")))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "absolute" in info.value.details()


def test_restore_reports_malformed_backups_precisely(daemon_factory, root, tmp_path, capsys):
    d = start(daemon_factory, tmp_path / "data", root)
    client, repo = connect(d)
    with client:
        repo.put_objects(objects(10, "r").values())
        repo.backup(root / "b")
    b = root / "b"
    good = (b / "backup.json").read_text()
    for i, text in enumerate(
        ["not json", "[]", "{}", json.dumps({**json.loads(good), "packs": 5})]
    ):
        (b / "backup.json").write_text(text)
        with pytest.raises(FailedPrecondition, match="manifest"):
            restore(str(b), str(tmp_path / f"r{i}"))
        assert not (tmp_path / f"r{i}" / "repositories" / "default").exists()
    (b / "backup.json").write_text(good)
    os.rename(b / "index", b / "index.moved")
    with pytest.raises(FailedPrecondition, match="index"):
        restore(str(b), str(tmp_path / "r-noindex"))
    assert cli.main(["restore", str(b), "--data-dir", str(tmp_path / "r-cli")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hoard: ") and "index" in err and "Traceback" not in err
    os.rename(b / "index.moved", b / "index")
    assert restore(str(b), str(tmp_path / "r-ok"))["objects"] == 10


# -- 5. private by default -------------------------------------------------------------------


def modes_under(top: Path) -> dict[str, int]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, top)] = stat.S_IMODE(os.lstat(p).st_mode)
    return out


def assert_modes(top: Path, file_mode: int, dir_mode: int, skip: tuple[str, ...] = ()) -> None:
    found = modes_under(top)
    assert found
    for rel, mode in found.items():
        if rel in skip:
            continue
        want = dir_mode if (top / rel).is_dir() else file_mode
        assert mode == want, f"{rel}: {oct(mode)} (want {oct(want)})"


def test_backup_and_restore_are_private(daemon_factory, root, tmp_path):
    data = tmp_path / "data"
    dest = root / "b"
    d = start(daemon_factory, data, root, env={"HOARD_GROUP_ACCESS": "read"})
    client, repo = connect(d)
    with client:
        repo.put_objects(objects(300, "shared").values())
        repo.backup(dest)
    assert_modes(dest, 0o640, 0o750)
    d.stop()

    # the same backup, refreshed by a daemon with the default settings, becomes private
    d = start(daemon_factory, data, root)
    client, repo = connect(d)
    with client:
        repo.put_objects(objects(300, "private").values())
        repo.backup(dest)
    assert_modes(dest, 0o600, 0o700)
    assert stat.S_IMODE(os.stat(dest / "index" / "data.mdb").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(dest / "backup.json").st_mode) == 0o600

    old_umask = os.umask(0o022)  # a typical shell: restore must not rely on the umask
    try:
        restore(str(dest), str(tmp_path / "restored"))
    finally:
        os.umask(old_umask)
    repo_dir = tmp_path / "restored" / "repositories" / "default"
    # lock.mdb is LMDB's own, made when restore opens the index to count the objects
    assert_modes(repo_dir, 0o600, 0o700, skip=("index/lock.mdb",))
    assert stat.S_IMODE(os.stat(repo_dir).st_mode) == 0o700
