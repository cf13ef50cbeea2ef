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
from hoard_server.errors import FailedPrecondition
from hoard_server.maintenance.backup import restore

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

LINKS = {  # name planted in the destination -> what it points at, outside the root
    "packs": "outside",
    "packs/00000001.pack": "precious",
    "backup.json.tmp": "precious",
    "backup.json": "manifest",
    "index.partial": "outside",
    "index": "outside",
    "index.old": "outside",
    "backup.lock": "precious",
}


@pytest.mark.parametrize("name", LINKS)
def test_a_planted_link_is_refused_and_nothing_outside_changes(
    daemon_factory, root, outside, tmp_path, name
):
    d = start(daemon_factory, tmp_path / "data", root)
    client, repo = connect(d)
    targets = {"outside": outside, "precious": outside / "precious"}
    targets["manifest"] = outside / "manifest.json"
    with client:
        repo.put_objects(objects(50, "x").values())
        assert repo.backup(root / "template")["stage"] == "done"
        # a valid manifest of this repository, for the link to point at
        targets["manifest"].write_bytes((root / "template" / "backup.json").read_bytes())
        dest = root / "planted"
        link = dest / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(targets[LINKS[name]])
        before = {p.name: p.read_bytes() for p in outside.iterdir()}
        with pytest.raises(hoard.FailedPreconditionError) as info:
            repo.backup(dest)
        assert str(link) in str(info.value) and "link" in str(info.value), str(info.value)
        assert {p.name: p.read_bytes() for p in outside.iterdir()} == before
        assert link.is_symlink()
        link.unlink()  # once the link is gone, the same destination takes a backup
        assert repo.backup(dest)["stage"] == "done"
        assert {p.name: p.read_bytes() for p in outside.iterdir()} == before


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

        writer_errors: list[BaseException] = []
        together = threading.Barrier(4)

        def writer() -> None:
            i = 0
            try:
                while not stop.is_set():
                    batch = objects(20, f"live{i}")
                    repo.put_objects(batch.values())
                    written.update(batch)
                    i += 1
            except BaseException as exc:  # reported by the main thread
                writer_errors.append(exc)

        def backer() -> None:
            together.wait(30)
            for _ in range(3):
                try:
                    results.append(repo.backup(dest))
                except BaseException as exc:  # judged by the main thread
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
    assert not writer_errors, writer_errors
    assert len(results) + len(failures) == 12
    for f in failures:  # never INTERNAL: only the lock's refusal
        assert isinstance(f, hoard.FailedPreconditionError), repr(f)
        assert f.code == grpc.StatusCode.FAILED_PRECONDITION
        assert f"another backup is writing to {dest}" in str(f), str(f)
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


def _plant(root: Path, rel: str, content: str | None) -> None:
    """A regular file (or, content None, a directory) at root/rel, parents made."""
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if content is None:
        p.mkdir()
    else:
        p.write_text(content)


INVALID, FAILED = hoard.InvalidArgumentError, hoard.FailedPreconditionError
MANIFEST = "m/backup.json"
NOT_A_DIR = "not a directory"
MISTAKES = {  # id: (destination below the root, file planted or None, error, words in message)
    "nul byte": ("nul\0byte", None, INVALID, ["NUL"]),
    "long name": ("n" * 300, None, INVALID, ["too long"]),
    "long path": ("/".join(["d" * 200] * 30), None, INVALID, ["too long"]),
    "dest is a file": ("f", ("f", "a file"), FAILED, ["{root}/f", NOT_A_DIR]),
    "parent is a file": ("f/below", ("f", "a file"), FAILED, ["{root}/f", NOT_A_DIR]),
    "packs is a file": ("p", ("p/packs", "a file"), FAILED, ["{root}/p/packs", NOT_A_DIR]),
    "index is a file": ("p", ("p/index", "a file"), FAILED, ["{root}/p/index", NOT_A_DIR]),
    "manifest not json": (
        "m",
        (MANIFEST, "not json {"),
        FAILED,
        ["{root}/m/backup.json", "not JSON"],
    ),
    "manifest a list": ("m", (MANIFEST, "[1, 2]"), FAILED, ["{root}/m/backup.json", "manifest"]),
    "manifest a string": ("m", (MANIFEST, '"text"'), FAILED, ["{root}/m/backup.json", "manifest"]),
    "manifest empty": ("m", (MANIFEST, "{}"), FAILED, ["{root}/m/backup.json", "manifest", "uuid"]),
    "manifest bad uuid": ("m", (MANIFEST, '{"uuid": 3}'), FAILED, ["{root}/m/backup.json", "uuid"]),
    "manifest a dir": (
        "m",
        (MANIFEST, None),
        FAILED,
        ["{root}/m/backup.json", "not a regular file"],
    ),
}


@pytest.mark.parametrize("case", MISTAKES)
def test_a_user_mistake_gets_a_clear_status(daemon_factory, root, tmp_path, case):
    rel, planted, error, words = MISTAKES[case]
    d = start(daemon_factory, tmp_path / "data", root)
    client, repo = connect(d)
    with client:
        repo.put_objects(objects(10, "m").values())
        if planted is not None:
            _plant(root, *planted)
        with pytest.raises(error) as info:
            repo.backup(f"{root}/{rel}")
        expected = (
            grpc.StatusCode.INVALID_ARGUMENT
            if error is INVALID
            else grpc.StatusCode.FAILED_PRECONDITION
        )
        assert info.value.code == expected
        for w in words:
            assert w.format(root=root) in str(info.value), str(info.value)
        assert repo.backup(root / "fine")["stage"] == "done"  # the daemon is none the worse


def test_a_relative_destination_is_an_invalid_argument(daemon_factory, root, tmp_path):
    d = start(daemon_factory, tmp_path / "data", root)
    # it reaches the daemon only through a raw call: the SDK makes it absolute for a local daemon
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


def test_a_backup_is_private_by_default(daemon_factory, root, tmp_path):
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
    for name in ("index/data.mdb", "backup.json", "packs/00000001.pack"):
        assert stat.S_IMODE(os.stat(dest / name).st_mode) == 0o600, name


def test_a_restore_is_private_whatever_the_umask(daemon_factory, root, tmp_path):
    d = start(daemon_factory, tmp_path / "data", root)
    client, repo = connect(d)
    with client:
        repo.put_objects(objects(300, "r").values())
        repo.backup(root / "b")
    old_umask = os.umask(0o022)  # a typical shell's: restore must not rely on the umask
    try:
        restore(str(root / "b"), str(tmp_path / "restored"))
    finally:
        os.umask(old_umask)
    top = tmp_path / "restored"
    assert_modes(top, 0o600, 0o700)
    assert stat.S_IMODE(os.stat(top).st_mode) == 0o700
